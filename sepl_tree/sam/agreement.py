"""How far two runs' masks of one image agree: exact records, and masks matched at an IoU.

Used to check the fast engine against the stock generator and bf16 against fp32: a mask of
the candidate *matches* when some mask of the reference covers it with IoU >= the threshold.
Masks are decoded from their COCO RLE straight into bits; IoUs are popcounts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sepl_tree.masks import popcount_rows, rle_to_maskset

__all__ = ["best_ious", "exact_records", "match_counts"]

#: Record fields compared by :func:`exact_records` (everything amg.py writes).
RECORD_FIELDS = ("segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box")


def exact_records(reference: Sequence[dict[str, Any]], candidate: Sequence[dict[str, Any]]) -> int:
    """How many records are identical in every amg.py field, position by position."""
    return sum(all(a.get(k) == b.get(k) for k in RECORD_FIELDS) for a, b in zip(reference, candidate))


def best_ious(reference: Sequence[dict[str, Any]], candidate: Sequence[dict[str, Any]], height: int,
              width: int) -> np.ndarray:
    """``float (len(candidate),)``: each candidate mask's best IoU with any reference mask (0 if none)."""
    if not candidate:
        return np.zeros(0)
    if not reference:
        return np.zeros(len(candidate))
    ref = rle_to_maskset([r["segmentation"] for r in reference], height, width)
    cand = rle_to_maskset([r["segmentation"] for r in candidate], height, width)
    best = np.zeros(len(candidate))
    for i, bits in enumerate(cand.packed):
        inter = popcount_rows(ref.packed & bits)
        union = ref.areas + cand.areas[i] - inter
        best[i] = np.max(np.where(union > 0, inter / np.maximum(union, 1), 1.0))
    return best


def match_counts(reference: Sequence[dict[str, Any]], candidate: Sequence[dict[str, Any]], height: int,
                 width: int, iou: float = 0.98) -> tuple[int, int]:
    """``(matched, total)``: candidate masks with a reference mask at IoU >= ``iou``, out of all of them."""
    return int((best_ious(reference, candidate, height, width) >= iou).sum()), len(candidate)
