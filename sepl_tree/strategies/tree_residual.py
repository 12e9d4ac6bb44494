"""``tree-residual``: drop a kept mask whose pixels beyond its kept sub-masks have no support.

The enveloping failure: SAM returns a mask E holding an object *and* neighbouring background
(the boat and the sea). ``threshold`` keeps E when it covers the class's pseudo-label (o_p) or,
when the object is larger than the background E adds or the CAM leaks into it, when most of E
lies inside the pseudo-label (o_s). A smaller kept mask of the same class (the boat) then already
accounts for the pseudo-label inside E; the rest of E (the *residual*) is what E adds.

Partial activation looks the same through the pseudo-label alone: the CAM lit one part of an
object, a smaller kept mask (the part) accounts for the pseudo-label, and the parent is the
whole object, whose residual (the other parts) has no support either. Two signals tell them
apart:

- *SAM's structure*: a whole object is (nearly) the union of its parts, which SAM segments as
  smaller masks nested in it; background that E adds around an object is often no mask inside
  E (a ring, a cut-off piece of the sea). A residual that E's children do not cover is dropped.
- *How E was admitted*: partial activation makes the whole object a parent kept **only through
  o_p** (the pseudo-label fills a fraction of it). A parent kept through o_s (the pseudo-label
  fills more than ``t1`` of it) while its kept sub-masks hold most (``cover``) of its class pixels is
  not explained by partial activation: its residual, even when made of SAM masks, is dropped
  when the pseudo-label does not support it.

Rule, on the containment tree (``tau``) and the masks ``threshold`` keeps (``t1``, ``t2``): a
kept mask E of class k that has kept descendants assigned to k (D: at least one; a kept mask
without them is always kept) is dropped when

1. the kept descendants explain its support: ``|E ∩ P_k ∩ ∪D| >= cover · |E ∩ P_k|``, and
2. either (a) its tree children (any class, kept or not) cover less than ``explained`` of it,
   ``|E ∩ ∪children(E)| < explained · |E|``, or (b) it was admitted through o_s (``o_s > t1``) and
   its residual ``R = E \\ ∪D`` has a support share below ``support``,
   ``|R ∩ P_k| < support · |R|``.

An o_p-only parent whose residual SAM's parts explain is kept (that is partial activation).
Decisions are made on ``threshold``'s kept set in one pass (no cascade); ``P̂_k`` and the output
are then built exactly as in ``threshold``. With no tree edges it is ``threshold``.

It does not fix an envelope kept only through o_p whose background is itself a mask inside it,
nor one whose object has no kept mask of its own.
"""

from __future__ import annotations

import numpy as np

from sepl_tree import hookimpl
from sepl_tree.masks import popcount
from sepl_tree.painting import paint_kept
from sepl_tree.registry import Share, Strategy, Tau
from sepl_tree.sample import DEFAULT_TAU, Sample
from sepl_tree.tree import parent_array

__all__ = ["residual_drops", "tree_residual"]


def residual_drops(sample: Sample, kept: np.ndarray, by_share: np.ndarray, tau: float = DEFAULT_TAU,
                   cover: float = 0.5, explained: float = 0.9, support: float = 0.05) -> np.ndarray:
    """Which of the ``kept`` masks the rule drops (``bool (L,)``), on the tree of ``tau``.

    ``by_share`` flags the masks admitted through o_s (``o_s > t1``).
    """
    n = len(kept)
    drop = np.zeros(n, bool)
    tree = sample.tree(tau)
    if tree.number_of_edges() == 0:
        return drop
    assigned = sample.assigned
    parents = parent_array(tree, n)
    # Walk up from every kept mask: each kept ancestor of the same class learns it has it below.
    below: dict[int, list[int]] = {}
    for d in np.flatnonzero(kept):
        p = parents[d]
        while p >= 0:
            if kept[p] and assigned[p] == assigned[d]:
                below.setdefault(int(p), []).append(int(d))
            p = parents[p]
    # All the tests below count pixels of E on the masks' bits (AND, then popcount).
    bits, area = sample.masks.packed, sample.masks.areas
    class_bits = sample.overlap.class_bits
    for e, kept_below in below.items():
        k = int(assigned[e])
        mask = bits[e]
        in_class = mask & class_bits[k]
        under = np.bitwise_or.reduce(bits[kept_below], axis=0) & mask
        if popcount(in_class & under) < cover * popcount(in_class):
            continue  # 1. the kept descendants do not explain E's support
        inside = np.bitwise_or.reduce(bits[list(tree.successors(e))], axis=0) & mask
        if popcount(inside) < explained * area[e]:
            drop[e] = True  # 2a. E adds pixels no smaller mask accounts for
            continue
        if by_share[e]:
            residual = mask & ~under
            n_residual = popcount(residual)
            if n_residual and popcount(residual & in_class) < support * n_residual:
                drop[e] = True  # 2b. admitted through o_s, but its residual is unsupported
    return drop


def tree_residual(sample: Sample, t1: Share = 0.5, t2: Share = 0.85, tau: Tau = 0.9, cover: Share = 0.5,
                  explained: Share = 0.9, support: Share = 0.05) -> np.ndarray:
    """threshold, minus kept masks whose pixels beyond their kept same-class sub-masks lack SAM parts or support.

    Parameters
    ----------
    t1
        Keep a mask whose share inside its class's pseudo-label, o_s, exceeds this.
    t2
        Keep a mask that covers more than this share of its class's pseudo-label, o_p.
    tau
        Containment tree: a parent holds at least this share of its child's pixels.
    cover
        Consider dropping a mask only if its kept same-class descendants hold this share of its pseudo-label pixels.
    explained
        Drop it if its tree children cover less than this share of it.
    support
        Drop a mask admitted through o_s if less than this share of its residual is in the pseudo-label.
    """
    assigned = sample.assigned >= 0
    by_share = assigned & (sample.o_s > t1)
    kept = by_share | (assigned & (sample.o_p > t2))
    return paint_kept(sample, kept & ~residual_drops(sample, kept, by_share, tau, cover, explained, support))


@hookimpl
def register_strategies(register):
    register(Strategy("tree-residual", tree_residual))
