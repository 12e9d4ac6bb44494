"""The output rule shared by strategies: per-class regions painted in class order.

Label maps are ``uint8 (H, W)`` (0 background, 1..K-1 classes, 255 ignore); regions are
``bool (H, W)``. The paper's output: ``P̂_k`` is the union of the masks kept for class k, or the
pseudo-label's ``P_k`` when none is kept, painted for increasing k over 0, with an input 255
pixel that no ``P̂_k`` covers left 255.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from sepl_tree.label_maps import IGNORE
from sepl_tree.sample import Sample

__all__ = ["class_regions", "paint", "paint_kept"]


def paint(pseudo: np.ndarray, regions: Iterable[tuple[int, np.ndarray]], keep_ignore: bool = True) -> np.ndarray:
    """The output label map: 0, then each ``(k, region)`` (``bool (H, W)``) painted with k in order.

    With ``keep_ignore``, a pixel that was 255 in ``pseudo`` and that no region covers stays 255.
    XOR arithmetic on the region's bytes instead of masked stores: three scattered 500x375
    regions take 0.19 ms against 6.5 ms with ``out[region] = k`` (compact regions gain less).

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


def class_regions(sample: Sample, keep: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """``(k, P̂_k)`` for each class present in the pseudo-label: the union of its kept masks, else ``P_k``.

    ``keep`` is ``bool (L,)``; a kept mask counts for its assigned class only (anything else,
    such as a list of indices, is a ``ValueError`` saying so).
    """
    keep = np.asarray(keep)
    if keep.dtype != bool or keep.shape != (len(sample.assigned),):
        raise ValueError(f"keep must be bool ({len(sample.assigned)},), one flag per mask, got {keep.dtype} "
                         f"{keep.shape}")
    regions = []
    for k in sample.overlap.classes:
        chosen = keep & (sample.assigned == k)
        region = sample.masks.union(chosen) if chosen.any() else sample.pseudo == k
        regions.append((int(k), region))
    return regions


def paint_kept(sample: Sample, keep: np.ndarray) -> np.ndarray:
    """The paper's output for the masks ``keep`` (``bool (L,)``): :func:`class_regions`, :func:`paint`ed.

    >>> from sepl_tree.masks import MaskSet
    >>> s = Sample(np.array([[1, 1, 0, 0]], np.uint8), MaskSet(np.array([[[1, 1, 1, 0]]], bool)))
    >>> paint_kept(s, np.array([True])).tolist(), paint_kept(s, np.array([False])).tolist()
    ([[1, 1, 1, 0]], [[1, 1, 0, 0]])
    """
    return paint(sample.pseudo, class_regions(sample, keep))
