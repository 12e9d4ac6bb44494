"""Reading and writing files: atomic writes, PNGs, label-map PNGs.

Label maps (:mod:`sepl_tree.label_maps`) are written as mode ``'P'`` PNGs whose pixel values
are the class indices, with the standard VOC palette. Every write goes through a temporary file
and a rename, so an interrupted run never leaves half a file, and the file gets the mode a plain
``open(path, "w")`` of a new file would give it, ``0o666 & ~umask`` (0644 under the usual umask
022), so that others can read outputs on a shared file system as they can any other file.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from sepl_tree.errors import InputError, SeplError
from sepl_tree.label_maps import first_bad_label, more_classes_hint, voc_palette

__all__ = [
    "MAX_PIXELS",
    "PNG_GREY",
    "PNG_GREY_ALPHA",
    "PNG_PALETTE",
    "PNG_RGB",
    "PNG_RGBA",
    "PNG_SIGNATURE",
    "append_line",
    "atomic_folder",
    "atomic_write_bytes",
    "check_pixels",
    "encode_label_png",
    "file_stamp",
    "mtime_ns",
    "naming_hint",
    "new_file_mode",
    "png_colour_type",
    "process_umask",
    "read_label_png",
    "read_json",
    "read_png",
    "remove_stale_temporaries",
    "write_label_png",
]

_PALETTE = voc_palette().reshape(-1).tolist()


_UMASK_LOCK = threading.Lock()


def _umask_from_proc() -> int | None:
    """The umask as Linux reports it (``Umask:`` in ``/proc/self/status``, kernel 4.7+), or ``None``."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask_by_setting() -> int:
    """The umask read the only portable way: set it and put it back.

    ``os.umask`` changes the whole process, so a file another thread creates in between would get
    mode 0666; the lock only keeps two readers from undoing each other.
    """
    with _UMASK_LOCK:
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


@functools.cache
def process_umask() -> int:
    """This process's umask, read once and remembered (thread-safe on Linux; see :func:`_umask_by_setting`)."""
    mask = _umask_from_proc()
    return _umask_by_setting() if mask is None else mask


