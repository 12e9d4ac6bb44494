"""``recurseed``: RecurSeed's seed pickles ``experiments/predictions/<tag>/<domain>/<id>.pkl``.

Written by RecurSeed's ``infer_rsepm.py`` with ``pickle`` (not ``np.save``): a dict with

- ``keys``: ``int64``, **already shifted by one and padded with the background**:
  ``[0, c1 + 1, c2 + 1, ...]``;
- ``seed``: ``float32 (len(keys) - 1, H, W)``, the decoder's foreground maps of the image's
  classes, each normalised to max 1; no background channel.

RecurSeed's ``convert_seed_to_pseudo_masks.py`` builds the background as
``(1 - max seed) ** bg_gamma`` with ``bg_gamma = 2`` (or a constant ``bg_th``), runs a dense CRF
and maps the argmax through ``keys``. The CRF is not applied here (it needs the image).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sepl_tree import hookimpl
from sepl_tree.readers.cam import (
    Background,
    allowed_classes,
    background_first_keys,
    cam_to_label,
    load_pickled,
    require_keys,
)
from sepl_tree.readers.sniff import wrong_format
from sepl_tree.registry import ReadContext, Reader

__all__ = ["read_recurseed"]


def read_recurseed(folder: Path, image_id: str, ctx: ReadContext, bg: Background = 2.0) -> np.ndarray:
    """RecurSeed seeds: pickle dict with shifted 'keys' [0, c+1, ...] and 'seed' (no background map).

    Parameters
    ----------
    bg
        Background power p of (1 - max seed)^p if 1 or more (RecurSeed's bg_gamma, 2), else a constant score.
    """
    path = folder / f"{image_id}.pkl"
    obj = load_pickled(path)
    found = require_keys(obj, ("keys", "seed"))
    if found is None:
        raise wrong_format(path, "recurseed", "expected RecurSeed's dictionary with 'keys' and 'seed'", obj)
    keys = background_first_keys(path, found["keys"], "RecurSeed")
    return cam_to_label(path, found["seed"], keys[1:], ctx.num_classes, bg=bg,
                        allowed=allowed_classes(ctx, image_id, path))


@hookimpl
def register_readers(register):
    register(Reader("recurseed", read_recurseed, suffix=".pkl"))
