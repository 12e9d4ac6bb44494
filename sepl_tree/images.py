"""Photos: finding an image id's file and reading it as RGB, for every command that needs one.

Images are read as ``uint8 (H, W, 3)`` RGB; an image's id is its file name without suffix;
suffixes are matched case-insensitively from :data:`IMAGE_SUFFIXES`.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from sepl_tree.errors import InputError, not_a_file
from sepl_tree.files import check_pixels

__all__ = ["IMAGE_SUFFIXES", "find_image", "find_images", "load_image", "load_image_with_sha1", "read_image"]

#: Image files read by ``masks``, ``compare --images``, ``tree --images`` and ``synth``.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def find_image(folder: Path, image_id: str) -> Path | None:
    """``<folder>/<id><suffix>`` for the first of :data:`IMAGE_SUFFIXES` that exists (either case), or ``None``."""
    for suffix in IMAGE_SUFFIXES:
        for candidate in (suffix, suffix.upper()):
            path = folder / f"{image_id}{candidate}"
            if path.is_file():
                return path
    return None


def find_images(images_dir: Path, ids: Sequence[str] | None = None) -> dict[str, Path]:
    """Image id -> file for every image in ``images_dir`` (or for ``ids``, in their order).

    Raises ``InputError`` for a missing folder, two files with one id, or ids without an image.
    """
    if not images_dir.is_dir():
        raise InputError(images_dir, "image folder not found")
    found: dict[str, Path] = {}
    for path in sorted(images_dir.iterdir(), key=lambda p: p.name):  # (by name: sorting Paths is ~7x slower)
        if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
            continue
        if not path.is_file():  # an image it would leave out without a word
            raise not_a_file(path, "image file", "an")
        if path.stem in found:
            raise InputError(path, f"two images have the id {path.stem!r} (also {found[path.stem].name})")
        found[path.stem] = path
    if ids is None:
        if not found:
            raise InputError(images_dir, f"no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return dict(sorted(found.items()))
    missing = [i for i in ids if i not in found]
    if missing:
        raise InputError(images_dir, f"{len(missing)} requested id(s) have no image here, e.g. {missing[0]!r}")
    return {i: found[i] for i in dict.fromkeys(ids)}


def _rgb(path: Path, img: Image.Image) -> np.ndarray:
    """``uint8 (H, W, 3)`` of an open image; 16- and 32-bit greyscale scaled to 8 bits (PIL's
    ``convert("RGB")`` clips them at 255: a 16-bit PNG would read as a white picture)."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(img, dtype=np.float64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise InputError(path, f"a {img.mode} image with values beyond 0..65535 (give 8- or 16-bit images)")
        grey = np.round(values / 257.0).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.mode == "F":
        raise InputError(path, "a floating-point image (give 8- or 16-bit images)")
    return np.array(img.convert("RGB"))  # writable (torch warns about read-only arrays)


def load_image(path: Path, shape: tuple[int, int] | None = None, data: bytes | None = None) -> np.ndarray:
    """An image file as ``uint8 (H, W, 3)`` RGB, or ``InputError`` naming the file.

    With ``shape`` (``(H, W)``, e.g. the labels'), an image of another size is an error too;
    ``data``: the file's bytes, read already (decoded in its place).
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below, in one line
            with Image.open(path if data is None else io.BytesIO(data)) as img:
                width, height = img.size
                check_pixels(path, height, width, "image claims")
                rgb = _rgb(path, img)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except Image.DecompressionBombError as exc:  # (opened before the size could be read)
        raise InputError(path, f"not read: {exc}") from None
    except UnidentifiedImageError:  # (PIL's text names the file, or the bytes' repr when decoding ``data``)
        raise InputError(path, f"not a readable image (cannot identify image file {str(path)!r})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(path, f"not a readable image ({exc})") from None
    if shape is not None and rgb.shape[:2] != tuple(shape):
        raise InputError(path, f"is {rgb.shape[0]}x{rgb.shape[1]} but the labels are {shape[0]}x{shape[1]}")
    return rgb


def load_image_with_sha1(path: Path) -> tuple[np.ndarray, str]:
    """An image as :func:`load_image` gives it, and the SHA-1 of the bytes it was decoded from
    (the file read once): what masks made from it were made from, whatever happens to the file
    meanwhile."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except OSError as exc:
        raise InputError(path, f"not a readable image ({exc.strerror or exc})") from None
    return load_image(path, data=data), hashlib.sha1(data).hexdigest()


def read_image(images_dir: Path, image_id: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """The image of ``image_id`` in ``images_dir`` (see :func:`load_image`); a missing one is an ``InputError``."""
    path = find_image(images_dir, image_id)
    if path is None:
        raise InputError(images_dir / f"{image_id}.jpg", f"image not found (tried {', '.join(IMAGE_SUFFIXES)})")
    return load_image(path, shape)
