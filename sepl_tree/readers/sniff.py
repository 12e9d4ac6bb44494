"""Recognise which baseline wrote a file, so a reader given the wrong format says so in one line.

Every built-in reader raises :func:`wrong_format` when a file is not in its format: the error
then reads
``<file>: this looks like a PuzzleCAM file; try --reader puzzlecam`` instead of a label map
made of garbage. Recognition is by what the files hold (dictionary keys, key layout), and for
PNGs by header, name and values (a palette PNG is a label map, as is any name but
``<id>_<class>.png``, and a greyscale one whose values could all be labels; otherwise it is a
per-class map).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sepl_tree.errors import InputError
from sepl_tree.files import PNG_PALETTE, png_colour_type, read_png

__all__ = [
    "FORMATS",
    "high_res_format",
    "PER_CLASS_PNG",
    "identify",
    "looks_like_crf",
    "no_inputs",
    "suggest_reader",
    "wrong_format",
]

#: ``<image id>_<class index>.png``: L2G's and RCA's per-class maps (class 0-based, 1 to 3 digits,
#: so VOC and COCO ids, whose last part has 6 or 12 digits, are never mistaken for one).
PER_CLASS_PNG = re.compile(r"^(?P<id>.+)_(?P<cls>\d{1,3})\.png$")

#: Format id -> (what it is, the reader to suggest, every reader that reads it).
FORMATS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "irn": ("an IRN/CLIMS CAM file", "irn", ("irn", "clims")),
    "amn": ("an AMN CAM file (its high_res holds a background map first)", "amn", ("amn",)),
    "sipe": ("a SIPE CAM file", "sipe", ("sipe",)),
    "puzzlecam": ("a PuzzleCAM file", "puzzlecam", ("puzzlecam",)),
    "clip-es": ("a CLIP-ES CAM file", "clip-es", ("clip-es", "clipes")),
    "recurseed": ("a RecurSeed seed file", "recurseed", ("recurseed",)),
    "class-dict": ("a PSA-style {class: CAM} dictionary (PSA, SEAM, EPS, PPC, TransCAM; pick the one that wrote it)",
                   "psa", ("psa", "affinitynet", "seam", "eps", "ppc", "transcam")),
    "crf-dict": ("a CRF score dictionary with the background at key 0 (PSA/SEAM/EPS out_crf)", "psa-crf",
                 ("psa-crf", "seam-crf", "eps-crf", "ppc-crf")),
    "per-class-png": ("a per-class CAM PNG (L2G, RCA)", "l2g", ("l2g", "rca")),
    "label-png": ("a label PNG", "png", ("png", "rca")),
}

_MISSING = object()


def looks_like_crf(obj: Mapping[Any, Any]) -> bool:
    """Whether an int-keyed dictionary holds CRF probabilities (key 0 = background, summing to 1)."""
    if 0 not in obj or len(obj) < 2:
        return False
    try:
        maps = [np.asarray(v, dtype=np.float64) for v in obj.values()]
        if len({m.shape for m in maps}) != 1 or maps[0].ndim != 2:
            return False
        return bool(np.allclose(np.sum(maps, axis=0), 1.0, atol=1e-3))
    except (TypeError, ValueError):
        return False


def high_res_format(obj: Mapping[str, Any]) -> str | None:
    """``"irn"`` or ``"amn"`` by how many ``high_res`` maps there are per ``keys`` entry: one
    (IRN's), or one more (AMN's background first); ``None`` for any other count, ``"irn"`` when
    the count cannot be told.

    >>> high_res_format({"keys": [0, 11], "high_res": np.zeros((3, 2, 2))})
    'amn'
    """
    shape, keys = getattr(obj.get("high_res"), "shape", None), obj.get("keys")
    try:
        maps, classes = int(shape[0]), np.asarray(keys).size
    except (TypeError, ValueError, IndexError):
        return "irn"
    if shape is None or len(shape) != 3 or keys is None:
        return "irn"
    return {classes: "irn", classes + 1: "amn"}.get(maps)


def _format_of_object(obj: Any) -> str | None:
    if not isinstance(obj, Mapping):
        return None
    if "IS_CAM" in obj:
        return "sipe"
    if "hr_cam" in obj or "rw" in obj:
        return "puzzlecam"
    if "attn_highres" in obj or ("highres" in obj and "keys" in obj):
        return "clip-es"
    if "high_res" in obj:
        return high_res_format(obj)
    if "seed" in obj and "keys" in obj:
        return "recurseed"
    if obj and all(isinstance(k, (int, np.integer)) and not isinstance(k, bool) for k in obj):
        return "crf-dict" if looks_like_crf(obj) else "class-dict"
    return None


#: The most classes the hint expects (COCO's 81): a greyscale ``<id>_<n>.png`` with a value
#: between this and 255 is taken for scores, not labels (a hint only: ``--num-classes`` may be more).
MOST_CLASSES = 81


def _scores(path: Path) -> bool:
    """Whether a greyscale PNG holds scores (a per-class CAM map) rather than labels: a value
    in ``MOST_CLASSES..254`` (a label map named ``<id>_<n>.png``, as ``2007_000559__20.png``,
    is a label map)."""
    values = read_png(path)
    return bool(((values >= MOST_CLASSES) & (values < 255)).any())


def _format_of(path: Path) -> str | None:
    suffix = path.suffix.lower()
    if suffix == ".png":
        per_class = PER_CLASS_PNG.match(path.name) and png_colour_type(path) != PNG_PALETTE and _scores(path)
        return "per-class-png" if per_class else "label-png"
    if suffix in (".npy", ".pkl"):
        from sepl_tree.readers.cam import load_pickled

        try:
            return _format_of_object(load_pickled(path))
        except InputError:
            return None
    return None


def identify(path: Path) -> str | None:
    """The reader whose format ``path`` looks like, or ``None``; never raises."""
    try:
        fmt = _format_of(Path(path))
    except Exception:  # sniffing is a hint: a file it cannot make sense of is simply unrecognised
        return None
    return None if fmt is None else FORMATS[fmt][1]


def wrong_format(path: Path, reader: str, problem: str, obj: Any = _MISSING) -> InputError:
    """The error for ``path``, which ``reader`` cannot read because of ``problem``.

    When the file (or its loaded content ``obj``) is recognisably another format, the message
    names that format and the reader to use instead.
    """
    try:
        fmt = _format_of_object(obj) if obj is not _MISSING else _format_of(Path(path))
    except Exception:
        fmt = None
    if fmt is not None:
        what, suggestion, readers = FORMATS[fmt]
        if reader not in readers:
            return InputError(path, f"this looks like {what}; try --reader {suggestion}")
    return InputError(path, problem)


def suggest_reader(folder: Path, limit: int = 8) -> str | None:
    """A reader for the files in ``folder`` (judged on the first ``limit`` of them), or ``None``."""
    try:
        files = sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError:
        return None
    for path in files[:limit]:
        name = identify(path)
        if name is not None:
            return name
    return None


def no_inputs(folder: Path, reader: Any) -> InputError:
    """The error for a ``folder`` where ``reader`` (a :class:`~sepl_tree.registry.Reader`) finds no
    image: its file pattern, and the reader its files look like, when that is another one."""
    pattern = f" (<id>{reader.suffix})" if reader.list_ids is None else ""
    guess = suggest_reader(folder)
    hint = ""
    if guess is not None and guess not in reader.names:
        what = next(w for w, suggestion, _ in FORMATS.values() if suggestion == guess)
        hint = f"; a file there looks like {what}: try --reader {guess}"
    return InputError(folder, f"no pseudo-labels found for reader {reader.name!r}{pattern}{hint}")
