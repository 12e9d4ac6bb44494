"""Per-class CAM PNGs ``<dir>/<id>_<class>.png`` (L2G and RCA), and RCA's final labels ``<id>.png``.

A per-class map is one 8-bit greyscale PNG per image-level class, ``class`` **0-based**
(0 = aeroplane), with no background map:

- ``l2g``: L2G's ``scripts/test_l2g_voc.py`` writes ``norm_cam * 255`` (CAM scaled to max 1) into
  ``--save_dir``; its ``gen_gt.py`` reads each map back as ``value / 255``, puts a constant
  background score ``--thr`` (0.25) in front and takes the argmax.
- ``rca``: RCA's ``res.py`` writes the attention maps resized to the image into ``orig/``
  (``cv2.imwrite`` of a one-channel float array: an 8-bit greyscale PNG, the class the 0-based
  index of its image-level label); its ``gen_labels.py`` min-max normalises each map and builds
  the background as ``(1 - max) ** 4`` (alpha 4) before a CRF and saliency fusion, which are not
  applied here.

``rca`` also reads RCA's **final labels**: ``gen_labels.py`` writes one PNG per image,
``data/proxy_label/<id>.png``, with ``Image.fromarray(..., mode='P')`` and a palette of the 21 VOC
colours: class indices 0 (background) and 1..20 (class c + 1), and 255 where two classes' CRF
scores both pass 0.9, where saliency says foreground but no class won, and over the whole image
when under 1% of its pixels got a class. They are taken as stored.

What the ``rca`` reader relies on to tell the two apart (by content, not only by name): the
colour type in the PNG header (:func:`sepl_tree.files.png_colour_type`). A **palette** PNG is a
final label, whatever its name (``x_3.png`` in palette mode is the label of image ``x_3``); a
**greyscale** PNG named ``<id>_<c>.png`` (``c`` of 1 to 3 digits) is an attention map. A greyscale
``<id>.png`` is taken as a label only if its values are labels (0..K-1 and 255), else it is
refused as what it looks like, an attention map without its class. Either kind may fill a folder
or share one with the other (different images); an image with both is an error naming both files.

A plain ``<id>.png`` (no ``_<class>`` suffix) is a label map, not a per-class map: for ``l2g`` use ``png``.
"""

from __future__ import annotations

import glob
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sepl_tree import hookimpl
from sepl_tree.errors import InputError, is_input_file, not_a_file
from sepl_tree.files import PNG_GREY, PNG_PALETTE, png_colour_type, read_label_png, read_png
from sepl_tree.label_maps import IGNORE, label_values
from sepl_tree.readers.cam import Background, allowed_classes, cam_to_label
from sepl_tree.readers.sniff import PER_CLASS_PNG, wrong_format
from sepl_tree.registry import ReadContext, Reader

__all__ = ["list_per_class_ids", "list_rca_ids", "read_l2g", "read_per_class", "read_rca", "rca_attention_maps"]


def list_per_class_ids(folder: Path) -> list[str]:
    """The image ids of the ``<id>_<class>.png`` files in ``folder``; something so named that is
    not a file (a folder, a broken link) is an error naming it, not a class left out."""
    ids = set()
    for path in folder.glob("*_*.png"):
        if (m := PER_CLASS_PNG.match(path.name)) and not path.name.startswith("."):
            _check_file(path)
            ids.add(m["id"])
    return sorted(ids)


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise not_a_file(path, ".png file")


def read_per_class(folder: Path, image_id: str, ctx: ReadContext, reader: str,
                   is_map: Callable[[Path], bool] = Path.is_file) -> tuple[Path, np.ndarray, np.ndarray]:
    """The maps ``float32 (N, H, W)`` (raw 0..255 values) and their classes (1..K-1) of one image.

    ``is_map`` says whether an existing ``<id>_<c>.png`` is a per-class map (``rca``: not a palette PNG).
    """
    allowed = allowed_classes(ctx, image_id, folder / f"{image_id}.png")
    candidates = range(1, ctx.num_classes) if allowed is None else sorted(allowed)
    found = [(c, folder / f"{image_id}_{c - 1}.png") for c in candidates]
    for _, path in found:
        is_input_file(path, ".png file")  # a class whose map is a folder or a broken link: an error, not left out
    found = [(c, p) for c, p in found if is_map(p)]
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


