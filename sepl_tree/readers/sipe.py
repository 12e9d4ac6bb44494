"""``sipe``: SIPE's IS-CAM dictionaries ``<session>/npy/<id>.npy``.

Written by SIPE's ``make_cam.py``: ``np.save`` of a dict with

- ``keys``: ``int64`` class indices **with the background included** (the image-level label is
  padded with a 1 in front, so ``keys[0] == 0`` and classes are 1..K-1);
- ``IS_CAM``: ``float32 (len(keys), H, W)``, the background channel first, each map scaled to max 1.

SIPE's ``eval_cam.py`` takes the plain argmax over the channels and maps it through ``keys``: no
threshold, so this reader has no parameter.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sepl_tree import hookimpl
from sepl_tree.readers.cam import allowed_classes, background_first_keys, cam_to_label, load_pickled, require_keys
from sepl_tree.readers.sniff import wrong_format
from sepl_tree.registry import ReadContext, Reader

__all__ = ["read_sipe"]


def read_sipe(folder: Path, image_id: str, ctx: ReadContext) -> np.ndarray:
    """SIPE IS-CAMs: dict with 'keys' (background 0 first) and 'IS_CAM' including the background map."""
    path = folder / f"{image_id}.npy"
    obj = load_pickled(path)
    found = require_keys(obj, ("keys", "IS_CAM"))
    if found is None:
        raise wrong_format(path, "sipe", "expected SIPE's dictionary with 'keys' and 'IS_CAM'", obj)
    keys = background_first_keys(path, found["keys"], "SIPE")
    return cam_to_label(path, found["IS_CAM"], keys, ctx.num_classes, bg=None,
                        allowed=allowed_classes(ctx, image_id, path))


@hookimpl
def register_readers(register):
    register(Reader("sipe", read_sipe, suffix=".npy"))
