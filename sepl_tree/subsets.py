"""Failure subsets: which images show which way SEPL can go wrong (pure functions, no files).

Conventions
-----------
- Label maps (pseudo-label P, ground truth G) are ``uint8 (H, W)``: 0 background, 1..K-1
  classes, 255 ignore. Pixels where G is 255 are left out of every GT count below.
- Masks are a :class:`~sepl_tree.masks.MaskSet` (or ``bool (L, H, W)``), used as they come:
  every count is a popcount of their bits (:attr:`~sepl_tree.masks.MaskSet.packed`), so a set
  read from RLE is never made dense.
- The tree is the containment forest of :func:`sepl_tree.tree.build_tree` (edges parent -> child,
  node ids = mask indices).
- Mask-to-class assignment and the ``threshold`` selection reuse
  :attr:`sepl_tree.sample.Sample.assigned` and :meth:`sepl_tree.sample.Sample.sepl_keep`.

The subsets (one yes/no per image)
----------------------------------
``all``
    Every image.
``pseudo-failure`` (needs GT)
    The initial pseudo-label names a class absent from G (on at least
    :data:`MIN_REGION_FRACTION` of the image), or misses most of a GT class: its recall
    ``|P_k ∩ G_k| / |G_k|`` is below :data:`PSEUDO_MIN_RECALL`.
``sam-miss`` (needs GT)
    A GT object region -- a connected component (8-connectivity) of one class k >= 1 covering at
    least :data:`MIN_REGION_FRACTION` of the image -- that no single mask matches with IoU of
    at least :data:`SAM_MATCH_IOU` (IoU counted over non-ignore pixels).
``sam-merge`` (needs GT)
    A mask spread over several GT object classes: at least two classes k >= 1 each make up
    :data:`MERGE_MIN_SHARE` or more of the mask's non-ignore pixels.
``envelope`` (needs GT and the tree)
    A mask kept by ``threshold`` (o_s > t1 or o_p > t2 for its assigned class k) that has
    descendants in the tree and lies largely outside its class in GT: the share of its
    non-ignore pixels that are class k in G is below :data:`ENVELOPE_MAX_INSIDE`, and GT
    background makes up at least :data:`ENVELOPE_MIN_BACKGROUND` of the rest (the mask holds
    its object, or a false activation, *with surroundings*).
``nested`` (needs the tree only, GT-free)
    A class whose assigned masks (all masks the argmax rule gives it, kept or not) form a chain
    of depth >= :data:`NESTED_MIN_DEPTH`: masks ``m_0 ⊃ m_1 ⊃ ... ⊃ m_d`` of that class, each an
    ancestor of the next in the tree, with d (the number of links) >= 2.

Why these thresholds
--------------------
- :data:`MIN_REGION_FRACTION` = 0.001 (0.1 % of the image, about 190 pixels on a 500x375 VOC
  image): specks of a class in a CAM pseudo-label or in GT (fragments between occluders) are
  too small to say anything about the method and would otherwise flag most images.
- :data:`PSEUDO_MIN_RECALL` = 0.5: "misses most of a GT class" read literally -- more than
  half of the class's GT pixels are not labelled with it.
- :data:`SAM_MATCH_IOU` = 0.5: the usual criterion for a predicted region to "match" an object
  (COCO's AP50, SAM's own mask-recall plots); below it, no single mask is a good stand-in for
  the object, so SEPL can only rebuild it from parts. VOC's class maps have no instances, so
  touching objects of one class form one region; such images can land here although SAM
  segmented each instance (a known over-count).
- :data:`MERGE_MIN_SHARE` = 0.2: two classes each holding a fifth of a mask is well beyond
  boundary jitter (a few pixels, mostly inside the 255 band anyway) and means the mask
  genuinely straddles two objects; background is not counted, as "object + surroundings" is
  the envelope failure, not a merge.
- :data:`ENVELOPE_MAX_INSIDE` = 0.5: when less than half of a kept mask is its class, keeping it
  adds more false-positive than true-positive pixels for that class, i.e. it hurts.
- :data:`ENVELOPE_MIN_BACKGROUND` = 0.5: when the outside of such a mask is mostly *other
  object classes*, the failure is a wrong-class assignment (the pseudo-label confused the
  classes) or a merge (``sam-merge``), not an envelope. On SYNTHETIC masks made from the VOC
  sample's GT (``sepl-tree synth``) with the real TransCAM pseudo-labels, dropping this
  condition flagged ~100 whole-object and part masks, every one of them dominated by another
  object class.
- :data:`NESTED_MIN_DEPTH` = 2: SAM's automatic generator returns whole/part/subpart masks per
  point, so a single parent-child pair inside a class (depth 1) occurs in almost every image;
  depth 2 is three nested levels of one class, where the choice of level matters most.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sepl_tree.label_maps import IGNORE
from sepl_tree.masks import MaskSet, pack_rows, popcount_rows
from sepl_tree.morphology import connected_components
from sepl_tree.overlap import compute_overlap, present_classes
from sepl_tree.sample import DEFAULT_TAU, Sample
from sepl_tree.tree import ancestors_of_class

if TYPE_CHECKING:  # networkx is imported where a tree is walked, not when the CLI starts
    import networkx as nx

__all__ = [
    "ENVELOPE_MAX_INSIDE",
    "ENVELOPE_MIN_BACKGROUND",
    "GT_FREE",
    "MERGE_MIN_SHARE",
    "MIN_REGION_FRACTION",
    "NESTED_MIN_DEPTH",
    "PSEUDO_MIN_RECALL",
    "SAM_MATCH_IOU",
    "SUBSETS",
    "SubsetResult",
    "compute_subsets",
    "envelopes",
    "nested_chains",
    "pseudo_failures",
    "sam_merges",
    "sam_misses",
    "subset_names",
]

MIN_REGION_FRACTION = 0.001
PSEUDO_MIN_RECALL = 0.5
SAM_MATCH_IOU = 0.5
MERGE_MIN_SHARE = 0.2
ENVELOPE_MAX_INSIDE = 0.5
ENVELOPE_MIN_BACKGROUND = 0.5
NESTED_MIN_DEPTH = 2

#: Every subset name, in report order.
SUBSETS: tuple[str, ...] = ("all", "pseudo-failure", "sam-miss", "sam-merge", "envelope", "nested")
#: Subsets computable without ground truth.
GT_FREE: frozenset[str] = frozenset({"all", "nested"})


@dataclass(frozen=True)
class SubsetResult:
    """One image's membership of each requested subset, and why.

    Attributes
    ----------
    flags
        Subset name -> whether the image belongs to it.
    details
        Subset name -> JSON-ready evidence (the classes, masks and ratios that triggered it);
        empty for an image outside the subset.
    """

    flags: dict[str, bool]
    details: dict[str, Any] = field(default_factory=dict)


def _min_pixels(shape: tuple[int, ...]) -> int:
    return max(1, int(np.ceil(MIN_REGION_FRACTION * shape[0] * shape[1])))


def _r(x: float) -> float:
    return round(float(x), 4)


# ------------------------------------------------------------------------------ pseudo-failure


def pseudo_failures(pseudo: np.ndarray, gt: np.ndarray, num_classes: int) -> dict[str, list]:
    """Classes the pseudo-label invents (``absent``) or mostly misses (``missed``).

    >>> gt = np.array([[1, 1, 1, 1, 0, 0]], np.uint8)
    >>> pseudo_failures(np.array([[1, 0, 0, 0, 2, 2]], np.uint8), gt, 3)
    {'absent': [2], 'missed': [{'class': 1, 'recall': 0.25}]}
    """
    floor = _min_pixels(pseudo.shape)
    p_count = np.bincount(pseudo.reshape(-1), minlength=256)[:num_classes]
    gt_classes = present_classes(gt, num_classes)
    absent = [int(k) for k in present_classes(pseudo, num_classes)
              if p_count[k] >= floor and k not in gt_classes]
    missed = []
    for k in gt_classes:
        g = gt == k
        recall = np.count_nonzero(pseudo[g] == k) / np.count_nonzero(g)
        if recall < PSEUDO_MIN_RECALL:
            missed.append({"class": int(k), "recall": _r(recall)})
    return {"absent": absent, "missed": missed}


# ------------------------------------------------------------------------------------ sam-miss


def _object_regions(gt: np.ndarray, num_classes: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """GT object regions at least :data:`MIN_REGION_FRACTION` of the image: an ``int32`` map
    (region r at value r, 0 elsewhere) and each region's ``(class, pixels)``."""
    floor = _min_pixels(gt.shape)
    region_map = np.zeros(gt.shape, np.int32)
    regions: list[tuple[int, int]] = []
    for k in present_classes(gt, num_classes):
        labels, n = connected_components(gt == k, connectivity=8)
        sizes = np.bincount(labels.reshape(-1), minlength=n + 1)
        for c in np.flatnonzero(sizes[1:] >= floor) + 1:
            regions.append((int(k), int(sizes[c])))
            region_map[labels == c] = len(regions)
    return region_map, regions


