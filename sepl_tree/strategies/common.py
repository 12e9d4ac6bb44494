"""Pieces shared by strategies: mask unions and the paint-in-class-order output rule."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from sepl_tree.label_maps import IGNORE
from sepl_tree.masks import MaskSet

__all__ = ["paint", "union"]


def union(masks: MaskSet | np.ndarray, selected: np.ndarray) -> np.ndarray:
    """Union (``bool (H, W)``) of the masks whose index is in ``selected`` (bool or int index).

    ORed on the masks' bits (:meth:`sepl_tree.masks.MaskSet.union`); a plain ``bool (L, H, W)``
    array is packed first.

    >>> m = np.array([[[1, 0, 0]], [[0, 1, 0]], [[0, 0, 1]]], bool)
    >>> union(m, np.array([True, False, True])).tolist(), union(MaskSet(m), np.array([1])).tolist()
    ([[True, False, True]], [[False, True, False]])
    """
    return (masks if isinstance(masks, MaskSet) else MaskSet(masks)).union(selected)


def paint(pseudo: np.ndarray, regions: Iterable[tuple[int, np.ndarray]], keep_ignore: bool = True) -> np.ndarray:
    """The output label map: 0, then each ``(k, region)`` (``bool (H, W)``) painted with k in order.

    With ``keep_ignore``, a pixel that was 255 in ``pseudo`` and that no region covers stays 255.

    >>> pseudo = np.array([[0, 255, 255]], np.uint8)
    >>> paint(pseudo, [(1, np.array([[1, 1, 0]], bool)), (2, np.array([[1, 0, 0]], bool))]).tolist()
    [[2, 1, 255]]
    """
    regions = [(k, np.asarray(region, bool)) for k, region in regions]
    # Regions unioned from masks read from RLE are column-major views: paint in their storage
    # order (strided passes are several times slower) and make the result C-ordered once.
    flip = any(not r.flags.c_contiguous and r.T.flags.c_contiguous for _, r in regions)
    if flip:
        pseudo, regions = pseudo.T, [(k, r.T) for k, r in regions]
    out = np.zeros(pseudo.shape, np.uint8)
    covered = np.zeros(pseudo.shape, bool) if keep_ignore else None
    for k, region in regions:
        out ^= (out ^ np.uint8(k)) * region.view(np.uint8)  # k inside the region, unchanged elsewhere
        if covered is not None:
            covered |= region
    if covered is not None:
        out |= ((pseudo == IGNORE) & ~covered).view(np.uint8) * np.uint8(IGNORE)  # those pixels are still 0
    return np.ascontiguousarray(out.T) if flip else out
