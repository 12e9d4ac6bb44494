"""``official``: the behaviour of the authors' released merge code (``merge/max_iou_imp2.py``).

For reproducing numbers made with that code. Classes k = 1..K-1 in increasing order; a mask taken
by an earlier class is not seen by later ones. For each class with ``P_k`` non-empty:
``U`` = union of the masks not taken yet; keep each not-yet-taken S with ``2|S∩P_k| − |S| > 0``
or ``|S∩P_k|/|P_k| >= t2``, marking it taken; paint k on ``(union of kept) ∪ (P_k \\ U)``.
Later classes overwrite earlier ones; everything else is 0 (an input 255 becomes 0).
"""

from __future__ import annotations

import numpy as np

from sepl_tree import hookimpl
from sepl_tree.masks import unflatten
from sepl_tree.painting import paint
from sepl_tree.registry import Share, Strategy
from sepl_tree.sample import Sample

__all__ = ["official"]


def official(sample: Sample, t2: Share = 0.85) -> np.ndarray:
    """The released code's merge: greedy by class order, a mask serves one class only.

    Parameters
    ----------
    t2
        Keep a mask covering at least this share of the class's pseudo-label (>=, as released).
    """
    ov, masks = sample.overlap, sample.masks
    label = unflatten(masks.flat_label(sample.pseudo), masks.shape, masks.order)  # in the unions' layout
    taken = np.zeros(len(masks), bool)
    regions = []
    for k in ov.classes:
        inter = ov.inter[:, k]
        free = ~taken
        uncovered = ~masks.union(free)
        keep = free & ((2 * inter - ov.mask_area > 0) | (inter / ov.class_area[k] >= t2))
        taken |= keep
        regions.append((int(k), masks.union(keep) | ((label == k) & uncovered)))
    return paint(sample.pseudo, regions, keep_ignore=False)


@hookimpl
def register_strategies(register):
    register(Strategy("official", official))
