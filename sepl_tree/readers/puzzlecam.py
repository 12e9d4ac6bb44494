"""``puzzlecam``: PuzzleCAM's CAM and random-walk dictionaries ``experiments/predictions/<name>/<id>.npy``.

Written by PuzzleCAM's ``inference_classification.py`` (CAMs) and ``inference_rw.py`` (after
AffinityNet's random walk): ``np.save`` of a dict with

- ``keys``: ``int64``, **already shifted by one and padded with the background**:
  ``[0, c1 + 1, c2 + 1, ...]``;
- ``hr_cam`` (CAM files): ``float32 (len(keys) - 1, H, W)``, each map scaled to max 1, no
  background channel (``cam``, a stride-4 torch tensor, is also there and unused);
- ``rw`` (random-walk files): ``float32 (len(keys) - 1, H, W)``, scaled to max 1.

PuzzleCAM's ``evaluate.py`` and ``make_pseudo_labels.py`` pad a constant background score in
front, take the argmax and map it through ``keys``; ``make_pseudo_labels.py`` defaults to 0.25
(``evaluate.py`` sweeps it). The CRF step of ``make_pseudo_labels.py`` is not applied here.
``make_affinity_labels.py`` keeps an uncertain band (class above 0.30, background below 0.05, 255
between, after a CRF): ``--param bg=0.30 --param bg_low=0.05``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sepl_tree import hookimpl
from sepl_tree.errors import InputError
from sepl_tree.readers.cam import Background, LowBackground, allowed_classes, background_first_keys, cam_to_label, load_pickled
from sepl_tree.readers.sniff import wrong_format
from sepl_tree.registry import ReadContext, Reader

__all__ = ["read_puzzlecam"]

_ARRAYS = ("hr_cam", "rw")


def read_puzzlecam(folder: Path, image_id: str, ctx: ReadContext, bg: Background = 0.25, key: str = "auto",
                   bg_low: LowBackground = -1.0) -> np.ndarray:
    """PuzzleCAM CAMs: dict with shifted 'keys' [0, c+1, ...] and 'hr_cam' or 'rw' (no background map).

    Parameters
    ----------
    bg
        Background score if below 1 (make_pseudo_labels.py's threshold, 0.25), else the power p of (1 - max)^p.
    key
        Array to read: 'hr_cam', 'rw', or 'auto' ('rw' when the file has it, else 'hr_cam').
    bg_low
        If 0 or more: background at bg but a class at bg_low becomes 255 (affinity labels: bg=0.30, bg_low=0.05).
    """
    path = folder / f"{image_id}.npy"
    if key not in ("auto", *_ARRAYS):
        raise InputError(path, f"reader 'puzzlecam': key must be auto, hr_cam or rw, got {key!r}")
    obj = load_pickled(path)
    names = [n for n in _ARRAYS if isinstance(obj, dict) and n in obj]
    if not isinstance(obj, dict) or "keys" not in obj or not names:
        raise wrong_format(path, "puzzlecam", "expected PuzzleCAM's dictionary with 'keys' and 'hr_cam' or 'rw'", obj)
    name = ("rw" if "rw" in names else "hr_cam") if key == "auto" else key
    if name not in obj:
        raise InputError(path, f"no {name!r} array in this PuzzleCAM file (it has {', '.join(names)})")
    keys = background_first_keys(path, obj["keys"], "PuzzleCAM")
    return cam_to_label(path, obj[name], keys[1:], ctx.num_classes, bg=bg,
                        allowed=allowed_classes(ctx, image_id, path), bg_low=None if bg_low < 0 else bg_low)


@hookimpl
def register_readers(register):
    register(Reader("puzzlecam", read_puzzlecam, suffix=".npy"))