def _as_set(masks: MaskSet | np.ndarray) -> MaskSet:
    return masks if isinstance(masks, MaskSet) else MaskSet(np.asarray(masks, bool))


def sam_misses(masks: MaskSet | np.ndarray, gt: np.ndarray, num_classes: int,
               counts: tuple[np.ndarray, np.ndarray] | None = None) -> list[dict[str, Any]]:
    """GT object regions that no single mask matches with IoU >= :data:`SAM_MATCH_IOU`.

    Each entry: ``class``, ``pixels`` (the region's size), ``best_iou`` and ``best_mask``
    (-1 when there are no masks). ``counts``: the masks' :func:`_gt_counts`, if already made.
    """
    masks = _as_set(masks)
    region_map, regions = _object_regions(gt, num_classes)
    inter = np.zeros((len(masks), len(regions)), np.int64)
    # compute_overlap counts up to 254 labels of a uint8 map at once: take the regions in chunks.
    for start in range(0, len(regions), 254):
        chunk = region_map - start
        chunk[(chunk < 1) | (chunk > 254)] = 0
        count = min(254, len(regions) - start)
        inter[:, start:start + count] = compute_overlap(masks, chunk.astype(np.uint8), 255).inter[:, 1:count + 1]
    _, valid = counts or _gt_counts(masks, gt, num_classes)
    out = []
    for r, (k, size) in enumerate(regions):
        best, best_iou = -1, 0.0
        if len(masks):
            iou = inter[:, r] / (valid + size - inter[:, r])
            best = int(iou.argmax())
            best_iou = float(iou[best])
        if best_iou < SAM_MATCH_IOU:
            out.append({"class": k, "pixels": size, "best_iou": _r(best_iou), "best_mask": best})
    return out


