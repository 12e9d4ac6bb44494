"""The containment tree of an image's SAM masks, and helpers to walk it.

Conventions
-----------
- Masks are ``bool (L, H, W)`` (possibly a column-major view; only pixel-order-free counts are
  computed here, through :func:`sepl_tree.masks.flat_masks`). Boxes are XYWH.
- The tree is an ``nx.DiGraph`` with edges parent -> child; node ids are the mask indices
  ``0..L-1`` (every mask is a node, roots included); node attributes are scalars or tuples:
  ``area`` (pixels), ``bbox`` (XYWH tuple of ints, tight), ``depth`` (0 for roots) and, where the
  mask's record has them, ``predicted_iou`` and ``stability_score``.

The rule
--------
Masks are ranked by the pair ``(|S|, index)``. The parent of mask c is, among the masks p != c
with ``|S_p ∩ S_c| >= tau·|S_c|`` and ``(|S_p|, p) > (|S_c|, c)``, the one of smallest
``(|S_p|, p)``. Masks with no such p are roots. A parent always ranks above its child, so the
result is a forest (``nx.is_branching`` holds). The comparison with ``tau·|S_c|`` allows a
relative slack of 1e-9 so that a decimal tau such as 0.7 behaves as written (7 of 10 pixels is
enough for tau = 0.7 although ``0.7 * 10 > 7`` in floating point).

Cost
----
Pairs are pruned by bounding boxes first: ``|S_p ∩ S_c| <= |box_p ∩ box_c|``, so only pairs
whose boxes overlap by at least ``tau·|S_c|`` pixels are candidates. Their intersections are
then counted per child by gathering the child's pixels from the candidates' rows of the
flattened masks, so the work is ``sum_c |S_c| · #candidates(c)``, never ``L² · H · W``.
"""

from __future__ import annotations

from collections.abc import Iterable

import networkx as nx
import numpy as np

from sepl_tree.masks import MaskSet, flat_masks, masks_to_bbox_xywh

__all__ = [
    "any_descendant",
    "build_tree",
    "chains",
    "containment_parents",
    "depths",
    "descendants_of_class",
    "ancestors_of_class",
    "parent_array",
]

_SLACK = 1e-9
#: Words gathered at once (candidates x child's span), to bound the temporary array.
_GATHER_BUDGET = 1 << 22


def _box_overlap(boxes: np.ndarray) -> np.ndarray:
    """``(L, L)`` pixel area of the intersection of every pair of XYWH boxes."""
    x0, y0 = boxes[:, 0], boxes[:, 1]
    x1, y1 = x0 + boxes[:, 2], y0 + boxes[:, 3]
    w = np.minimum(x1[:, None], x1[None, :]) - np.maximum(x0[:, None], x0[None, :])
    h = np.minimum(y1[:, None], y1[None, :]) - np.maximum(y0[:, None], y0[None, :])
    return np.clip(w, 0, None) * np.clip(h, 0, None)


def _pack_words(flat: np.ndarray) -> np.ndarray:
    """``(L, N)`` bool rows as ``(L, ceil(N/64))`` uint64 words (bit-packed, zero-padded)."""
    packed = np.packbits(flat, axis=1)
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.pad(packed, ((0, 0), (0, pad)))
    return np.ascontiguousarray(packed).view(np.uint64)


