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
from sepl_tree.painting import paint_kept
from sepl_tree.registry import Share, Strategy
from sepl_tree.sample import Sample

__all__ = ["threshold"]


def threshold(sample: Sample, t1: Share = 0.5, t2: Share = 0.85) -> np.ndarray:
    """The paper's rule (SEPL Algorithm 1): keep a mask if o_s > t1 or o_p > t2.

    Parameters
    ----------
    t1
        Keep a mask whose share inside its class's pseudo-label, o_s, exceeds this.
    t2
        Keep a mask that covers more than this share of its class's pseudo-label, o_p.
    """
    return paint_kept(sample, sample.sepl_keep(t1, t2))


@hookimpl
def register_strategies(register):
    register(Strategy("threshold", threshold))
