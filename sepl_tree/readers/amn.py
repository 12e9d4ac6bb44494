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
from sepl_tree.readers.cam import Background, LowBackground
from sepl_tree.readers.irn import read_high_res
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
    return read_high_res(folder, image_id, ctx, "amn", bg, bg_low)


@hookimpl
def register_readers(register):
    register(Reader("amn", read_amn, suffix=".npy"))