def _tree_arrays(masks: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(parents, area, boxes)`` of ``bool (L, H, W)`` masks under the containment rule."""
    n = len(masks)
    parents = np.full(n, -1, np.int64)
    boxes = masks_to_bbox_xywh(masks)
    if n == 0:
        return parents, np.zeros(0, np.int64), boxes
    flat, _ = flat_masks(masks)
    # Bit-packed rows: an intersection is a popcount of ANDed words, and only the words between
    # the child's first and last pixel (in flat order) can hold it.
    words = _pack_words(flat)
    area = np.bitwise_count(words).sum(axis=1, dtype=np.int64)
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
    nz = words != 0
    first = nz.argmax(axis=1)
    last = words.shape[1] - nz[:, ::-1].argmax(axis=1)
    for c in np.flatnonzero(candidate.any(axis=1)):
        cands = np.flatnonzero(candidate[c])
        cands = cands[np.argsort(rank[cands])]  # nearest-ranked first: the parent is usually early
        if empty[c]:
            parents[c] = cands[0]
            continue
        lo_w, hi_w = first[c], last[c]
        row = words[c, lo_w:hi_w]
        cap = max(1, _GATHER_BUDGET // max(row.size, 1))
        lo, step = 0, 4
        while lo < cands.size:  # growing chunks: stop at the first (lowest-ranked) parent
            chunk = cands[lo:lo + step]
            inter = np.bitwise_count(words[chunk, lo_w:hi_w] & row).sum(axis=1, dtype=np.int64)
            ok = np.flatnonzero(inter >= need[c])
            if ok.size:
                parents[c] = chunk[ok[0]]
                break
            lo, step = lo + step, min(cap, 4 * step)
    return parents, area, boxes


def containment_parents(masks: np.ndarray, tau: float = 0.9) -> np.ndarray:
    """The parent index of each mask under the containment rule, ``-1`` for roots.

    Parameters
    ----------
    masks
        ``bool (L, H, W)``.
    tau
        A parent holds at least this share of its child's pixels.

    >>> m = np.zeros((3, 1, 4), bool)
    >>> m[0, 0, :4] = True; m[1, 0, :2] = True; m[2, 0, 3] = True
    >>> containment_parents(m).tolist()
    [-1, 0, 0]
    """
    return _tree_arrays(masks, tau)[0]


def _finite(value) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


def build_tree(masks: MaskSet, tau: float = 0.9) -> nx.DiGraph:
    """The containment forest of ``masks``: edges parent -> child, nodes = mask indices.

    Parameters
    ----------
    masks
        The image's masks.
    tau
        A parent holds at least this share of its child's pixels (``|S_p ∩ S_c| >= tau·|S_c|``).

    >>> m = np.zeros((3, 2, 4), bool)
    >>> m[0] = True; m[1, :, :2] = True; m[2, 0, :1] = True
    >>> t = build_tree(MaskSet(m))
    >>> sorted(t.edges), t.nodes[2]["depth"], t.nodes[0]["bbox"]
    ([(0, 1), (1, 2)], 2, (0, 0, 4, 2))
    """
    arr = masks.masks
    parents, area, boxes = _tree_arrays(arr, tau)
    depth = depths(parents)
    tree = nx.DiGraph()
    for i in range(len(arr)):
        attrs = {"area": int(area[i]), "bbox": tuple(int(v) for v in boxes[i]), "depth": int(depth[i])}
        rec = masks.records[i] if i < len(masks.records) else {}
        for key in ("predicted_iou", "stability_score"):
            v = _finite(rec.get(key))
            if v is not None:
                attrs[key] = v
        tree.add_node(i, **attrs)
    tree.add_edges_from((int(p), int(c)) for c, p in enumerate(parents) if p >= 0)
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
    """Depth of each node (0 for roots) from a parent array (``-1`` for roots)."""
    n = len(parents)
    depth = np.full(n, -1, np.int64)
    for start in range(n):
        path = []
        node = start
        while node >= 0 and depth[node] < 0:
            path.append(node)
            node = parents[node]
        base = -1 if node < 0 else depth[node]
        for offset, v in enumerate(reversed(path), start=1):
            depth[v] = base + offset
    return depth


def _bottom_up(parents: np.ndarray) -> np.ndarray:
    """Nodes ordered so that every child comes before its parent (deepest first)."""
    return np.argsort(-depths(parents), kind="stable")


def any_descendant(tree: nx.DiGraph, flags: np.ndarray, classes: np.ndarray | None = None) -> np.ndarray:
    """For each node, whether some strict descendant d has ``flags[d]``.

    With ``classes`` (an int per node, ``-1`` for none), the descendant must also have the node's
    own class (and nodes of class -1 get ``False``).

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


def descendants_of_class(tree: nx.DiGraph, node: int, assigned: np.ndarray) -> list[int]:
    """Strict descendants of ``node`` assigned to the same class as ``node``, increasing."""
    k = assigned[node]
    return sorted(d for d in nx.descendants(tree, node) if assigned[d] == k)


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


def chains(tree: nx.DiGraph) -> list[list[int]]:
    """Every root-to-leaf path, each a list of node ids from the root down, sorted.

    >>> chains(nx.DiGraph([(0, 1), (0, 2), (2, 3)]))
    [[0, 1], [0, 2, 3]]
    """
    out: list[list[int]] = []
    roots: Iterable[int] = sorted(n for n in tree.nodes if tree.in_degree(n) == 0)
    stack = [[r] for r in sorted(roots, reverse=True)]
    while stack:
        path = stack.pop()
        kids = sorted(tree.successors(path[-1]), reverse=True)
        if not kids:
            out.append(path)
        stack.extend(path + [k] for k in kids)
    return sorted(out)
