"""COCO RLE straight from boolean mask tensors: run lengths on the device, strings with numpy.

Conventions
-----------
- Masks are ``bool (N, H, W)`` torch tensors, on any device.
- Run lengths are column-major (Fortran order) and alternate zeros, ones, zeros, ...; the first
  run counts zeros and is 0 when the first pixel is set. This is segment-anything's
  "uncompressed RLE" and what ``pycocotools`` compresses.
- Compressed counts are pycocotools' ``rleToString`` strings (``{"size": [H, W], "counts": str}``):
  each value in 5-bit groups, least significant first, ``48 + group`` with bit 0x20 on all but
  the last group and the sign in bit 0x10 of the last; from the fourth value on, each value is
  stored as the difference to the value two places before it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["encode_counts", "mask_runs", "split_runs"]

#: Enough 5-bit groups for any run of an image under 2**34 pixels.
_GROUPS = 7


def mask_runs(masks: Any) -> tuple[Any, Any]:
    """Run lengths of ``bool (N, H, W)`` masks, all masks at once, on the masks' device.

    Returns ``(runs, per_mask)``: the int64 run lengths of every mask, concatenated in mask
    order, and how many belong to each mask. One transfer of these two tensors replaces
    segment-anything's per-mask loop (one device synchronisation per mask).
    """
    import torch

    n, h, w = masks.shape
    flat = masks.permute(0, 2, 1).reshape(n, h * w)
    if n == 0:
        empty = torch.zeros(0, dtype=torch.int64, device=masks.device)
        return empty, empty
    change = (flat[:, 1:] ^ flat[:, :-1]).nonzero()  # (mask, pixel before the change), sorted
    first_on = flat[:, 0].to(torch.int64)
    changes = torch.bincount(change[:, 0], minlength=n)
    # Boundaries of mask i: 0, (0 again if its first pixel is set), each change + 1, h * w.
    per_mask = changes + 2 + first_on
    offset = torch.cumsum(per_mask, 0) - per_mask
    bounds = torch.zeros(int(per_mask.sum()), dtype=torch.int64, device=masks.device)
    bounds[offset + per_mask - 1] = h * w
    rank = torch.arange(change.shape[0], device=masks.device) - (torch.cumsum(changes, 0) - changes)[change[:, 0]]
    bounds[offset[change[:, 0]] + 1 + first_on[change[:, 0]] + rank] = change[:, 1] + 1
    runs = bounds[1:] - bounds[:-1]
    keep = torch.ones(runs.shape[0], dtype=torch.bool, device=masks.device)
    keep[(offset + per_mask - 1)[:-1]] = False  # the step from one mask's end to the next's start
    return runs[keep], per_mask - 1


def split_runs(runs: np.ndarray, per_mask: np.ndarray) -> list[list[int]]:
    """Concatenated run lengths as one list per mask (segment-anything's uncompressed counts)."""
    return [chunk.tolist() for chunk in np.split(runs, np.cumsum(per_mask)[:-1])] if len(per_mask) else []


def encode_counts(runs: np.ndarray, per_mask: np.ndarray) -> list[str]:
    """pycocotools' compressed count strings of concatenated run lengths, every mask at once.

    >>> encode_counts(np.array([2, 2, 1, 3]), np.array([2, 2]))  # [[0, 1], [0, 1]] and [[0, 1], [1, 1]]
    ['22', '13']
    """
    runs = np.asarray(runs, np.int64)
    per_mask = np.asarray(per_mask, np.int64)
    if not per_mask.size:
        return []
    start = np.cumsum(per_mask) - per_mask
    place = np.arange(runs.size) - np.repeat(start, per_mask)
    values = runs.copy()
    later = place > 2
    values[later] -= runs[np.flatnonzero(later) - 2]
    chars = np.zeros((runs.size, _GROUPS), np.uint8)
    emitted = np.zeros((runs.size, _GROUPS), bool)
    x, more = values, np.ones(runs.size, bool)
    for g in range(_GROUPS):
        c = x & 0x1F
        x = x >> 5  # arithmetic shift: negative values end at -1
        go_on = np.where((c & 0x10) != 0, x != -1, x != 0) & more
        emitted[:, g] = more
        chars[:, g] = 48 + (c | np.where(go_on, 0x20, 0))
        more = go_on
    if more.any():
        raise ValueError("a run length is too large for COCO RLE")
    text = chars[emitted].tobytes()
    per_string = np.add.reduceat(emitted.sum(axis=1), start) if runs.size else np.zeros(len(per_mask), np.int64)
    ends = np.cumsum(per_string)
    return [text[a:b].decode("ascii") for a, b in zip(ends - per_string, ends, strict=True)]