# ----------------------------------------------------------------------------------- sam-merge


def _gt_counts(masks: MaskSet | np.ndarray, gt: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(inter, valid)``: ``inter[l, k] = |S_l ∩ G_k|`` for every k (0 included), ``valid[l]``
    = the mask's non-ignore pixels. Counted on the masks' bits."""
    masks = _as_set(masks)
    ov = compute_overlap(masks, gt, num_classes)  # classes 1..K-1; column 0 left at 0
    void = pack_rows((masks.flat_label(gt) == IGNORE)[None])[0]
    ignored = popcount_rows(masks.packed & void)
    inter = ov.inter.copy()
    valid = ov.mask_area - ignored
    inter[:, 0] = valid - inter[:, 1:].sum(axis=1)
    return inter, valid


def sam_merges(masks: MaskSet | np.ndarray, gt: np.ndarray, num_classes: int,
               counts: tuple[np.ndarray, np.ndarray] | None = None) -> list[dict[str, Any]]:
    """Masks in which two or more object classes each hold >= :data:`MERGE_MIN_SHARE` of the
    non-ignore pixels. Each entry: ``mask`` and its ``classes``. ``counts``: the masks'
    :func:`_gt_counts`, if already made.

    >>> m = np.array([[[1, 1, 1, 1, 0]], [[1, 1, 1, 1, 1]]], bool)
    >>> sam_merges(m, np.array([[1, 1, 2, 0, 0]], np.uint8), 3)
    [{'mask': 0, 'classes': [1, 2]}, {'mask': 1, 'classes': [1, 2]}]
    """
    if not len(masks):
        return []
    inter, valid = counts or _gt_counts(masks, gt, num_classes)
    share = inter[:, 1:] / np.maximum(valid, 1)[:, None]
    big = share >= MERGE_MIN_SHARE
    return [{"mask": int(m), "classes": [int(k) + 1 for k in np.flatnonzero(big[m])]}
            for m in np.flatnonzero(big.sum(axis=1) >= 2)]


# ------------------------------------------------------------------------------------ envelope


def envelopes(sample: Sample, tree: nx.DiGraph, gt: np.ndarray, t1: float = 0.5, t2: float = 0.85,
              counts: tuple[np.ndarray, np.ndarray] | None = None) -> list[dict[str, Any]]:
    """Masks kept by ``threshold`` that have descendants and are mostly outside their GT class.

    "Mostly outside": less than :data:`ENVELOPE_MAX_INSIDE` of its non-ignore pixels are its
    class k in GT, and GT background holds at least :data:`ENVELOPE_MIN_BACKGROUND` of the rest.
    Each entry: ``mask``, ``class`` (its assigned class), ``inside`` (share of class k),
    ``background`` (share of GT background) and ``descendants``. ``counts``: every mask's
    :func:`_gt_counts`, if already made (else they are counted for the candidates only).
    """
    import networkx as nx

    keep = sample.sepl_keep(t1, t2)
    parents = [int(m) for m in np.flatnonzero(keep) if m in tree and tree.out_degree(int(m)) > 0]
    if not parents:
        return []
    if counts is None:
        inter, valid = _gt_counts(sample.masks.subset(np.array(parents)), gt, sample.num_classes)
    else:
        inter, valid = counts[0][parents], counts[1][parents]
    out = []
    for row, m in enumerate(parents):
        k = int(sample.assigned[m])
        if valid[row] == 0:
            continue
        inside = inter[row, k] / valid[row]
        outside = 1.0 - inside
        background = inter[row, 0] / valid[row]
        if inside < ENVELOPE_MAX_INSIDE and background >= ENVELOPE_MIN_BACKGROUND * outside:
            out.append({"mask": m, "class": k, "inside": _r(inside), "background": _r(background),
                        "descendants": len(nx.descendants(tree, m))})
    return out


# -------------------------------------------------------------------------------------- nested


def nested_chains(assigned: np.ndarray, tree: nx.DiGraph) -> list[dict[str, int]]:
    """Classes whose assigned masks nest at least :data:`NESTED_MIN_DEPTH` links deep.

    Each entry: ``class`` and ``depth`` (links in its longest chain of same-class masks, each an
    ancestor of the next).

    >>> import networkx as nx
    >>> nested_chains(np.array([1, 1, 1, 2]), nx.DiGraph([(0, 1), (1, 2), (2, 3)]))
    [{'class': 1, 'depth': 2}]
    """
    best: dict[int, int] = {}
    for node in tree.nodes:
        k = int(assigned[node]) if node < len(assigned) else -1
        if k >= 0:
            best[k] = max(best.get(k, 0), len(ancestors_of_class(tree, node, assigned)))
    return [{"class": k, "depth": d} for k, d in sorted(best.items()) if d >= NESTED_MIN_DEPTH]


# ------------------------------------------------------------------------------------- combine


def compute_subsets(sample: Sample, gt: np.ndarray | None = None, names: Iterable[str] = SUBSETS,
                    t1: float = 0.5, t2: float = 0.85, tau: float = DEFAULT_TAU) -> SubsetResult:
    """Decide each subset in ``names`` for one image.

    Parameters
    ----------
    sample
        The image's pseudo-label, masks and class count.
    gt
        Ground truth, needed by every subset outside :data:`GT_FREE`.
    names
        The subsets to decide.
    t1, t2
        The ``threshold`` strategy's parameters, for ``envelope``.
    tau
        The containment tree's threshold, for ``envelope`` and ``nested``.
    """
    names = list(names)
    unknown = [n for n in names if n not in SUBSETS]
    if unknown:
        raise ValueError(f"unknown subset {unknown[0]!r}; valid: {', '.join(SUBSETS)}")
    if gt is None and any(n not in GT_FREE for n in names):
        raise ValueError(f"subsets {', '.join(n for n in names if n not in GT_FREE)} need ground truth")
    masks, k = sample.masks, sample.num_classes
    # each mask's GT counts, made once for sam-miss, sam-merge and envelope (a third of the cost)
    counts = _gt_counts(masks, gt, k) if gt is not None and {"sam-miss", "sam-merge"} & set(names) else None
    flags: dict[str, bool] = {}
    details: dict[str, Any] = {}
    for name in names:
        if name == "all":
            flags[name] = True
            continue
        if name == "pseudo-failure":
            found: Any = pseudo_failures(sample.pseudo, gt, k)
        elif name == "sam-miss":
            found = sam_misses(masks, gt, k, counts)
        elif name == "sam-merge":
            found = sam_merges(masks, gt, k, counts)
        elif name == "envelope":
            found = envelopes(sample, sample.tree(tau), gt, t1, t2, counts)
        else:
            found = nested_chains(sample.assigned, sample.tree(tau))
        hit = bool(found["absent"] or found["missed"]) if name == "pseudo-failure" else bool(found)
        flags[name] = hit
        if hit:
            details[name] = found
    return SubsetResult(flags, details)


def subset_names(given: Sequence[str] | None) -> tuple[str, ...]:
    """The requested subsets in report order (all of them when none is given), ``all`` first."""
    if not given:
        return SUBSETS
    unknown = [n for n in given if n not in SUBSETS]
    if unknown:
        raise ValueError(f"unknown subset {unknown[0]!r}; valid: {', '.join(SUBSETS)}")
    return tuple(n for n in SUBSETS if n == "all" or n in given)