# --------------------------------------------------------------------------------------- RCA


def _is_rca_map(path: Path) -> bool:
    """Whether ``path`` is an RCA attention map: a file named ``<id>_<c>.png`` that is not a palette PNG."""
    return PER_CLASS_PNG.match(path.name) is not None and path.is_file() and png_colour_type(path) != PNG_PALETTE


def list_rca_ids(folder: Path) -> list[str]:
    """The image ids in ``folder``: of final labels ``<id>.png`` and of attention maps ``<id>_<c>.png``.

    Only the names of the form ``<id>_<c>.png`` need their header read (palette or not).
    """
    ids = set()
    for path in folder.glob("*.png"):
        if path.name.startswith("."):
            continue
        _check_file(path)
        ids.add(PER_CLASS_PNG.match(path.name)["id"] if _is_rca_map(path) else path.stem)
    return sorted(ids)


def rca_attention_maps(folder: Path, image_id: str) -> list[Path]:
    """Every attention map ``<id>_<c>.png`` of ``image_id`` in ``folder``, whatever its class."""
    found = []
    for path in folder.glob(f"{glob.escape(image_id)}_*.png"):
        m = PER_CLASS_PNG.match(path.name)
        if m is not None and m["id"] == image_id and _is_rca_map(path):
            found.append(path)
    return sorted(found)


def _read_rca_final(path: Path, num_classes: int) -> np.ndarray:
    """RCA's ``gen_labels.py`` output: a palette PNG of 0..K-1 and 255, as stored."""
    kind = png_colour_type(path)
    if kind == PNG_PALETTE:
        return read_label_png(path, num_classes)
    if kind == PNG_GREY:
        values = read_png(path)
        present = label_values(values.astype(np.uint8)) if values.dtype == np.uint8 else np.unique(values)
        bad = present[(present >= num_classes) & (present != IGNORE)]
        if bad.size:
            raise InputError(path, f"a greyscale PNG with values up to {int(present.max())} is not a label map "
                                   f"(RCA's final labels are palette PNGs of 0..{num_classes - 1} and 255); an "
                                   f"attention map of res.py is named <id>_<class>.png")
        return values.astype(np.uint8)
    what = "not a PNG" if kind is None else f"a PNG of colour type {kind}"
    raise InputError(path, f"{what}: RCA's final labels are palette PNGs (gen_labels.py), its attention maps "
                           "greyscale <id>_<class>.png (res.py)")


def read_rca(folder: Path, image_id: str, ctx: ReadContext, bg: Background = 4.0) -> np.ndarray:
    """RCA: final labels <id>.png (palette, as stored), or per-class maps <id>_<class>.png (min-max, bg (1 - max)^4).

    Parameters
    ----------
    bg
        For attention maps: background power p of (1 - max)^p if 1 or more (RCA's alpha, 4), else a constant score.
    """
    final = folder / f"{image_id}.png"
    is_final = final.is_file() and not _is_rca_map(final)  # a greyscale x_3.png is a map of image x
    maps = rca_attention_maps(folder, image_id)
    if is_final and maps:
        raise InputError(final, f"image {image_id!r} has both RCA's final label (this file) and an attention "
                                f"map {maps[0]}; keep one kind per image (gen_labels.py's proxy_label/ or "
                                f"res.py's orig/)")
    if is_final:
        return _read_rca_final(final, ctx.num_classes)
    if not maps:
        raise InputError(final, f"file not found, nor any attention map {image_id}_<class>.png of image {image_id!r}")
    path, maps_, classes = read_per_class(folder, image_id, ctx, "rca", is_map=_is_rca_map)
    low = maps_.min(axis=(1, 2), keepdims=True)
    high = maps_.max(axis=(1, 2), keepdims=True)
    return cam_to_label(path, (maps_ - low) / (high - low + 1e-8), classes, ctx.num_classes, bg=bg)


@hookimpl
def register_readers(register):
    register(Reader("l2g", read_l2g, suffix=".png", list_ids=list_per_class_ids))
    register(Reader("rca", read_rca, suffix=".png", list_ids=list_rca_ids))
