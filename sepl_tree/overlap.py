"""Vectorised overlap statistics between SAM masks and a label map.

Masks are a :class:`sepl_tree.masks.MaskSet` (or ``bool (L, H, W)``); the label map is
``uint8 (H, W)`` with 0 background, 1..K-1 classes and 255 ignore. Counts are ``int64``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sepl_tree.label_maps import label_values
from sepl_tree.masks import MaskSet, pack_rows, popcount_rows

__all__ = [
    "Overlap",
    "assign_masks",
    "compute_overlap",
    "popcount_rows",
    "present_classes",
]


@dataclass(frozen=True)
class Overlap:
    """Pixel counts relating L masks to the K classes of a label map.

    Attributes
    ----------
    inter
        ``(L, K)``: ``inter[l, k] = |S_l ∩ P_k|``; column 0 (background) is left at 0.
    mask_area
        ``(L,)``: ``|S_l|``.
    class_area
        ``(K,)``: ``|P_k|`` for the present classes; 0 elsewhere (background is not counted).
    classes
        The classes k in 1..K-1 present in the label map, increasing.
    class_bits
        ``{k: P_k}`` for the present classes, as bits in the masks' pixel order (as
        :attr:`sepl_tree.masks.MaskSet.packed`): what the counts were made from, for rules that
        count further pixels of a class (AND with mask bits, then popcount).
    """

    inter: np.ndarray
    mask_area: np.ndarray
    class_area: np.ndarray
    classes: np.ndarray
    class_bits: dict[int, np.ndarray] = field(default_factory=dict)


def present_classes(label: np.ndarray, num_classes: int) -> np.ndarray:
    """Classes 1..K-1 that occur in ``label``, increasing (0 and 255 are never classes)."""
    values = label_values(label)
    return values[(values > 0) & (values < num_classes)]


def compute_overlap(masks: MaskSet | np.ndarray, label: np.ndarray, num_classes: int) -> Overlap:
    """Intersections of every mask with every class present in ``label``.

    Counted on the masks' bits (:attr:`sepl_tree.masks.MaskSet.packed`, in the set's own pixel
    order, with the label map flattened alike): each count is a popcount of ANDed words over the
    span of the class's words only, for the masks whose own span reaches it, so the cost does
    not grow with the labelled area and no transposing copy of the masks is made.

    >>> m = np.array([[[1, 1, 0]], [[0, 1, 1]]], bool)
    >>> ov = compute_overlap(m, np.array([[1, 2, 2]], np.uint8), 3)
    >>> ov.inter.tolist(), ov.mask_area.tolist(), ov.class_area.tolist()
    ([[0, 1, 1], [0, 0, 2]], [2, 2], [0, 1, 2])
    """
    maskset = masks if isinstance(masks, MaskSet) else MaskSet(masks)
    lab = maskset.flat_label(label)
    classes = present_classes(lab, num_classes)
    class_area = np.zeros(num_classes, np.int64)
    inter = np.zeros((len(maskset), num_classes), np.int64)
    packed = maskset.packed
    first, last = maskset.spans
    class_bits = {}
    for k in classes:
        is_k = lab == k
        class_area[k] = np.count_nonzero(is_k)
        in_class = class_bits[int(k)] = pack_rows(is_k[None])[0]
        words = np.flatnonzero(in_class)  # class pixels lie in these words only (objects are compact)
        lo, hi = words[0], words[-1] + 1
        near = np.flatnonzero((first < hi) & (last > lo))  # the masks whose own words reach that span
        inter[near, k] = popcount_rows(packed[near, lo:hi] & in_class[lo:hi])
    return Overlap(inter, maskset.areas, class_area, classes, class_bits)


def assign_masks(ov: Overlap) -> np.ndarray:
    """Class of each mask by the paper's rule, ``-1`` where it touches no class (or is empty).

    Each mask goes to ``argmax_k |S ∩ P_k|`` over the present classes, the lowest k on ties.
    """
    assigned = np.full(len(ov.mask_area), -1, np.int64)
    if not ov.classes.size or not len(assigned):
        return assigned
    sub = ov.inter[:, ov.classes]
    best = sub.argmax(axis=1)  # first maximum: the lowest class index on ties
    hit = sub[np.arange(len(sub)), best] > 0
    assigned[hit] = ov.classes[best[hit]]
    return assigned
