"""The test oracle: plain per-mask-loop versions of the ``threshold``, ``official`` and ``tree-prompt`` rules.

They are written straight from the rules in the docstrings of
:mod:`sepl_tree.strategies.threshold`, :mod:`sepl_tree.strategies.official` and
:mod:`sepl_tree.strategies.tree_prompt`, one mask and one
class at a time, with no shared statistics: the yardstick for the vectorised strategies. They
serve twice:

- ``tests/test_rules_property.py`` compares the fast strategies with them on random inputs;
- ``benchmarks/run_speed.py`` loads this file as a plugin (``--plugin tests/loop_rules.py``)
  and times them through the same ``run`` code path as the fast ones.

Conventions: ``pseudo`` is ``uint8 (H, W)`` (0 background, 1..K-1 classes, 255 ignore);
``masks`` is ``bool (L, H, W)`` in any memory order.
"""

from __future__ import annotations

import numpy as np

from sepl_tree import hookimpl
from sepl_tree.registry import Strategy

__all__ = ["loop_official", "loop_paint", "loop_ratios", "loop_threshold", "loop_tree_prompt", "register_strategies"]

IGNORE = 255


def _present(pseudo: np.ndarray, num_classes: int) -> list[int]:
    return [k for k in range(1, num_classes) if np.any(pseudo == k)]


def loop_ratios(pseudo: np.ndarray, masks: np.ndarray, num_classes: int) -> tuple[list[int], list[float], list[float]]:
    """Each mask's class by the argmax rule (-1: empty, or touches no class) and its o_s, o_p."""
    classes = _present(pseudo, num_classes)
    class_area = {k: int(np.count_nonzero(pseudo == k)) for k in classes}
    assigned: list[int] = []
    o_s: list[float] = []
    o_p: list[float] = []
    for mask in masks:
        area = int(np.count_nonzero(mask))
        best, best_inter = -1, 0
        for k in classes if area else ():  # increasing k and a strict '>': the lowest class wins ties
            inter = int(np.count_nonzero(mask & (pseudo == k)))
            if inter > best_inter:
                best, best_inter = k, inter
        assigned.append(best)
        o_s.append(best_inter / area if best >= 0 else 0.0)
        o_p.append(best_inter / class_area[best] if best >= 0 else 0.0)
    return assigned, o_s, o_p


def loop_paint(pseudo: np.ndarray, masks: np.ndarray, keep: list[bool], assigned: list[int],
               num_classes: int) -> np.ndarray:
    """0, then for increasing k the union of k's kept masks (or P_k if none); uncovered 255 stays."""
    out = np.zeros(pseudo.shape, np.uint8)
    covered = np.zeros(pseudo.shape, bool)
    for k in _present(pseudo, num_classes):
        chosen = [mask for mask, kept, a in zip(masks, keep, assigned) if kept and a == k]
        region = np.zeros(pseudo.shape, bool)
        for mask in chosen:
            region |= mask
        if not chosen:
            region = pseudo == k
        out[region] = k
        covered |= region
    out[(pseudo == IGNORE) & ~covered] = IGNORE
    return out


def loop_threshold(pseudo: np.ndarray, masks: np.ndarray, num_classes: int,
                   t1: float = 0.5, t2: float = 0.85) -> np.ndarray:
    """SEPL Algorithm 1, one mask at a time."""
    assigned, o_s, o_p = loop_ratios(pseudo, masks, num_classes)
    keep = [a >= 0 and (s > t1 or p > t2) for a, s, p in zip(assigned, o_s, o_p)]
    return loop_paint(pseudo, masks, keep, assigned, num_classes)


def loop_official(pseudo: np.ndarray, masks: np.ndarray, num_classes: int, t2: float = 0.85) -> np.ndarray:
    """The released merge code's rule, one class and one mask at a time."""
    taken = [False] * len(masks)
    out = np.zeros(pseudo.shape, np.uint8)
    for k in _present(pseudo, num_classes):
        in_class = pseudo == k
        class_area = int(np.count_nonzero(in_class))
        free_union = np.zeros(pseudo.shape, bool)
        for n, mask in enumerate(masks):
            if not taken[n]:
                free_union |= mask
        region = in_class & ~free_union
        kept = []
        for n, mask in enumerate(masks):
            if taken[n]:
                continue
            inter = int(np.count_nonzero(mask & in_class))
            area = int(np.count_nonzero(mask))
            if 2 * inter - area > 0 or inter / class_area >= t2:
                kept.append(n)
                region |= mask
        for n in kept:
            taken[n] = True
        out[region] = k
    return out


def _point_key(rec: dict) -> tuple | None:
    """The prompt a record answers: its point rounded to 3 decimals and its crop box (whole pixels) as
    it is; None without a point."""
    point = rec.get("point_coords")
    if not point:
        return None
    crop = rec.get("crop_box")
    return (tuple(round(float(v), 3) for pair in point for v in pair),
            None if crop is None else tuple(float(v) for v in crop))


def _score(rec: dict) -> float:
    for key in ("predicted_iou", "stability_score"):
        if isinstance(rec.get(key), (int, float)):
            return float(rec[key])
    return float("-inf")


def loop_tree_prompt(pseudo: np.ndarray, masks: np.ndarray, records: list[dict], num_classes: int,
                     t1: float = 0.5, t2: float = 0.85) -> np.ndarray:
    """``tree-prompt``, one prompt and one mask at a time: threshold, then one output per (prompt, class)."""
    assigned, o_s, o_p = loop_ratios(pseudo, masks, num_classes)
    keep = [a >= 0 and (s > t1 or p > t2) for a, s, p in zip(assigned, o_s, o_p)]
    keys = [_point_key(rec) for rec in records]
    groups: dict[tuple, list[int]] = {}
    for n, key in enumerate(keys):
        if keep[n] and key is not None and keys.count(key) <= 3:  # more than SAM's three outputs: no prompt
            groups.setdefault((key, assigned[n]), []).append(n)
    for (_, k), members in groups.items():
        areas = {n: int(np.count_nonzero(masks[n])) for n in members}
        chosen = members[0]
        for n in members[1:]:  # best score, then the largest, then the first
            if (_score(records[n]), areas[n]) > (_score(records[chosen]), areas[chosen]):
                chosen = n
        for n in sorted(members, key=lambda n: areas[n]):  # larger alternatives, smallest first
            if areas[n] <= areas[chosen]:
                continue
            added = masks[n] & ~masks[chosen]
            if added.any() and np.count_nonzero(added & (pseudo == k)) > t1 * np.count_nonzero(added):
                chosen = n
        for n in members:
            keep[n] = n == chosen
    return loop_paint(pseudo, masks, keep, assigned, num_classes)


def _loop_threshold_strategy(sample, t1: float = 0.5, t2: float = 0.85) -> np.ndarray:
    """``threshold`` as a plain per-mask loop (benchmark yardstick)."""
    return loop_threshold(sample.pseudo, sample.masks.dense, sample.num_classes, t1, t2)


def _loop_official_strategy(sample, t2: float = 0.85) -> np.ndarray:
    """``official`` as a plain per-mask loop (benchmark yardstick)."""
    return loop_official(sample.pseudo, sample.masks.dense, sample.num_classes, t2)


@hookimpl
def register_strategies(register):
    register(Strategy("loop-threshold", _loop_threshold_strategy))
    register(Strategy("loop-official", _loop_official_strategy))
