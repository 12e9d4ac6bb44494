"""The containment tree of an image's SAM masks, and helpers to walk it.

Conventions
-----------
- Masks are a :class:`sepl_tree.masks.MaskSet`; only pixel-order-free counts are computed here,
  on its bits (``MaskSet.packed``, in the set's pixel order). Boxes are XYWH.
- The tree is an ``nx.DiGraph`` with edges parent -> child; node ids are the mask indices
  ``0..L-1`` (every mask is a node, roots included); node attributes are scalars or tuples:
  ``area`` (pixels), ``bbox`` (XYWH tuple of ints, tight), ``depth`` (0 for roots) and, where the
  mask's record has them, ``predicted_iou``, ``stability_score`` and ``level`` (SAM's multimask
  output index; which masks answer one prompt is ``Sample.prompts``, kept off the tree so that
  building it stays cheap).

The rule
--------
Masks are ranked by the pair ``(|S|, index)``. The parent of mask c is, among the masks p != c
with ``|S_p ∩ S_c| >= tau·|S_c|`` and ``(|S_p|, p) > (|S_c|, c)``, the one of smallest
``(|S_p|, p)``. Masks with no such p are roots. A parent always ranks above its child, so the
result is a forest (``nx.is_branching`` holds). The comparison with ``tau·|S_c|`` allows a
relative slack of 1e-9 so that a decimal tau behaves as written (14 of 25 pixels is enough for
tau = 0.56 although ``0.56 * 25`` is 14.000000000000002 in floating point).

Cost
----
Pairs are pruned by bounding boxes first: ``|S_p ∩ S_c| <= |box_p ∩ box_c|``, so only pairs
whose boxes overlap by at least ``tau·|S_c|`` pixels are candidates. The masks' bits (64 pixels
a word, ``MaskSet.packed``, shared with the overlap counts) are ANDed and popcounted over the
child's span (the words of the lines its box covers: columns for column-major sets, rows
otherwise), for all candidate pairs at once in bounded chunks. The work is ``sum over candidate pairs of span(c) / 64`` words,
never ``L² · H · W``; no Python loop runs per pair.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sepl_tree.masks import MaskSet
from sepl_tree.prompts import SCORE_KEYS, score_value

if TYPE_CHECKING:  # networkx is imported where a tree is made: a run that needs none skips its 0.1 s import
    import networkx as nx

__all__ = [
    "any_descendant",
    "build_tree",
    "depths",
    "ancestors_of_class",
    "parent_array",
]

_SLACK = 1e-9
#: Words gathered at once (sum of the child spans of a chunk of pairs), to bound temporaries.
_GATHER_BUDGET = 1 << 21


def _box_overlap(boxes: np.ndarray) -> np.ndarray:
    """``(L, L)`` pixel area of the intersection of every pair of XYWH boxes."""
    x0, y0 = boxes[:, 0], boxes[:, 1]
    x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]
    w = np.minimum(x1[:, None], x1[None, :]) - np.maximum(x0[:, None], x0[None, :])
    h = np.minimum(y1[:, None], y1[None, :]) - np.maximum(y0[:, None], y0[None, :])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def _pair_intersections(words: np.ndarray, child: np.ndarray, cand: np.ndarray, first: np.ndarray,
                        last: np.ndarray) -> np.ndarray:
    """``|S_child ∩ S_cand|`` for each pair, counting only the child's word span, in vectorised chunks."""
    out = np.zeros(len(child), np.int64)
    row = words.shape[1]
    flat = words.reshape(-1)
    span = last[child] - first[child]
    ends = np.cumsum(span)
    lo = 0
    while lo < len(child):
        # the largest run of pairs whose spans fit the budget (at least one pair)
        base = ends[lo - 1] if lo else 0
        hi = max(lo + 1, int(np.searchsorted(ends, base + _GATHER_BUDGET, side="right")))
        c, p, sp = child[lo:hi], cand[lo:hi], span[lo:hi]
        starts = np.cumsum(sp) - sp
        at_child = np.arange(int(sp.sum())) + np.repeat(c * row + first[c] - starts, sp)  # flat word index
        at_cand = at_child + np.repeat((p - c) * row, sp)
        bits = np.bitwise_count(flat.take(at_child) & flat.take(at_cand))
        out[lo:hi] = np.add.reduceat(bits, starts, dtype=np.int64) if bits.size else 0
        lo = hi
    return out


