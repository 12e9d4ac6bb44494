"""SAM's own structure, read from the mask records: which masks answer one prompt, and their scores.

SAM answers each prompt (a point, or a box and its point) with up to three alternative masks of
one thing (``multimask_output``): a part, the whole, the whole with its surroundings. They share
``point_coords`` (and, in everything mode, the ``crop_box`` the point was placed in), and SAM
rates each with ``predicted_iou`` (its own estimate of the mask's quality) and
``stability_score``. Readers keep these fields as the mask files give them; masks without them
(PNG folders without metadata, masks from other tools) are each their own prompt and unscored.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["MAX_OUTPUTS", "SCORE_KEYS", "mask_scores", "prompt_ids", "score_value"]

#: The most masks SAM (1, 2 and 2.1) gives for one prompt: its three multimask outputs.
MAX_OUTPUTS = 3
#: The record fields read as a mask's score, in order of preference.
SCORE_KEYS = ("predicted_iou", "stability_score")


def _key(value: Any) -> tuple[float, ...] | None:
    """Coordinates as a hashable key, rounded to 3 decimals (JSON round trips, float32 writers);
    ``None`` for anything that is not a non-empty list of finite numbers (or of lists of them)."""
    if not isinstance(value, (list, tuple)) or not value:
        return None
    if len(value) == 1 and type(value[0]) is list and len(value[0]) == 2:  # amg.py's [[x, y]]: the hot path
        x, y = value[0]
        if type(x) is float and type(y) is float and x - x == 0 and y - y == 0:
            return round(x, 3), round(y, 3)
    out = []
    try:
        for item in value:
            for v in item if isinstance(item, (list, tuple)) else (item,):
                f = float(v)
                if f - f != 0:  # nan or inf
                    return None
                out.append(round(f, 3))
    except (TypeError, ValueError, OverflowError):  # (an int too large for a float, from JSON)
        return None
    return tuple(out) if out else None


def _crop(value: Any) -> tuple | None:
    """A crop box as a key: amg.py's boxes are whole pixels, so no rounding (a box of other values
    is a key of its own)."""
    if type(value) is list and all(type(v) is int or type(v) is float for v in value):
        return tuple(value)
    return _key(value)


def prompt_ids(records: Sequence[dict[str, Any]]) -> np.ndarray:
    """``int64 (L,)``: masks that share ``point_coords`` and ``crop_box`` share an id; -1 without a point.

    Ids count up from 0 in the order prompts first appear. More than :data:`MAX_OUTPUTS` masks
    on one point are not the outputs of one SAM prompt (a writer's placeholder point, such as
    ``[[0, 0]]`` for every mask): they get -1, as masks without a point do.

    >>> prompt_ids([{"point_coords": [[1, 2]]}, {}, {"point_coords": [[1.0002, 2]]}, {"point_coords": [[3, 4]]}]).tolist()
    [0, -1, 0, 1]
    >>> prompt_ids([{"point_coords": [[0, 0]]}] * 4 + [{"point_coords": [[3, 4]]}]).tolist()
    [-1, -1, -1, -1, 0]
    """
    keys = [(point, _crop(rec.get("crop_box"))) if (point := _key(rec.get("point_coords"))) is not None else None
            for rec in records]
    counts: dict[tuple, int] = {}
    for key in keys:
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
    ids = np.full(len(records), -1, np.int64)
    seen: dict[tuple, int] = {}
    for i, key in enumerate(keys):
        if key is not None and counts[key] <= MAX_OUTPUTS:
            ids[i] = seen.setdefault(key, len(seen))
    return ids


def score_value(value: Any) -> float | None:
    """A record's score field as a float: a finite number (numpy's included); ``None`` for
    anything else (a missing field, NaN, infinity, a bool, a string). The one rule for
    :func:`mask_scores` and the tree's node attributes (:func:`sepl_tree.tree.build_tree`).

    >>> [score_value(v) for v in (0.9, 1, np.float32(0.5), float("nan"), True, "0.9", None)]
    [0.9, 1.0, 0.5, None, None, None, None]
    """
    if type(value) is float:  # the common case, fast
        return value if value - value == 0 else None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    try:
        v = float(value)
    except OverflowError:  # an int too large for a float (JSON allows any)
        return None
    return v if np.isfinite(v) else None


def mask_scores(records: Sequence[dict[str, Any]]) -> np.ndarray:
    """``float64 (L,)``: each mask's ``predicted_iou``, else its ``stability_score``, else NaN
    (fields read by :func:`score_value`).

    >>> mask_scores([{"predicted_iou": 0.9, "stability_score": 0.5}, {"stability_score": 0.7}, {}]).tolist()
    [0.9, 0.7, nan]
    """
    out = np.full(len(records), np.nan)
    for i, rec in enumerate(records):
        for key in SCORE_KEYS:
            value = score_value(rec.get(key))
            if value is not None:
                out[i] = value
                break
    return out
