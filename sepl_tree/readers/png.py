"""``png``: label PNGs ``PSEUDO/<id>.png``, palette ('P') or greyscale ('L').

Pixel values are class indices 0..K-1, or 255 for ignore; any other value is an error naming
the file and the value. This is also the format ``sepl-tree run`` writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sepl_tree import hookimpl
from sepl_tree.errors import InputError
from sepl_tree.files import read_label_png
from sepl_tree.readers.sniff import PER_CLASS_PNG, wrong_format
from sepl_tree.registry import ReadContext, Reader

__all__ = ["read_png_label"]


def read_png_label(folder: Path, image_id: str, ctx: ReadContext) -> np.ndarray:
    """Palette or greyscale PNG label maps, values 0..K-1 and 255 (ignore)."""
    path = folder / f"{image_id}.png"
    try:
        return read_label_png(path, ctx.num_classes)
    except InputError as exc:
        if PER_CLASS_PNG.match(path.name):  # an L2G/RCA map of one class's scores, not labels: say so
            raise wrong_format(path, "png", exc.problem) from None
        raise


@hookimpl
def register_readers(register):
    register(Reader("png", read_png_label, suffix=".png"))
