"""``clip-es`` (alias ``clipes``): CLIP-ES's CAM dictionaries ``<cam_out_dir>/<id>.npy``.

Written by CLIP-ES's ``generate_cams_voc12.py`` / ``generate_cams_coco14.py``: ``np.save`` of a dict with

- ``keys``: ``int64`` class indices of the image's classes (from the VOC XML or COCO labels),
  **0-based**, no background;
- ``attn_highres``: ``float16 (len(keys), H, W)``, the attention-refined Grad-CAMs at image size
  (a ``highres`` array of the raw CAMs is commented out in the released code; ``key`` reads it).

CLIP-ES's ``eval_cam.py`` uses ``cam_eval_thres`` (default 2): below 1 a constant background score,
otherwise the power p of ``(1 - max) ** p``; then argmax mapped through ``[0, keys + 1]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sepl_tree import hookimpl
from sepl_tree.readers.cam import Background, allowed_classes, cam_to_label, load_pickled, require_keys, to_numpy
from sepl_tree.readers.sniff import wrong_format
from sepl_tree.registry import ReadContext, Reader

__all__ = ["read_clip_es"]


def read_clip_es(folder: Path, image_id: str, ctx: ReadContext, bg: Background = 2.0,
                 key: str = "attn_highres") -> np.ndarray:
    """CLIP-ES CAMs: dict with 0-based 'keys' and float16 'attn_highres' (classes, H, W); no background.

    Parameters
    ----------
    bg
        CLIP-ES's cam_eval_thres (2): a constant background score if below 1, else the power p of (1 - max)^p.
    key
        Array to read: 'attn_highres' (refined CAMs) or 'highres' (raw CAMs, when saved).
    """
    path = folder / f"{image_id}.npy"
    obj = load_pickled(path)
    found = require_keys(obj, ("keys", key))
    if found is None:
        raise wrong_format(path, "clip-es", f"expected CLIP-ES's dictionary with 'keys' and {key!r}", obj)
    keys = to_numpy(found["keys"]).reshape(-1)
    return cam_to_label(path, found[key], keys + 1, ctx.num_classes, bg=bg,
                        allowed=allowed_classes(ctx, image_id, path))


@hookimpl
def register_readers(register):
    register(Reader("clip-es", read_clip_es, suffix=".npy", aliases=("clipes",)))
