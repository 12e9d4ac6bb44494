"""Pieces shared by strategies: mask unions and the paint-in-class-order output rule.

Masks are ``bool (L, H, W)``, possibly a column-major view (as decoded from RLE, see
:func:`sepl_tree.masks.flat_masks`); unions are computed on the flat rows, in place, so neither
a transposing copy nor a copy of the selected masks is made.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from sepl_tree.io import IGNORE
from sepl_tree.masks import flat_masks
from sepl_tree.overlap import unflatten, union_bits

__all__ = ["paint", "union"]


def union(masks: np.ndarray, selected: np.ndarray, packed: np.ndarray | None = None) -> np.ndarray:
    """Union (``bool (H, W)``) of the masks whose index is in ``selected`` (bool or int index).

    With ``packed`` (the masks' bits, ``sample.overlap.packed``) the union is ORed on the
    packed rows, an eighth of the bytes.

    >>> m = np.array([[[1, 0, 0]], [[0, 1, 0]], [[0, 0, 1]]], bool)
    >>> union(m, np.array([True, False, True])).tolist(), union(m, np.array([1])).tolist()
    ([[True, False, True]], [[False, True, False]])
    """
    selected = np.asarray(selected)
    index = np.flatnonzero(selected) if selected.dtype == bool else selected.reshape(-1)
    if packed is not None:
        return union_bits(packed, index, masks)
    if index.size == 0:
        return np.zeros(masks.shape[1:], bool)
    if not (masks.flags.c_contiguous or masks.transpose(0, 2, 1).flags.c_contiguous):
        return np.logical_or.reduce(masks[selected], axis=0)  # an unusual layout: copy the selected only
    rows, _ = flat_masks(masks)  # a view, in the masks' own pixel order
    acc = rows[index[0]].copy()
    for i in index[1:]:
        np.logical_or(acc, rows[i], out=acc)
    return unflatten(acc, masks)


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
