"""Vectorised overlap statistics between SAM masks and a label map.

Masks are ``bool (L, H, W)``; the label map is ``uint8 (H, W)`` with 0 background, 1..K-1
classes and 255 ignore. Counts are ``int64``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sepl_tree.masks import flat_masks

__all__ = [
    "Overlap",
    "assign_masks",
    "compute_overlap",
    "pack_rows",
    "popcount_rows",
    "present_classes",
    "unflatten",
    "union_bits",
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
        ``(K,)``: ``|P_k|``.
    classes
        The classes k in 1..K-1 present in the label map, increasing.
    packed
        ``uint64 (L, ceil(H*W / 64))``: the masks as bits (:func:`pack_rows`) in the pixel order
        of :func:`sepl_tree.masks.flat_masks`, for fast unions (:func:`union_bits`); ``None``
        when not computed.
    """

    inter: np.ndarray
    mask_area: np.ndarray
    class_area: np.ndarray
    classes: np.ndarray
    packed: np.ndarray | None = field(default=None, repr=False, compare=False)


def present_classes(label: np.ndarray, num_classes: int) -> np.ndarray:
    """Classes 1..K-1 that occur in ``label``, increasing (0 and 255 are never classes)."""
    return _present(np.bincount(label.reshape(-1), minlength=256), num_classes)


def _present(counts: np.ndarray, num_classes: int) -> np.ndarray:
    present = np.flatnonzero(counts[:num_classes])
    return present[present > 0]


_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], np.uint8)


def pack_rows(flat: np.ndarray) -> np.ndarray:
    """``bool (L, N)`` as bits: ``uint64 (L, ceil(N / 64))``, zero-padded at the end of each row.

    Counting on the packed rows reads an eighth of the bytes; the zero padding never counts.
    """
    n, width = flat.shape
    packed = np.zeros((n, -(-width // 64) * 8), np.uint8)
    packed[:, : -(-width // 8)] = np.packbits(flat, axis=1)
    return packed.view(np.uint64)


def popcount_rows(words: np.ndarray) -> np.ndarray:
    """``int64 (L,)``: the number of set bits in each row of ``uint64 (L, n)``.

    >>> popcount_rows(pack_rows(np.array([[1, 0, 1], [0, 0, 0]], bool))).tolist()
    [2, 0]
    """
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(words).sum(axis=1, dtype=np.int64)
    return _POPCOUNT8[words.view(np.uint8)].sum(axis=1, dtype=np.int64)


def compute_overlap(masks: np.ndarray, label: np.ndarray, num_classes: int) -> Overlap:
    """Intersections of every mask with every class present in ``label``.

    The masks are packed into bits once (in whichever pixel order they are stored, see
    :func:`sepl_tree.masks.flat_masks`); each count is then a popcount of packed words, so the
    cost does not grow with the labelled area and no transposing copy is made.

    >>> m = np.array([[[1, 1, 0]], [[0, 1, 1]]], bool)
    >>> ov = compute_overlap(m, np.array([[1, 2, 2]], np.uint8), 3)
    >>> ov.inter.tolist(), ov.mask_area.tolist(), ov.class_area.tolist()
    ([[0, 1, 1], [0, 0, 2]], [2, 2], [0, 1, 2])
    """
    n = len(masks)
    flat, lab = flat_masks(masks, label)
    counts = np.bincount(lab, minlength=256)
    class_area = counts[:num_classes].astype(np.int64)
    classes = _present(counts, num_classes)
    inter = np.zeros((n, num_classes), np.int64)
    packed = pack_rows(flat)
    mask_area = popcount_rows(packed)
    for k in classes:
        in_class = pack_rows((lab == k)[None])[0]
        words = np.flatnonzero(in_class)  # class pixels lie in these words only (objects are compact)
        span = slice(words[0], words[-1] + 1)
        inter[:, k] = popcount_rows(packed[:, span] & in_class[span])
    return Overlap(inter, mask_area, class_area, classes, packed)


def unflatten(flat: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """A flat ``(H*W,)`` array in the pixel order :func:`flat_masks` used for ``masks``, as ``(H, W)``.

    A view, no copy: column-major when ``masks`` is (see :func:`sepl_tree.masks.flat_masks`).
    """
    height, width = masks.shape[1:]
    if masks.flags.c_contiguous or not masks.transpose(0, 2, 1).flags.c_contiguous:
        return flat.reshape(height, width)
    return flat.reshape(width, height).T


def union_bits(packed: np.ndarray, index: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Union (``bool (H, W)``) of the masks ``index`` (int array) from their packed bits.

    ORs an eighth of the bytes a union of the ``bool`` masks would, then unpacks once.

    >>> m = np.array([[[1, 0, 0]], [[0, 1, 0]], [[0, 0, 1]]], bool)
    >>> union_bits(pack_rows(m.reshape(3, -1)), np.array([0, 2]), m).tolist()
    [[True, False, True]]
    """
    height, width = masks.shape[1:]
    if index.size == 0:
        return np.zeros((height, width), bool)
    bits = np.bitwise_or.reduce(packed[index], axis=0)
    flat = np.unpackbits(bits.view(np.uint8), count=height * width).view(bool)
    return unflatten(flat, masks)


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
