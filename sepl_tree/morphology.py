"""Binary morphology on ``bool (H, W)`` masks with numpy only (no image library needed).

Dilation grows a mask one pixel ring at a time; connected components join the horizontal runs
of each row to the touching runs of the row above with a union-find.
"""

from __future__ import annotations

import numpy as np

__all__ = ["connected_components", "dilate", "erode"]


def _grow_once(mask: np.ndarray, diagonal: bool) -> np.ndarray:
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    if diagonal:
        out[1:, 1:] |= mask[:-1, :-1]
        out[1:, :-1] |= mask[:-1, 1:]
        out[:-1, 1:] |= mask[1:, :-1]
        out[:-1, :-1] |= mask[1:, 1:]
    return out


def dilate(mask: np.ndarray, radius: int, shape: str = "octagon") -> np.ndarray:
    """Dilation by ``radius`` pixels.

    ``shape="octagon"`` alternates 4- and 8-neighbourhood steps (close to a disc);
    ``"diamond"`` uses the 4-neighbourhood at every step.

    >>> dilate(np.eye(3, dtype=bool)[1:2], 1).astype(int).tolist()
    [[1, 1, 1]]
    >>> int(dilate(np.pad([[True]], 3), 2, "diamond").sum())
    13
    """
    if shape not in ("octagon", "diamond"):
        raise ValueError(f"shape must be 'octagon' or 'diamond', got {shape!r}")
    out = mask.astype(bool, copy=True)
    for step in range(max(int(radius), 0)):
        out = _grow_once(out, diagonal=shape == "octagon" and bool(step % 2))
    return out


def erode(mask: np.ndarray, radius: int, shape: str = "octagon") -> np.ndarray:
    """Erosion: the complement of the dilated complement (the image border counts as outside)."""
    padded = np.pad(mask.astype(bool), 1)
    return ~dilate(~padded, radius, shape)[1:-1, 1:-1]


def connected_components(mask: np.ndarray, connectivity: int = 4) -> tuple[np.ndarray, int]:
    """Connected components: ``(int32 labels, count)``, labels 1..count in row-major order of first pixel, 0 outside.

    >>> labels, n = connected_components(np.array([[1, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]], bool), 8)
    >>> n, labels.tolist()
    (2, [[1, 1, 0, 0], [0, 0, 1, 0], [2, 0, 0, 0]])
    >>> connected_components(np.array([[1, 0, 1], [1, 0, 0]], bool))[1]
    2
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    reach = 1 if connectivity == 8 else 0  # 8-connected runs may touch at a corner
    h, w = mask.shape
    edges = np.diff(np.pad(mask.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    rows, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)  # exclusive; in the same row-major order as the starts
    n = len(rows)
    if n == 0:
        return np.zeros((h, w), np.int32), 0
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    first = np.searchsorted(rows, np.arange(h + 1))
    for r in range(1, h):
        i, i_end, j, j_end = first[r - 1], first[r], first[r], first[r + 1]
        while i < i_end and j < j_end:
            if starts[i] < ends[j] + reach and starts[j] < ends[i] + reach:
                a, b = find(i), find(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            if ends[i] < ends[j]:
                i += 1
            else:
                j += 1
    labels = np.zeros((h, w), np.int32)
    ids: dict[int, int] = {}
    for run in range(n):
        labels[rows[run], starts[run]:ends[run]] = ids.setdefault(find(run), len(ids) + 1)
    return labels, len(ids)
