"""Evaluate folders of label PNGs against ground truth (the I/O side of :mod:`sepl_tree.metrics`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sepl_tree.errors import InputError, SeplError
from sepl_tree.files import read_png
from sepl_tree.metrics import Scores, confusion_matrix

__all__ = ["class_names_for", "evaluate_folders", "image_confusion", "read_ground_truth", "scores_to_json"]


def class_names_for(num_classes: int, names: Sequence[str] | None = None) -> list[str]:
    """Class names for reports: ``names`` if given, else the dataset preset with K classes."""
    if names is not None:
        if len(names) != num_classes:
            raise SeplError(f"{len(names)} class names given for {num_classes} classes")
        return list(names)
    from sepl_tree.classes import default_class_names

    return default_class_names(num_classes)


def _read_plain(path: Path) -> np.ndarray:
    values = read_png(path)
    if values.ndim != 2:
        raise InputError(path, f"a label PNG must be palette or greyscale, got pixels of shape {values.shape}")
    return values


def read_ground_truth(gt_dir: Path, image_id: str) -> np.ndarray:
    """``<gt_dir>/<id>.png`` as stored (class indices, 255 ignore), or ``InputError``."""
    return _read_plain(gt_dir / f"{image_id}.png")


def image_confusion(pred_map: np.ndarray, gt: np.ndarray, num_classes: int, pred_name: str | Path,
                    gt_path: Path) -> np.ndarray:
    """One image's ``(K, K+1)`` confusion matrix; a size mismatch or a GT value out of range is
    an ``InputError`` naming the file."""
    if pred_map.shape != gt.shape:
        raise InputError(pred_name, f"is {pred_map.shape[0]}x{pred_map.shape[1]} but the ground truth "
                         f"{gt_path} is {gt.shape[0]}x{gt.shape[1]}")
    try:
        return confusion_matrix(pred_map, gt, num_classes)
    except ValueError as exc:
        raise InputError(gt_path, str(exc)) from None


def evaluate_folders(pred: Path | Callable[[str], np.ndarray], gt_dir: Path, ids: Iterable[str], num_classes: int,
                     on_image: Callable[[str], None] | None = None) -> tuple[np.ndarray, int]:
    """Pool the confusion matrix of the predictions against ``<gt_dir>/<id>.png``.

    ``pred`` is a folder of ``<id>.png`` label maps, or a function from an image id to a label
    map (e.g. a reader, to evaluate a baseline's own output). Returns the ``(K, K+1)`` matrix
    and the number of images. Missing files, size mismatches and GT values out of range raise
    ``InputError`` naming the file.
    """
    load = pred if callable(pred) else (lambda i: _read_plain(pred / f"{i}.png"))
    where = (lambda i: f"prediction for {i}") if callable(pred) else (lambda i: pred / f"{i}.png")
    cm = np.zeros((num_classes, num_classes + 1), np.int64)
    count = 0
    for image_id in ids:
        pred_map, gt = load(image_id), read_ground_truth(gt_dir, image_id)
        cm += image_confusion(pred_map, gt, num_classes, where(image_id), gt_dir / f"{image_id}.png")
        count += 1
        if on_image is not None:
            on_image(image_id)
    if count == 0:
        raise SeplError("no images to evaluate")
    return cm, count


def _num(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value), 4)


def scores_to_json(s: Scores, names: Sequence[str], images: int) -> dict[str, Any]:
    """The ``eval --json`` document: means, image count and per-class scores by name."""
    return {
        "miou": _num(s.miou),
        "precision": _num(s.mean_precision),
        "recall": _num(s.mean_recall),
        "images": images,
        "per_class": {
            name: {"iou": _num(s.iou[k]), "precision": _num(s.precision[k]), "recall": _num(s.recall[k])}
            for k, name in enumerate(names)
        },
    }
