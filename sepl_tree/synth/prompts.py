"""The default synthetic generator: masks as SAM's prompts make them.

Every mask is one of the three multimask outputs of a *prompt*, which share ``point_coords`` and
carry ``level`` 0, 1, 2 in SAM 2.1's output order (0: a part, the smallest; 1: the largest, the
whole with a little background, or the envelope / merge; 2: the whole, which may miss a piece the
largest has), plus the record field ``prompt``. Prompts: one per object (its box centre), one on a
part of the object (sub-part, the whole again, the part) at ``part_rate``, one per background
segment at ``stuff_rate`` (a piece, the segment with a band, the segment), one between two
touching objects at ``merge_rate`` (one, both, the other). ``predicted_iou`` follows each
output's IoU with its prompt's target as SAM 2.1's does on the real box-prompted dev set
(``_PIOU_BASE``); ``stability_score`` is uninformative (the real set has none to calibrate on).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sepl_tree.masks import MaskSet, masks_to_bbox_xywh
from sepl_tree.synth.config import SynthConfig, SynthResult
from sepl_tree.synth.shapes import band, jitter, merged_pairs, sized_envelope, split

__all__ = ["prompted_masks"]

# ------------------------------------------------------------------------ SAM-like prompts
#
# Measured on real SAM 2.1 (hiera-large) box prompts with multimask output (the
# ``sam2-voc-val-dev`` set, 710 prompts): every prompt gives three outputs sharing
# ``point_coords``; in SAM's output order, level 0 is the smallest (a part: median 0.70 of the
# largest's area), level 1 the largest (the whole object with a little background, median +3 %,
# sometimes the object with its surroundings) and level 2 the whole (median 0.96 of level 1);
# the smaller outputs lie inside the largest (median containment 0.998) but the largest is
# covered less than 90 % by the others in 29 % of prompts. SAM's ``predicted_iou`` follows the
# outputs' IoU with the prompt's object (Spearman 0.64) with a level bias (level 2 highest).

#: predicted_iou, fitted on the set above. The whole (level 2) scores ``0.72 + 0.268 * IoU`` plus
#: SAM's skewed noise (mostly a few hundredths, now and then much lower). The other two score
#: below it, by a few hundredths and more the worse their IoU is than the whole's: the part
#: (level 0) in 98 % of prompts, the largest output (level 1) in 92 %, less often when its IoU is
#: higher than the whole's.
_PIOU_BASE, _PIOU_SLOPE = 0.72, 0.268


def _low_tail(rng: np.random.Generator, mu: float, sd: float, tail: float, tail_median: float, tail_sigma: float) -> float:
    """A small Gaussian term, or (share ``tail``) a negative log-normal one: SAM's occasional low scores."""
    if rng.random() < tail:
        return -float(rng.lognormal(np.log(tail_median), tail_sigma))
    return float(rng.normal(mu, sd))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 0.0


def _predicted_iou(outputs: list[np.ndarray], levels: list[int], target: np.ndarray, rng: np.random.Generator,
                   cfg: SynthConfig) -> np.ndarray:
    """SAM-like ``predicted_iou`` of one prompt's outputs (see the constants above), from their IoU with ``target``."""
    ious = np.array([_iou(m, target) for m in outputs])
    ref = ious[levels.index(2)] if 2 in levels else ious.max()
    n = cfg.score_noise
    whole = _PIOU_BASE + _PIOU_SLOPE * ref + n * _low_tail(rng, 0.008, 0.018, 0.15, 0.06, 0.7)
    out = []
    for lv, iou in zip(levels, ious):
        gain = iou - ref
        if lv == 2:
            out.append(whole)
        elif lv == 0:  # the part: below the whole
            flip = rng.random() < 0.02
            gap = float(rng.lognormal(np.log(0.022), 0.8))
            out.append(whole + 0.15 * min(gain, 0.0) + n * (gap if flip else -gap))
        else:  # the largest: below the whole unless clearly better
            flip = rng.random() < min(0.4, 0.06 + 1.5 * max(gain, 0.0))
            gap = float(rng.lognormal(np.log(0.015), 1.0))
            out.append(whole + 0.35 * min(gain, 0.0) + 0.1 * max(gain, 0.0) + n * (gap if flip else -gap))
    return np.clip(np.array(out), 0.05, 0.995)


