"""``tree-residual``: drop a kept mask whose extra pixels neither the pseudo-label nor SAM's parts explain.

The enveloping failure: SAM returns a mask E holding an object *and* neighbouring background
(the boat and the sea). ``threshold`` keeps E when it covers the class's pseudo-label (o_p) or,
with a CAM that leaks into the background, when most of E lies inside the pseudo-label (o_s).
A smaller kept mask of the same class (the boat) then already accounts for the pseudo-label.
Partial activation looks the same through the pseudo-label alone (the CAM lit one part of an
object, a smaller kept mask - the part - accounts for it, the parent is the whole object),
so the rule also asks SAM's own structure: a whole object is (nearly) the union of its parts,
which SAM segments as smaller masks nested in it; the background that an envelope adds is not
a part of anything inside it.

Rule, on the containment tree (``tau``) and the masks ``threshold`` keeps (``t1``, ``t2``): a
kept mask E of class k is dropped when both hold

1. *its support is explained below*: the kept descendants of E assigned to k cover at least
   ``cover`` of E's pseudo-label pixels, ``|E ∩ P_k ∩ ∪D| >= cover · |E ∩ P_k|``;
2. *its extent is not*: E's children in the tree (any class, kept or not) cover less than
   ``explained`` of E, ``|E ∩ ∪children(E)| < explained · |E|``.

Decisions are made on ``threshold``'s kept set (one pass, no cascade); ``P̂_k`` and the output
are then built exactly as in ``threshold``. With no tree edges it is ``threshold``.

It does not fix an envelope whose background is itself a SAM mask nested inside it (E is then
explained by its children), nor one whose object has no kept mask of its own.
"""

from __future__ import annotations

import numpy as np

from sepl_tree import hookimpl
from sepl_tree.masks import flat_masks
from sepl_tree.registry import Strategy
from sepl_tree.sample import Sample
from sepl_tree.strategies.common import paint
from sepl_tree.strategies.threshold import region_per_class, sepl_ratios
from sepl_tree.tree import parent_array

__all__ = ["residual_drops", "tree_residual"]


def residual_drops(sample: Sample, kept: np.ndarray, cover: float = 0.5, explained: float = 0.9) -> np.ndarray:
    """Which of the ``kept`` masks the rule drops (``bool (L,)``); needs ``sample.tree``."""
    n = len(kept)
    drop = np.zeros(n, bool)
    tree = sample.tree
    if tree is None or tree.number_of_edges() == 0:
        return drop
    assigned = sample.assigned
    parents = parent_array(tree, n)
    flat, lab = flat_masks(sample.masks.masks, sample.pseudo)
    # Walk up from every kept mask: each strict ancestor of class k learns it has a kept k below.
    below: dict[int, list[int]] = {}
    for d in np.flatnonzero(kept):
        p = parents[d]
        while p >= 0:
            if kept[p] and assigned[p] == assigned[d]:
                below.setdefault(int(p), []).append(int(d))
            p = parents[p]
    for e, kept_below in below.items():
        mask = flat[e]
        support = mask & (lab == assigned[e])
        n_support = np.count_nonzero(support)
        under = np.logical_or.reduce(flat[kept_below], axis=0)
        if np.count_nonzero(support & under) < cover * n_support:
            continue
        children = list(tree.successors(e))
        inside = np.logical_or.reduce(flat[children], axis=0) & mask
        if np.count_nonzero(inside) < explained * np.count_nonzero(mask):
            drop[e] = True
    return drop


def tree_residual(sample: Sample, t1: float = 0.5, t2: float = 0.85, tau: float = 0.9, cover: float = 0.5,
                  explained: float = 0.9) -> np.ndarray:
    """threshold, minus kept masks whose pseudo-label smaller kept masks explain but whose extent their children do not.

    Parameters
    ----------
    t1
        Keep a mask whose share inside its class's pseudo-label, o_s, exceeds this.
    t2
        Keep a mask that covers more than this share of its class's pseudo-label, o_p.
    tau
        Containment tree: a parent holds at least this share of its child's pixels.
    cover
        Drop only if kept same-class descendants hold at least this share of the mask's pseudo-label pixels.
    explained
        Drop only if the mask's tree children cover less than this share of it.
    """
    if sample.tree is None:
        raise ValueError("tree-residual needs sample.tree (the strategy declares needs_tree)")
    o_s, o_p = sepl_ratios(sample)
    kept = (sample.assigned >= 0) & ((o_s > t1) | (o_p > t2))
    keep = kept & ~residual_drops(sample, kept, cover, explained)
    return paint(sample.pseudo, region_per_class(sample, keep))


@hookimpl
def register_strategies(register):
    register(Strategy("tree-residual", tree_residual, needs_tree=True))
