"""Per-class CAM PNGs ``<dir>/<id>_<class>.png``: L2G and RCA.

One 8-bit greyscale PNG per image-level class, ``class`` **0-based** (0 = aeroplane), no background
map:

- ``l2g``: L2G's ``scripts/test_l2g_voc.py`` writes ``norm_cam * 255`` (CAM scaled to max 1) into
  ``--save_dir``; its ``gen_gt.py`` reads each map back as ``value / 255``, puts a constant
  background score ``--thr`` (0.25) in front and takes the argmax.
- ``rca``: RCA's ``res.py`` writes the attention maps resized to the image into ``orig/``; its
  ``gen_labels.py`` min-max normalises each map and builds the background as
  ``(1 - max) ** 4`` (alpha 4) before a CRF and saliency fusion, which are not applied here.

A plain ``<id>.png`` (no ``_<class>`` suffix) is a label map, not a per-class map: use ``png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sepl_tree import hookimpl
from sepl_tree.errors import InputError
from sepl_tree.files import read_png
from sepl_tree.readers.cam import Background, allowed_classes, cam_to_label
from sepl_tree.readers.sniff import PER_CLASS_PNG, wrong_format
from sepl_tree.registry import ReadContext, Reader

__all__ = ["list_per_class_ids", "read_l2g", "read_per_class", "read_rca"]


def list_per_class_ids(folder: Path) -> list[str]:
    """The image ids of the ``<id>_<class>.png`` files in ``folder``."""
    return sorted({m["id"] for p in folder.glob("*_*.png") if (m := PER_CLASS_PNG.match(p.name))})


def read_per_class(folder: Path, image_id: str, ctx: ReadContext, reader: str) -> tuple[Path, np.ndarray, np.ndarray]:
    """The maps ``float32 (N, H, W)`` (raw 0..255 values) and their classes (1..K-1) of one image."""
    allowed = allowed_classes(ctx, image_id, folder / f"{image_id}.png")
    candidates = range(1, ctx.num_classes) if allowed is None else sorted(allowed)
    found = [(c, folder / f"{image_id}_{c - 1}.png") for c in candidates]
    found = [(c, p) for c, p in found if p.is_file()]
    if not found:
        plain = folder / f"{image_id}.png"
        if plain.is_file():
            raise wrong_format(plain, reader, "no per-class maps <id>_<class>.png for this image")
        raise InputError(folder / f"{image_id}_<class>.png", f"no per-class maps for image {image_id!r}")
    maps = []
    for _, path in found:
        values = read_png(path)
        if values.ndim != 2:
            raise InputError(path, f"a per-class map must be greyscale, got pixels of shape {values.shape}")
        maps.append(values.astype(np.float32))
    if len({m.shape for m in maps}) != 1:
        raise InputError(found[0][1], f"per-class maps of image {image_id!r} differ in size")
    return found[0][1], np.stack(maps), np.array([c for c, _ in found])


def read_l2g(folder: Path, image_id: str, ctx: ReadContext, bg: Background = 0.25) -> np.ndarray:
    """L2G per-class PNGs <id>_<class>.png (0-based class), value/255; constant background 0.25.

    Parameters
    ----------
    bg
        Background score if below 1 (L2G's --thr, 0.25), else the power p of (1 - max)^p.
    """
    path, maps, classes = read_per_class(folder, image_id, ctx, "l2g")
    return cam_to_label(path, maps / 255.0, classes, ctx.num_classes, bg=bg)


def read_rca(folder: Path, image_id: str, ctx: ReadContext, bg: Background = 4.0) -> np.ndarray:
    """RCA per-class PNGs <id>_<class>.png (0-based class), min-max normalised; background (1 - max)^4.

    Parameters
    ----------
    bg
        Background power p of (1 - max)^p if 1 or more (RCA's alpha, 4), else a constant score.
    """
    path, maps, classes = read_per_class(folder, image_id, ctx, "rca")
    low = maps.min(axis=(1, 2), keepdims=True)
    high = maps.max(axis=(1, 2), keepdims=True)
    return cam_to_label(path, (maps - low) / (high - low + 1e-8), classes, ctx.num_classes, bg=bg)


@hookimpl
def register_readers(register):
    register(Reader("l2g", read_l2g, suffix=".png", list_ids=list_per_class_ids))
    register(Reader("rca", read_rca, suffix=".png", list_ids=list_per_class_ids))
