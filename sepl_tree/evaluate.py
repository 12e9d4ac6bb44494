"""Evaluate folders of label PNGs against ground truth (the I/O side of :mod:`sepl_tree.metrics`).

Label maps are ``<id>.png`` of class indices as stored (palette or greyscale, ``uint8 (H, W)``):
0 background, 1..K-1 classes; ground-truth 255 is ignored (left out of every count), a
ground-truth value outside 0..K-1 and 255 is an error naming the file, and a predicted value
outside 0..K-1 (255 included) counts as a miss of the ground-truth class. One confusion matrix
is summed over the dataset and scored once (:func:`sepl_tree.metrics.scores`). Another
reading of non-label predictions (``non_labels``, :class:`sepl_tree.metrics.Convention`) is
applied to each image before it is counted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sepl_tree.errors import InputError, SeplError
from sepl_tree.files import read_png
from sepl_tree.label_maps import first_bad_label
from sepl_tree.metrics import Scores, ruled_confusion

__all__ = ["EvalJob", "class_names_for", "evaluate_folders", "image_confusion", "read_ground_truth", "scores_to_json"]


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
                    gt_path: Path, non_labels: str = "miss") -> np.ndarray:
    """One image's ``(K, K+1)`` confusion matrix, ``non_labels`` applied
    (:func:`sepl_tree.metrics.apply_pixel_rule`); a size mismatch or a GT value out of range is
    an ``InputError`` naming the file."""
    if pred_map.shape != gt.shape:
        raise InputError(pred_name, f"is {pred_map.shape[0]}x{pred_map.shape[1]} but the ground truth "
                         f"{gt_path} is {gt.shape[0]}x{gt.shape[1]}")
    try:
        return ruled_confusion(pred_map, gt, num_classes, non_labels)
    except ValueError as exc:
        raise InputError(gt_path, str(exc)) from None


@dataclass(frozen=True)
class EvalJob:
    """The per-image job of ``sepl-tree eval`` (a :class:`sepl_tree.executors.JobSpec`): the
    confusion matrix of ``<pred_dir>/<id>.png`` against ``<gt_dir>/<id>.png``, sent back as its
    non-zero cells (a few dozen numbers, where the whole matrix is 53 KB for COCO's 81 classes).
    ``non_labels``: what a predicted non-label does (:func:`sepl_tree.metrics.apply_pixel_rule`)."""

    pred_dir: Path
    gt_dir: Path
    num_classes: int
    non_labels: str = "miss"

    def setup(self) -> Callable[[str], tuple[str, np.ndarray, np.ndarray, int | None]]:
        def process(image_id: str) -> tuple[str, np.ndarray, np.ndarray, int | None]:
            pred_path, gt_path = self.pred_dir / f"{image_id}.png", self.gt_dir / f"{image_id}.png"
            pred = _read_plain(pred_path)
            cm = image_confusion(pred, read_ground_truth(self.gt_dir, image_id), self.num_classes, pred_path, gt_path,
                                 self.non_labels).ravel()
            cells = np.flatnonzero(cm)
            return image_id, cells, cm[cells], first_bad_label(pred, self.num_classes)

        return process


def evaluate_folders(pred: Path, gt_dir: Path, ids: Iterable[str], num_classes: int,
                     on_image: Callable[[], None] | None = None, workers: int = 1,
                     non_labels: str = "miss") -> tuple[np.ndarray, int, dict[str, int]]:
    """Pool the confusion matrix of ``<pred>/<id>.png`` against ``<gt_dir>/<id>.png``.

    Returns the ``(K, K+1)`` matrix, the number of images and, for each prediction holding a
    value that is no label (K..254: counted as a miss, by the convention), its first such value;
    ``workers`` processes read and count (integer sums: the same matrix for any number);
    ``on_image`` is called once per image done; ``non_labels``: :class:`EvalJob`'s. Missing
    files, size mismatches and GT values out of range raise ``InputError`` naming the file.
    """
    from sepl_tree.executors import execute

    ids = list(ids)
    if not ids:
        raise SeplError("no images to evaluate")
    cm = np.zeros((num_classes, num_classes + 1), np.int64)
    cells_of = cm.reshape(-1)  # a view: adding to it adds to cm
    not_labels: dict[str, int] = {}
    for image_id, cells, counts, odd in execute(EvalJob(Path(pred), Path(gt_dir), num_classes, non_labels), ids, workers=workers):
        cells_of[cells] += counts
        if odd is not None:
            not_labels[image_id] = odd
        if on_image is not None:
            on_image()
    return cm, len(ids), dict(sorted(not_labels.items()))


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
