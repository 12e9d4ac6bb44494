"""Pieces shared by strategies: mask unions and the paint-in-class-order output rule."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from sepl_tree.io import IGNORE
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
    """The output label map: 0, then each ``(k, region)`` painted with k in the given order.

    With ``keep_ignore``, a pixel that was 255 in ``pseudo`` and that no region covers stays 255.
    """
    out = np.zeros(pseudo.shape, np.uint8)
    covered = np.zeros(pseudo.shape, bool) if keep_ignore else None
    for k, region in regions:
        if region.dtype == bool:
            np.copyto(out, k, where=region)  # also fast for a column-major region
        else:
            out[region] = k
        if covered is not None:
            covered |= region
    if covered is not None:
        out[(pseudo == IGNORE) & ~covered] = IGNORE
    return out
