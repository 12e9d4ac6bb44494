"""PSA-style ``{class: CAM}`` dictionaries ``<out_cam>/<id>.npy``, and their CRF variants.

AffinityNet/PSA's ``infer_cls.py`` saves ``np.save`` of a plain dict ``{c: float32 (H, W)}`` with
one entry per image-level class, ``c`` **0-based** (0 = aeroplane), no background entry. SEAM
(``infer_SEAM.py``), EPS (``infer.py --cam_npy``), PPC (``contrast_infer.py``, EPS's script),
TransCAM (``infer_TransCAM.py``) and L2G (``--cam_npy``) write the same layout; only their
default background rule differs, so each has its own reader (``bg=16`` gives PSA's
``infer_aff.py --alpha 16`` background ``(1 - max) ** 16``, the random walk's input):

========  ====================================================================  ==========
reader    the method's own default                                              ``bg``
========  ====================================================================  ==========
psa       ``infer_cls.py --out_cam_pred``: constant background                  0.2
seam      ``infer_SEAM.py --out_cam_pred_alpha 0.26``                            0.26
eps, ppc  ``infer.py --thr 0.20`` (PPC's script uses 0.22)                       0.20
transcam  ``infer_aff.py --bkg 0.42``                                            0.42
========  ====================================================================  ==========

Their CRF outputs (``--out_la_crf``/``--out_ha_crf`` in PSA, ``--out_crf`` in SEAM, ``--crf`` in
EPS/PPC) are dicts **already shifted by one**: key 0 is the background, ``c + 1`` the classes,
values CRF probabilities. ``psa-crf`` reads those by plain argmax.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sepl_tree import hookimpl
from sepl_tree.errors import InputError
from sepl_tree.readers.cam import Background, allowed_classes, cam_to_label, load_pickled, to_numpy
from sepl_tree.readers.sniff import looks_like_crf, wrong_format
from sepl_tree.registry import ReadContext, Reader

__all__ = ["read_class_dict", "read_eps", "read_psa", "read_psa_crf", "read_seam", "read_transcam"]


def _int_keyed(obj: Any) -> bool:
    return isinstance(obj, Mapping) and all(
        isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in obj)


def read_class_dict(folder: Path, image_id: str, ctx: ReadContext, reader: str, bg: float | None) -> np.ndarray:
    """The label map of ``<id>.npy``, a ``{class: map}`` dict (``bg`` None: CRF dict, key 0 = background)."""
    path = folder / f"{image_id}.npy"
    obj = load_pickled(path)
    crf = bg is None
    if not _int_keyed(obj) or not obj or (crf != looks_like_crf(obj)):
        layout = "{0: background, class + 1: CRF map}" if crf else "{0-based class: CAM}"
        raise wrong_format(path, reader, f"expected a non-empty dictionary {layout}", obj)
    classes = sorted(int(k) for k in obj)
    maps = [to_numpy(obj[c]) for c in classes]
    if len({m.shape for m in maps}) != 1:
        raise InputError(path, f"score maps of different shapes: {sorted({m.shape for m in maps})}")
    labels = np.asarray(classes) if crf else np.asarray(classes) + 1
    return cam_to_label(path, np.stack(maps), labels, ctx.num_classes, bg=bg,
                        allowed=allowed_classes(ctx, image_id, path))


def read_psa(folder: Path, image_id: str, ctx: ReadContext, bg: Background = 0.2) -> np.ndarray:
    """PSA/AffinityNet CAM dict {0-based class: CAM}; constant background 0.2, PSA's own CAM labels
    (``infer_cls.py --out_cam_pred``, the CAMs its paper scores).

    (``infer_aff.py``'s (1 - max)^16, ``bg=16``, is the background it hands the random walk, not a
    rule for labels made from the CAMs alone.)

    Parameters
    ----------
    bg
        Background score if below 1 (0.2, ``--out_cam_pred``), else the power p of (1 - max)^p
        (``infer_aff.py --alpha``, 16).
    """
    return read_class_dict(folder, image_id, ctx, "psa", bg)


def read_seam(folder: Path, image_id: str, ctx: ReadContext, bg: Background = 0.26) -> np.ndarray:
    """SEAM CAM dict {0-based class: CAM}; constant background 0.26 as in infer_SEAM.py.

    Parameters
    ----------
    bg
        Background score if below 1 (SEAM's out_cam_pred_alpha, 0.26), else the power p of (1 - max)^p.
    """
    return read_class_dict(folder, image_id, ctx, "seam", bg)


def read_eps(folder: Path, image_id: str, ctx: ReadContext, bg: Background = 0.20) -> np.ndarray:
    """EPS/PPC CAM dict {0-based class: CAM}; constant background 0.20 as in EPS's infer.py --thr.

    Parameters
    ----------
    bg
        Background score if below 1 (EPS's --thr, 0.20), else the power p of (1 - max)^p.
    """
    return read_class_dict(folder, image_id, ctx, "eps", bg)


def read_transcam(folder: Path, image_id: str, ctx: ReadContext, bg: Background = 0.42) -> np.ndarray:
    """TransCAM CAM dict {0-based class: CAM}; constant background 0.42 as in its infer_aff.py --bkg.

    Parameters
    ----------
    bg
        Background score if below 1 (TransCAM's --bkg, 0.42), else the power p of (1 - max)^p.
    """
    return read_class_dict(folder, image_id, ctx, "transcam", bg)


def read_psa_crf(folder: Path, image_id: str, ctx: ReadContext) -> np.ndarray:
    """CRF score dict {0: background, class + 1: map} (PSA la/ha_crf, SEAM/EPS/PPC crf); argmax."""
    return read_class_dict(folder, image_id, ctx, "psa-crf", None)


@hookimpl
def register_readers(register):
    register(Reader("psa", read_psa, suffix=".npy", aliases=("affinitynet",)))
    register(Reader("seam", read_seam, suffix=".npy"))
    register(Reader("eps", read_eps, suffix=".npy", aliases=("ppc",)))
    register(Reader("transcam", read_transcam, suffix=".npy"))
    register(Reader("psa-crf", read_psa_crf, suffix=".npy", aliases=("seam-crf", "eps-crf", "ppc-crf")))