def new_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: ``0o666 & ~umask``."""
    return 0o666 & ~process_umask()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    An interrupted write leaves either the old file or no file, never half of one. The file gets
    :func:`new_file_mode` (``mkstemp`` alone would leave it 0600, unreadable to anyone else). A
    path that is a folder, or whose parent cannot be a folder, is a :class:`SeplError` naming it.
    """
    if path.is_dir():
        raise SeplError(f"{path}: is a folder, not a file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise SeplError(f"{path}: a parent of it is a file, not a folder") from None
    except OSError as exc:
        raise SeplError(f"{path}: cannot create its folder ({exc.strerror or exc})") from None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # (an unwritable folder, a full disk)
        raise SeplError(f"{path}: cannot write the file ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), new_file_mode())
            f.write(data)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise SeplError(f"{path}: cannot write the file ({exc.strerror or exc})") from None
        raise


def file_stamp(path: str | Path) -> tuple[int, int] | None:
    """``path``'s modification and inode-change times in ns, ``(mtime_ns, ctime_ns)`` (one
    ``stat``), or ``None`` when it is not there. The change time moves whenever the file is
    written, replaced or copied in, and no copy can set it back (``cp -p`` and ``rsync -a``
    keep only the modification time)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_ctime_ns


def mtime_ns(path: str | Path) -> int | None:
    """``path``'s modification time in ns (one ``stat``), or ``None`` when it is not there."""
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


_NUMBER_AT_END = re.compile(r"(\d+)$")


def naming_hint(folder: Path, image_id: str, suffixes: tuple[str, ...]) -> str:
    """``""``, or why ``folder`` may lack ``<image_id><suffix>``: it has the same image under
    the other COCO naming, its numeric id (``139``, ``000000000139``) for a file stem
    (``COCO_val2014_000000000139``) or the other way round, as a clause to end an error
    line with. One listing of ``folder``, meant for the error path only."""
    if (end := _NUMBER_AT_END.search(image_id)) is None:
        return ""
    number, numeric = int(end.group(1)), image_id.isdigit()
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                for suffix in suffixes:
                    if not entry.name.endswith(suffix) or len(entry.name) == len(suffix):
                        continue
                    stem = entry.name[: len(entry.name) - len(suffix)]
                    if (stem != image_id and (numeric or stem.isdigit())
                            and (other := _NUMBER_AT_END.search(stem)) and int(other.group(1)) == number):
                        how = ("pads numeric ids differently" if numeric and stem.isdigit() else
                               "names images by numeric id, the ids asked for are file stems" if stem.isdigit()
                               else "names images by file stem, the ids asked for are numeric")
                        return f"; the folder has {entry.name}, maybe the same image: it {how}"
    except OSError:
        pass
    return ""


def append_line(path: Path, text: str) -> None:
    """Append ``text`` to ``path`` as a line of its own: after a last line cut short by a killed
    run, a newline first (else ``text`` would be lost in that line)."""
    line = (text + "\n").encode()
    with open(path, "ab+") as f:
        if f.seek(0, os.SEEK_END) and (f.seek(-1, os.SEEK_END), f.read(1))[1] != b"\n":
            line = b"\n" + line
        f.write(line)


@contextlib.contextmanager
def atomic_folder(folder: Path) -> Iterator[Path]:
    """Fill a folder that appears at ``folder`` whole, or not at all.

    The block fills a new hidden staging folder (``.<name>.<random>.tmp`` beside ``folder``,
    made for this call only, so two writers of the same folder never share one), which then
    replaces ``folder``: an existing ``folder`` is first renamed aside and removed after. If the
    block raises, the staging folder is removed; if the process dies, a rerun's
    :func:`remove_stale_temporaries` removes it. The folder gets the mode ``mkdir`` gives under
    the umask (``0o777 & ~umask``), not ``mkdtemp``'s 0700.
    """
    folder = Path(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    except OSError as exc:
        raise SeplError(f"{folder}: cannot write the folder ({exc.strerror or exc})") from None
    try:
        os.chmod(staging, 0o777 & ~process_umask())
        yield staging
        _replace_folder(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _replace_folder(staging: Path, folder: Path) -> None:
    """Rename ``staging`` to ``folder``, moving an existing ``folder`` aside (and then away) first.

    If the rename fails, the old ``folder`` is put back and the error raised; unless another
    writer of the same folder (a retried image on a cluster, writing the same files) put its own
    in place between the two renames: then that one stays.
    """
    aside = moved = None
    if folder.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", suffix=".tmp", dir=folder.parent))
        with contextlib.suppress(FileNotFoundError):  # another writer of it moved it aside first
            os.replace(folder, aside / folder.name)
            moved = aside / folder.name
    try:
        os.rename(staging, folder)
    except OSError:
        if not folder.is_dir():
            if moved is not None:
                os.replace(moved, folder)
            raise
        shutil.rmtree(staging, ignore_errors=True)
    finally:
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)


def remove_stale_temporaries(folder: Path) -> int:
    """Delete what a killed run left half-written in ``folder``; return how many were removed.

    That is every ``.<name>.tmp`` file of :func:`atomic_write_bytes` and every ``.<name>.tmp``
    folder of a mask folder being filled. Only one run may write to ``folder`` at a time.
    """
    stale = list(folder.glob(".*.tmp")) if folder.is_dir() else []
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return len(stale)


#: The eight bytes every PNG file starts with.
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour types (the IHDR byte): greyscale, RGB, palette, greyscale + alpha, RGBA.
PNG_GREY, PNG_RGB, PNG_PALETTE, PNG_GREY_ALPHA, PNG_RGBA = 0, 2, 3, 4, 6


def png_colour_type(path: Path) -> int | None:
    """The colour type a PNG's header declares (``PNG_GREY``, ``PNG_PALETTE``, ...), or ``None``.

    Reads the first 26 bytes only (signature and IHDR chunk), so it tells a palette label map
    from a greyscale score map without decoding either. ``None``: no such file, or not a PNG.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(26)
    except OSError:
        return None
    if len(head) < 26 or head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        return None
    return head[25]


#: The largest image read, in pixels (PIL's own decompression-bomb limit): a file claiming
#: more is refused before anything is decoded.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485


def check_pixels(path: Path, height: int, width: int, claim: str = "is") -> None:
    """``InputError`` when a file's ``height x width`` is more than :data:`MAX_PIXELS`, worded
    ``<path>: <claim> HxW (HxW) = N pixels, more than the limit ...`` (``claim`` e.g.
    ``"masks claim"``), so that every reader refuses a decompression bomb in the same words."""
    if height * width > MAX_PIXELS:
        raise InputError(path, f"{claim} {height}x{width} (HxW) = {height * width} pixels, more than the limit "
                               f"of {MAX_PIXELS} (a decompression bomb?)")


#: Leading bytes of the formats a file named ``.png`` may hold instead of PNG.
_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"GIF8", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"),
          (b"MM\x00*", "TIFF"), (b"RIFF", "RIFF (WebP?)"))


def _png_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from a PNG's header; ``InputError`` if the file is not a PNG."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except IsADirectoryError:
        raise InputError(path, "is a folder, not a PNG file") from None
    except OSError as exc:
        raise InputError(path, f"cannot read ({exc.strerror or exc})") from None
    if head[:8] != PNG_SIGNATURE or head[12:16] != b"IHDR":
        what = next((name for magic, name in _MAGIC if head.startswith(magic)), None)
        raise InputError(path, f"not a PNG file (it holds {what} data; label maps and masks must be lossless PNGs)"
                         if what else "not a PNG file")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def read_png(path: Path) -> np.ndarray:
    """Pixel values of a PNG as stored (palette indices for mode 'P'), or ``InputError``.

    The file must be a PNG whatever its name, of at most :data:`MAX_PIXELS` pixels.
    """
    width, height = _png_size(path)
    check_pixels(path, height, width)
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L", "1", "RGB", "RGBA", "I", "I;16", "LA", "PA"):
                raise InputError(path, f"unsupported PNG mode {img.mode!r}")
            return np.array(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(path, f"not a readable image ({exc})") from None


def read_json(path: Path) -> Any:
    """The JSON document in ``path``, or an ``InputError`` naming the file (missing, unreadable,
    malformed, or nested too deep to read)."""
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except IsADirectoryError:
        raise InputError(path, "is a folder, not a JSON file") from None
    except RecursionError:
        raise InputError(path, "JSON nested too deeply to read") from None
    except (OSError, ValueError) as exc:
        raise InputError(path, f"not a readable JSON file ({' '.join(str(exc).split())})") from None


def read_label_png(path: Path, num_classes: int) -> np.ndarray:
    """A palette or greyscale label PNG as ``uint8 (H, W)``; values must be 0..K-1 or 255."""
    values = read_png(path)
    if values.ndim != 2:
        raise InputError(path, f"a label PNG must be palette or greyscale, got {values.ndim}-D pixels {values.shape}")
    if values.dtype != np.uint8:
        if values.size and (values.min() < 0 or values.max() > 255):
            bad = int(values.max()) if values.max() > 255 else int(values.min())
            raise InputError(path, f"label value {bad} is out of range 0..{num_classes - 1} or 255"
                                   f"{more_classes_hint(bad, num_classes)}")
        values = values.astype(np.uint8)
    if (bad := first_bad_label(values, num_classes)) is not None:
        raise InputError(path, f"label value {bad} is out of range 0..{num_classes - 1} or 255"
                               f"{more_classes_hint(bad, num_classes)}")
    return values


def encode_label_png(label: np.ndarray) -> bytes:
    """A mode 'P' PNG of ``label`` with the VOC palette, as bytes."""
    img = Image.fromarray(np.asarray(label, dtype=np.uint8), mode="P")
    img.putpalette(_PALETTE)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def write_label_png(path: Path, label: np.ndarray) -> None:
    """Write ``label`` atomically as a VOC-palette PNG."""
    atomic_write_bytes(path, encode_label_png(label))
