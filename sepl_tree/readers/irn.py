"""``irn`` (alias ``clims``): IRN's CAM dictionaries ``CAM_DIR/<id>.npy``.

Written by IRN's ``step/make_cam.py`` (and unchanged by CLIMS's ``step/make_cam.py`` /
``step/make_clims.py`` and the many IRN descendants): ``np.save`` of a dict with

- ``keys``: the image's classes, **0-based** (0 = aeroplane), a torch ``LongTensor``;
- ``cam``: stride-4 CAMs, a torch tensor (not used here);
- ``high_res``: ``float32 (len(keys), H, W)`` CAMs at image size, each scaled to max 1;
  no background channel.

IRN's ``step/eval_cam.py`` pads a constant background score ``cam_eval_thres`` (0.15 in IRN's and
CLIMS's ``run_sample.py``) in front, takes the argmax and maps it through ``[0, keys + 1]``.
``step/cam_to_ir_label.py`` instead makes labels with an uncertain band: a class where it beats
``conf_fg_thres`` (0.30), background where nothing beats ``conf_bg_thres`` (0.05), 255 in between
(after a CRF, not applied here): ``--param bg=0.30 --param bg_low=0.05``.
Appendix C.1 of the SEPL paper (SEPL on the raw CAMs) is ``run --reader irn``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sepl_tree import hookimpl
from sepl_tree.errors import InputError
from sepl_tree.readers.cam import (
    Background,
    LowBackground,
    allowed_classes,
    cam_to_label,
    load_pickled,
    require_keys,
    to_numpy,
)
from sepl_tree.readers.sniff import high_res_format, wrong_format
from sepl_tree.registry import ReadContext, Reader

__all__ = ["read_high_res", "read_irn"]


def read_high_res(folder: Path, image_id: str, ctx: ReadContext, reader: str, bg: float, bg_low: float) -> np.ndarray:
    """The label map of an IRN-style dictionary (0-based ``keys``, ``high_res`` maps), for the
    ``reader`` ``"irn"`` (one map per key) or ``"amn"`` (AMN's background map first, dropped as
    its ``eval_amn_cam.py`` does); a file of the other layout is named as such."""
    path = folder / f"{image_id}.npy"
    obj = load_pickled(path)
    who = "AMN" if reader == "amn" else "IRN"
    found = require_keys(obj, ("keys", "high_res"))
    if found is None:
        if isinstance(obj, dict) and set(obj) == {"keys"} and to_numpy(obj["keys"]).size == 0:
            raise InputError(path, "holds only an empty 'keys': AMN's make_amn_cam_coco.py writes this for an "
                                   "image without classes, which its evaluation scores as all background; give it "
                                   "a background label map or leave it out with --ids")
        raise wrong_format(path, reader, f"expected {who}'s dictionary with 'keys' and 'high_res'", obj)
    keys = to_numpy(found["keys"]).reshape(-1)
    maps, layout = found["high_res"], high_res_format(found)
    if reader == "amn":
        if layout != "amn":  # (an IRN file given to this reader is named as one)
            shape = getattr(maps, "shape", ())
            got = shape[0] if len(shape) == 3 else f"an array of shape {tuple(shape)}"
            raise wrong_format(path, reader, f"AMN's high_res holds the background and one map per key: "
                                             f"{keys.size + 1} maps for {keys.size} key(s), got {got}", obj)
        maps = to_numpy(maps)[1:]
    elif layout == "amn":  # (one map more than keys: "3 score maps but 2 class keys" said too little)
        raise wrong_format(path, reader, "high_res holds one map more than keys (AMN's background first); "
                                         "try --reader amn", obj)
    return cam_to_label(path, maps, keys + 1, ctx.num_classes, bg=bg,
                        allowed=allowed_classes(ctx, image_id, path), bg_low=None if bg_low < 0 else bg_low)


def read_irn(folder: Path, image_id: str, ctx: ReadContext, bg: Background = 0.15, bg_low: LowBackground = -1.0) -> np.ndarray:
    """IRN/CLIMS CAMs: dict with 0-based 'keys' and 'high_res' (classes, H, W); no background.

    Parameters
    ----------
    bg
        Background score if below 1 (IRN's cam_eval_thres, 0.15), else the power p of (1 - max CAM)^p.
    bg_low
        If 0 or more: background at bg but a class at bg_low becomes 255 (IR labels: bg=0.30, bg_low=0.05; no CRF).
    """
    return read_high_res(folder, image_id, ctx, "irn", bg, bg_low)


@hookimpl
def register_readers(register):
    register(Reader("irn", read_irn, suffix=".npy", aliases=("clims",)))
