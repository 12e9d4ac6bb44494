"""``amn``: AMN's CAM dictionaries ``AMN_CAM_DIR/<id>.npy``.

Written by AMN's ``step/make_amn_cam.py`` (``--amn_cam_out_dir``, default ``result/amn_cam``):
IRN's dictionary with one more channel, ``np.save`` of

- ``keys``: the image's classes, **0-based** (0 = aeroplane), a torch ``LongTensor``, no
  background entry (as IRN's);
- ``cam``: stride-4 maps, a torch tensor (not used here);
- ``high_res``: ``float32 (len(keys) + 1, H, W)``: **the background first**, then the classes
  in the order of ``keys`` (AMN's softmax over its 21 outputs, min-max scaled where the IR label
  is not background).

AMN's ``step/eval_amn_cam.py`` drops the saved background channel, pads a constant background
score ``cam_eval_thres`` (0.25 in AMN's ``run_sample.py``) in front, takes the argmax and maps it
through ``[0, keys + 1]``; this reader does the same. AMN's IR labels of these maps
(``step/amn_cam_to_ir_label.py``) use ``conf_fg_thres`` 0.45 and ``conf_bg_thres`` 0.15, with a
CRF (not applied here): ``--param bg=0.45 --param bg_low=0.15``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sepl_tree import hookimpl
from sepl_tree.readers.cam import (
    Background,
    LowBackground,
    allowed_classes,
    cam_to_label,
    load_pickled,
    require_keys,
    to_numpy,
)
from sepl_tree.readers.sniff import wrong_format
from sepl_tree.registry import ReadContext, Reader

__all__ = ["read_amn"]


def read_amn(folder: Path, image_id: str, ctx: ReadContext, bg: Background = 0.25, bg_low: LowBackground = -1.0) -> np.ndarray:
    """AMN CAMs: dict with 0-based 'keys' and 'high_res' (background + classes, H, W).

    Parameters
    ----------
    bg
        Background score if below 1 (AMN's cam_eval_thres, 0.25), else the power p of (1 - max CAM)^p.
    bg_low
        If 0 or more: background at bg but a class at bg_low becomes 255 (IR labels: bg=0.45, bg_low=0.15; no CRF).
    """
    path = folder / f"{image_id}.npy"
    obj = load_pickled(path)
    found = require_keys(obj, ("keys", "high_res"))
    if found is None:
        raise wrong_format(path, "amn", "expected AMN's dictionary with 'keys' and 'high_res'", obj)
    keys = to_numpy(found["keys"]).reshape(-1)
    maps = to_numpy(found["high_res"])
    if maps.ndim != 3 or maps.shape[0] != keys.size + 1:  # (an IRN file given to this reader is named as one)
        got = maps.shape[0] if maps.ndim == 3 else f"an array of shape {maps.shape}"
        raise wrong_format(path, "amn", f"AMN's high_res holds the background and one map per key: "
                                        f"{keys.size + 1} maps for {keys.size} key(s), got {got}", obj)
    return cam_to_label(path, maps[1:], keys + 1, ctx.num_classes, bg=bg,
                        allowed=allowed_classes(ctx, image_id, path), bg_low=None if bg_low < 0 else bg_low)


@hookimpl
def register_readers(register):
    register(Reader("amn", read_amn, suffix=".npy"))
