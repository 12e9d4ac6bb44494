"""Binary morphology on ``bool (H, W)`` masks: dilation, erosion, connected components.

Dilation grows a mask one pixel ring at a time with shifted ORs in numpy, which measures 8-19x
faster than ``scipy.ndimage.binary_dilation`` with the same alternating 4/8-neighbourhood steps
(a 500x375 mask: 0.21 vs 1.7 ms at radius 1, 0.34 vs 6.4 ms at radius 3, 1.4 vs 17 ms at
radius 8); connected components are scipy's, which measures faster than our own.
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

    ``scipy.ndimage.label``: the same labels as the union-find over row runs used before, about
    3x faster on VOC class masks (77 masks of 20 GT maps: 0.16 vs 0.48 s on the 2-core machine).

    >>> labels, n = connected_components(np.array([[1, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]], bool), 8)
    >>> n, labels.tolist()
    (2, [[1, 1, 0, 0], [0, 0, 1, 0], [2, 0, 0, 0]])
    >>> connected_components(np.array([[1, 0, 1], [1, 0, 0]], bool))[1]
    2
    """
    from scipy import ndimage

    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    structure = ndimage.generate_binary_structure(2, 1 if connectivity == 4 else 2)
    labels, count = ndimage.label(np.asarray(mask, bool), structure, output=np.int32)
    return labels, int(count)
