"""Pieces shared by strategies: mask unions and the paint-in-class-order output rule."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from sepl_tree.io import IGNORE

__all__ = ["paint", "union"]


def union(masks: np.ndarray, selected: np.ndarray) -> np.ndarray:
    """Union (``bool (H, W)``) of the masks whose index is in ``selected`` (bool or int index)."""
    chosen = masks[selected]
    if len(chosen) == 0:
        return np.zeros(masks.shape[1:], bool)
    return np.logical_or.reduce(chosen, axis=0)


def paint(pseudo: np.ndarray, regions: Iterable[tuple[int, np.ndarray]], keep_ignore: bool = True) -> np.ndarray:
    """The output label map: 0, then each ``(k, region)`` painted with k in the given order.

    With ``keep_ignore``, a pixel that was 255 in ``pseudo`` and that no region covers stays 255.
    """
    out = np.zeros(pseudo.shape, np.uint8)
    covered = np.zeros(pseudo.shape, bool) if keep_ignore else None
    for k, region in regions:
        out[region] = k
        if covered is not None:
            covered |= region
    if covered is not None:
        out[(pseudo == IGNORE) & ~covered] = IGNORE
    return out