def _tree_arrays(masks: MaskSet, tau: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(parents, area, boxes)`` of the masks under the containment rule."""
    n = len(masks)
    parents = np.full(n, -1, np.int64)
    if n == 0:
        return parents, np.zeros(0, np.int64), np.zeros((0, 4), np.int64)
    words = masks.packed
    boxes = masks.boxes
    area = masks.areas
    if n < 2:
        return parents, area, boxes
    # rank[i]: position of mask i when sorted by (area, index)
    order = np.lexsort((np.arange(n), area))
    rank = np.empty(n, np.int64)
    rank[order] = np.arange(n)
    need = tau * area.astype(np.float64) * (1.0 - _SLACK)  # minimum intersection for a parent
    # candidate[c, p]: p ranks above c and the boxes overlap enough
    candidate = (rank[None, :] > rank[:, None]) & (_box_overlap(boxes) >= need[:, None])
    empty = area == 0
    # An empty child is held by every mask ranked above it (0 >= tau * 0).
    candidate[empty] = rank[None, :] > rank[empty, None]
    first, last = masks.spans
    for c in np.flatnonzero(empty & candidate.any(axis=1)):
        above = np.flatnonzero(candidate[c])
        parents[c] = above[np.argmin(rank[above])]
    candidate[empty] = False
    child, cand = np.nonzero(candidate)
    inter = _pair_intersections(words, child, cand, first, last)
    ok = inter >= need[child]
    child, cand = child[ok], cand[ok]
    if child.size:
        # for each child, the qualifying candidate of lowest rank
        order = np.lexsort((rank[cand], child))
        child, cand = child[order], cand[order]
        head = np.r_[True, child[1:] != child[:-1]]
        parents[child[head]] = cand[head]
    return parents, area, boxes


def build_tree(masks: MaskSet, tau: float = 0.9) -> nx.DiGraph:
    """The containment forest of ``masks``: edges parent -> child, nodes = mask indices.

    Parameters
    ----------
    masks
        The image's masks.
    tau
        A parent holds at least this share of its child's pixels (``|S_p ∩ S_c| >= tau·|S_c|``).
        The masks' bits and boxes are shared with everything else that uses the set (the
        overlap counts pack them once).

    >>> m = np.zeros((3, 2, 4), bool)
    >>> m[0] = True; m[1, :, :2] = True; m[2, 0, :1] = True
    >>> t = build_tree(MaskSet(m))
    >>> sorted(t.edges), t.nodes[2]["depth"], t.nodes[0]["bbox"]
    ([(0, 1), (1, 2)], 2, (0, 0, 4, 2))
    """
    parents, area, boxes = _tree_arrays(masks, tau)
    depth = depths(parents)
    records = masks.records
    nodes = []
    for i, (a, box, d) in enumerate(zip(area.tolist(), boxes.tolist(), depth.tolist())):
        attrs = {"area": a, "bbox": tuple(box), "depth": d}
        rec = records[i]
        for key in SCORE_KEYS:
            v = score_value(rec.get(key))
            if v is not None:
                attrs[key] = v
        if type(rec.get("level")) is int:
            attrs["level"] = rec["level"]
        nodes.append((i, attrs))
    import networkx as nx

    tree = nx.DiGraph()
    tree.add_nodes_from(nodes)
    child = np.flatnonzero(parents >= 0)
    tree.add_edges_from(zip(parents[child].tolist(), child.tolist()))
    return tree


# ------------------------------------------------------------------------------------ helpers


def parent_array(tree: nx.DiGraph, n: int | None = None) -> np.ndarray:
    """Parent of each node ``0..n-1`` (``n`` defaults to the node count), ``-1`` for roots."""
    n = tree.number_of_nodes() if n is None else n
    parents = np.full(n, -1, np.int64)
    for p, c in tree.edges:
        if c < n:
            parents[c] = p
    return parents


def depths(parents: np.ndarray) -> np.ndarray:
    """Depth of each node (0 for roots) from a parent array (``-1`` for roots).

    >>> depths(np.array([-1, 0, 1, -1])).tolist()
    [0, 1, 2, 0]
    """
    parents = np.asarray(parents, np.int64)
    depth = np.zeros(len(parents), np.int64)
    up = parents.copy()
    while (alive := up >= 0).any():  # one step up per round for every node that still can
        depth[alive] += 1
        up[alive] = parents[up[alive]]
    return depth


def _bottom_up(parents: np.ndarray) -> np.ndarray:
    """Nodes ordered so that every child comes before its parent (deepest first)."""
    return np.argsort(-depths(parents), kind="stable")


def any_descendant(tree: nx.DiGraph, flags: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
    """For each node, whether some strict descendant d has ``flags[d]``.

    With ``classes`` (an int per node, ``-1`` for none), the descendant must also have the node's
    own class (and nodes of class -1 get ``False``).

    >>> import networkx as nx
    >>> t = nx.DiGraph([(0, 1), (1, 2)]); t.add_node(3)
    >>> any_descendant(t, np.array([0, 0, 1, 1], bool)).tolist()
    [True, True, False, False]
    >>> any_descendant(t, np.array([0, 0, 1, 1], bool), np.array([1, 2, 1, 1])).tolist()
    [True, False, False, False]
    """
    n = len(flags)
    parents = parent_array(tree, n)
    if classes is None:
        below = np.zeros(n, bool)
        for c in _bottom_up(parents):
            p = parents[c]
            if p >= 0:
                below[p] |= below[c] | bool(flags[c])
        return below
    classes = np.asarray(classes)
    values = np.unique(classes[classes >= 0])
    col = np.searchsorted(values, classes)
    has = np.zeros((n, len(values)), bool)  # has[v, j]: a flagged descendant of class values[j]
    for c in _bottom_up(parents):
        p = parents[c]
        if p >= 0:
            has[p] |= has[c]
            if flags[c] and classes[c] >= 0:
                has[p, col[c]] = True
    out = np.zeros(n, bool)
    ok = classes >= 0
    out[ok] = has[np.flatnonzero(ok), col[ok]]
    return out


def ancestors_of_class(tree: nx.DiGraph, node: int, assigned: np.ndarray) -> list[int]:
    """Strict ancestors of ``node`` assigned to the same class as ``node``, nearest first."""
    k = assigned[node]
    out = []
    preds = list(tree.predecessors(node))
    while preds:
        node = preds[0]
        if assigned[node] == k:
            out.append(node)
        preds = list(tree.predecessors(node))
    return out
