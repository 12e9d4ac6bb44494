"""An example third-party strategy: each class takes its single largest well-supported mask.

Load it with ``sepl-tree run --plugin plugins/largest_mask.py --strategy largest-mask ...``.
"""

import numpy as np

from sepl_tree import Strategy, hookimpl


def largest_mask(sample, min_share: float = 0.5):
    """Paint each class with its largest assigned mask whose o_s exceeds min_share.

    Parameters
    ----------
    min_share
        Smallest share of the mask that must lie inside the class's pseudo-label.
    """
    ov, out = sample.overlap, np.zeros_like(sample.pseudo)
    for k in ov.classes:
        ok = (sample.assigned == k) & (ov.inter[:, k] > min_share * ov.mask_area)
        best = np.argmax(np.where(ok, ov.mask_area, -1))
        out[sample.masks.dense[best] if ok.any() else sample.pseudo == k] = k
    return out


@hookimpl
def register_strategies(register):
    register(Strategy("largest-mask", largest_mask))
