"""``threshold``: the paper's Algorithm 1 (SEPL), exactly.

Classes k = 1..K-1 present in the pseudo-label P (0 is background, 255 ignore):

1. each non-empty mask S goes to ``k* = argmax_k |S ∩ P_k|`` (lowest k on ties); a mask that
   touches no class pixel is dropped;
2. per class k, an assigned mask is kept when ``o_s = |S∩P_k|/|S| > t1`` or
   ``o_p = |S∩P_k|/|P_k| > t2``; ``P̂_k`` is the union of kept masks, or ``P_k`` if none is kept;
3. output: 0 everywhere, then ``P̂_k`` painted with k for increasing k; an input 255 pixel that
   no ``P̂_k`` covers stays 255.
"""

from __future__ import annotations

import numpy as np

from sepl_tree import hookimpl
from sepl_tree.registry import Strategy
from sepl_tree.sample import Sample
from sepl_tree.strategies.common import paint

__all__ = ["region_per_class", "sepl_ratios", "threshold"]


def sepl_ratios(sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """``(o_s, o_p)`` of each mask against its assigned class; 0 for unassigned masks."""
    ov, assigned = sample.overlap, sample.assigned
    o_s = np.zeros(len(assigned))
    o_p = np.zeros(len(assigned))
    hit = np.flatnonzero(assigned >= 0)
    if hit.size:
        k = assigned[hit]
        inter = ov.inter[hit, k].astype(np.float64)
        o_s[hit] = inter / ov.mask_area[hit]
        o_p[hit] = inter / ov.class_area[k]
    return o_s, o_p


def region_per_class(sample: Sample, keep: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``(k, P̂_k)`` for each present class: the union of its kept masks, else ``P_k``."""
    regions = []
    for k in sample.overlap.classes:
        chosen = keep & (sample.assigned == k)
        region = sample.masks.union(chosen) if chosen.any() else sample.pseudo == k
        regions.append((int(k), region))
    return regions


def threshold(sample: Sample, t1: float = 0.5, t2: float = 0.85) -> np.ndarray:
    """The paper's rule (SEPL Algorithm 1): keep a mask if o_s > t1 or o_p > t2.

    Parameters
    ----------
    t1
        Keep a mask whose share inside its class's pseudo-label, o_s, exceeds this.
    t2
        Keep a mask that covers more than this share of its class's pseudo-label, o_p.
    """
    o_s, o_p = sepl_ratios(sample)
    keep = (sample.assigned >= 0) & ((o_s > t1) | (o_p > t2))
    return paint(sample.pseudo, region_per_class(sample, keep))


@hookimpl
def register_strategies(register):
    register(Strategy("threshold", threshold))
