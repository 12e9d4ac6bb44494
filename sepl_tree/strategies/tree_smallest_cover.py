"""``tree-smallest-cover``: the ``threshold`` rule, preferring the smallest mask that covers the class.

A mask admitted only through o_p (``o_s <= t1`` and ``o_p > t2``) is dropped when one of its
descendants in the containment tree, assigned to the same class, also has ``o_p > t2``: that
smaller mask already covers the class's pseudo-label, so the larger one adds only pixels outside
it (the sea around a boat). Everything else is exactly ``threshold``.
"""

from __future__ import annotations

import numpy as np

from sepl_tree import hookimpl
from sepl_tree.registry import Share, Strategy, Tau
from sepl_tree.painting import paint_kept
from sepl_tree.sample import Sample
from sepl_tree.tree import any_descendant

__all__ = ["tree_smallest_cover"]


def tree_smallest_cover(sample: Sample, t1: Share = 0.5, t2: Share = 0.85, tau: Tau = 0.9) -> np.ndarray:
    """The threshold rule, but a mask kept only for o_p yields to a same-class descendant with o_p > t2.

    Parameters
    ----------
    t1
        Keep a mask whose share inside its class's pseudo-label, o_s, exceeds this.
    t2
        Keep a mask that covers more than this share of its class's pseudo-label, o_p.
    tau
        Containment tree: a parent holds at least this share of its child's pixels.
    """
    assigned = sample.assigned
    by_share = (assigned >= 0) & (sample.o_s > t1)
    by_cover = (assigned >= 0) & (sample.o_p > t2)
    shadowed = any_descendant(sample.tree(tau), by_cover, assigned)
    return paint_kept(sample, by_share | (by_cover & ~shadowed))


@hookimpl
def register_strategies(register):
    register(Strategy("tree-smallest-cover", tree_smallest_cover))