class _Prompts:
    """The masks and records made so far, and how one prompt's outputs are added."""

    def __init__(self, image: np.ndarray | None, rng: np.random.Generator, cfg: SynthConfig) -> None:
        self.image, self.rng, self.cfg = image, rng, cfg
        self.light = cfg.jitter / 2  # the outputs of one prompt share most of their boundary
        self.masks: list[np.ndarray] = []
        self.records: list[dict[str, Any]] = []
        self.points: set[tuple[float, float]] = set()

    def point_of(self, region: np.ndarray, centre: bool) -> list[list[float]]:
        """The prompt's point: the centre of the region's box (as a box prompt's), or a pixel of it."""
        ys, xs = np.nonzero(region)
        if centre:
            x, y = (xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2
        else:
            pick = int(self.rng.integers(len(ys)))
            x, y = xs[pick] + 0.5, ys[pick] + 0.5
        while (x, y) in self.points:
            x += 0.25
        self.points.add((x, y))
        return [[float(x), float(y)]]

    def add(self, outputs: list[tuple[np.ndarray, str]], target: np.ndarray, where: np.ndarray, centre: bool,
            **info: Any) -> None:
        """Add one prompt: outputs in level order 0, 1, 2 as ``(mask, kind)``; under 8 pixels is no output."""
        keep = [(lv, m, kind) for lv, (m, kind) in enumerate(outputs) if m.sum() >= 8]
        if not keep:
            return
        scores = _predicted_iou([m for _, m, _ in keep], [lv for lv, _, _ in keep], target, self.rng, self.cfg)
        pc = self.point_of(where, centre)
        for (lv, m, kind), s in zip(keep, scores):
            self.masks.append(m)
            self.records.append({"kind": kind, "synthetic": True, "level": lv, "prompt": -1, "point_coords": pc,
                                 "predicted_iou": float(s), **info})

    def part_of(self, region: np.ndarray, base: np.ndarray) -> np.ndarray:
        """Level 0 of an object prompt: one piece of two, or the object less one piece of three to eight."""
        rng = self.rng
        k = 2 if rng.random() < 0.1 else int(rng.integers(3, 9))
        pieces = split(region, self.image, rng, k)
        if not pieces:
            return jitter(base, rng, self.light, grow=-2)
        cut = pieces[int(rng.integers(len(pieces)))]
        return jitter(base & (cut if k == 2 else ~cut), rng, self.light)


def _stuff_prompts(p: _Prompts, stuff: list[np.ndarray], background: np.ndarray) -> None:
    """A prompt per background segment (at ``stuff_rate``): a piece, the segment with a band, the segment."""
    rng, cfg = p.rng, p.cfg
    for seg in stuff:
        if rng.random() >= cfg.stuff_rate:
            continue
        base = jitter(seg, rng, cfg.jitter)
        pieces = split(seg, p.image, rng, 2)
        small = base & pieces[int(rng.integers(len(pieces)))] if pieces else jitter(base, rng, p.light, grow=-2)
        p.add([(small, "stuff"), (base | band(base, background & ~base, rng), "stuff"), (base, "stuff")],
              seg, seg, False, instance=-1, gt_class=0)


def _object_prompts(p: _Prompts, idx: int, k: int, region: np.ndarray, stuff: list[np.ndarray],
                    background: np.ndarray) -> None:
    """One object's prompts: its own (part, largest or envelope, whole; or pieces only), then one on a part."""
    rng, cfg = p.rng, p.cfg
    info = {"instance": idx, "gt_class": k}
    base = jitter(region, rng, cfg.jitter)
    if rng.random() < cfg.whole_rate:
        whole = base.copy()
        if rng.random() < 0.6:  # the whole output misses a piece of the object that the largest has
            pieces = split(region, p.image, rng, int(rng.integers(4, 17)))
            if pieces:
                whole &= ~pieces[int(rng.integers(len(pieces)))]
        env = sized_envelope(region, stuff, background, rng) if rng.random() < cfg.envelope_rate else None
        if env is not None:
            largest, kind = base | jitter(env, rng, cfg.jitter), "envelope"
        else:
            largest, kind = base | band(base, background & ~base, rng), "object"
        p.add([(p.part_of(region, base), "part"), (largest, kind), (whole, "object")], region, region, True, **info)
    else:  # SAM gives pieces only
        pieces = split(region, p.image, rng, 3)
        if pieces:
            order = rng.permutation(len(pieces))
            one, two = base & pieces[order[0]], base & (pieces[order[0]] | pieces[order[1]])
            p.add([(one, "part"), (two | band(two, background & ~two, rng), "part"), (two, "part")],
                  region, two, True, **info)
    if rng.random() < cfg.part_rate:  # a point on a part: sub-part, the whole again, the part
        pieces = split(region, p.image, rng, int(rng.integers(2, 4)))
        if pieces:
            piece = pieces[int(rng.integers(len(pieces)))]
            copy = jitter(region, rng, 2 * cfg.jitter, grow=int(rng.choice([-1, 0, 1, 2])))
            sub = split(piece, p.image, rng, 2) if rng.random() < cfg.subpart_rate else []
            part = jitter(piece, rng, cfg.jitter)
            small = part & sub[int(rng.integers(len(sub)))] if sub else jitter(part, rng, p.light, grow=-2)
            p.add([(small, "part"), (copy, "jitter"), (part, "part")], region, piece, False, **info)


def _merge_prompts(p: _Prompts, objects: list[tuple[int, np.ndarray]], missed: np.ndarray,
                   occupied: np.ndarray) -> None:
    """A point between two touching objects (at ``merge_rate``): one, both, the other."""
    rng, cfg = p.rng, p.cfg
    for a, b, near in merged_pairs(objects, missed, rng, cfg.merge_rate):
        ra, rb = objects[a][1], objects[b][1]
        union = ra | rb | (near & ~occupied)
        big, small = (ra, rb) if ra.sum() >= rb.sum() else (rb, ra)
        first = a if big is ra else b
        p.add([(jitter(small, rng, cfg.jitter), "jitter"), (jitter(union, rng, cfg.jitter), "merge"),
               (jitter(big, rng, cfg.jitter), "jitter")], big, near, False,
              instance=first, instances=[a, b], gt_class=objects[first][0], gt_classes=[objects[a][0], objects[b][0]])


def _finish(p: _Prompts, shape: tuple[int, int], n_objects: int, missed: int) -> SynthResult:
    """Prompt ids in order of appearance, the masks shuffled, records completed as amg.py writes them."""
    h, w = shape
    ids: dict[tuple, int] = {}
    for rec in p.records:
        rec["prompt"] = ids.setdefault(tuple(rec["point_coords"][0]), len(ids))
    order = p.rng.permutation(len(p.masks))
    stack = np.stack([p.masks[i] for i in order]) if p.masks else np.zeros((0, h, w), bool)
    boxes = masks_to_bbox_xywh(stack)
    records = []
    for n, i in enumerate(order):
        rec = dict(p.records[i])
        rec.update({
            "area": int(stack[n].sum()),
            "bbox": [float(v) for v in boxes[n]],
            "stability_score": float(p.rng.uniform(0.92, 1.0)),
            "crop_box": [0.0, 0.0, float(w), float(h)],
        })
        records.append(rec)
    counts: dict[str, int] = {}
    for rec in records:
        counts[rec["kind"]] = counts.get(rec["kind"], 0) + 1
    return SynthResult(MaskSet(stack, records), objects=n_objects, missed=missed, counts=counts)


def prompted_masks(gt: np.ndarray, image: np.ndarray | None, rng: np.random.Generator, cfg: SynthConfig,
                   objects: list[tuple[int, np.ndarray]], occupied: np.ndarray, background: np.ndarray,
                   stuff: list[np.ndarray]) -> SynthResult:
    """The masks as SAM-like prompts: three outputs each (see the notes above ``_PIOU_BASE``)."""
    p = _Prompts(image, rng, cfg)
    _stuff_prompts(p, stuff, background)
    missed = rng.random(len(objects)) < cfg.miss_rate
    for idx, (k, region) in enumerate(objects):
        if not missed[idx]:
            _object_prompts(p, idx, k, region, stuff, background)
    _merge_prompts(p, objects, missed, occupied)
    return _finish(p, gt.shape, len(objects), int(missed.sum()))
