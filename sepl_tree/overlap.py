"""Vectorised overlap statistics between SAM masks and a label map.

Masks are ``bool (L, H, W)``; the label map is ``uint8 (H, W)`` with 0 background, 1..K-1
classes and 255 ignore. Counts are ``int64``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sepl_tree.masks import flat_masks

__all__ = ["Overlap", "assign_masks", "compute_overlap", "present_classes"]


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
        ``(K,)``: ``|P_k|``.
    classes
        The classes k in 1..K-1 present in the label map, increasing.
    """

    inter: np.ndarray
    mask_area: np.ndarray
    class_area: np.ndarray
    classes: np.ndarray


def present_classes(label: np.ndarray, num_classes: int) -> np.ndarray:
    """Classes 1..K-1 that occur in ``label``, increasing (0 and 255 are never classes)."""
    counts = np.bincount(label.reshape(-1), minlength=256)[:num_classes]
    present = np.flatnonzero(counts)
    return present[present > 0]


def compute_overlap(masks: np.ndarray, label: np.ndarray, num_classes: int) -> Overlap:
    """Intersections of every mask with every class present in ``label``.

    >>> m = np.array([[[1, 1, 0]], [[0, 1, 1]]], bool)
    >>> ov = compute_overlap(m, np.array([[1, 2, 2]], np.uint8), 3)
    >>> ov.inter.tolist(), ov.mask_area.tolist(), ov.class_area.tolist()
    ([[0, 1, 1], [0, 0, 2]], [2, 2], [0, 1, 2])
    """
    n = len(masks)
    flat, lab = flat_masks(masks, label)
    class_area = np.bincount(lab, minlength=256)[:num_classes].astype(np.int64)
    classes = present_classes(label, num_classes)
    inter = np.zeros((n, num_classes), np.int64)
    mask_area = np.count_nonzero(flat, axis=1).astype(np.int64) if n else np.zeros(0, np.int64)
    if n and classes.size:
        # Gather the labelled pixels once, grouped by class, and count each group per mask.
        fg = np.flatnonzero((lab > 0) & (lab < num_classes))
        order = fg[np.argsort(lab[fg], kind="stable")]
        starts = np.concatenate([[0], np.cumsum(class_area[classes])[:-1]])
        sub = flat[:, order].view(np.uint8)
        inter[:, classes] = np.add.reduceat(sub, starts, axis=1, dtype=np.int64)
    return Overlap(inter, mask_area, class_area, classes)


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
