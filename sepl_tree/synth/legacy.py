"""The legacy synthetic generator: independent masks, one random point each, uninformative scores.

Kept bit for bit (``SynthConfig(prompts=False)``) so that numbers made with it can be remade; the
default generator is :mod:`sepl_tree.synth.prompts`, which models SAM's prompts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sepl_tree.masks import MaskSet, masks_to_bbox_xywh
from sepl_tree.synth.config import SynthConfig, SynthResult
from sepl_tree.synth.shapes import envelope, jitter, merged_pairs, split

__all__ = ["legacy_masks"]


def legacy_masks(image: np.ndarray | None, rng: np.random.Generator, cfg: SynthConfig,
                 objects: list[tuple[int, np.ndarray]], occupied: np.ndarray, background: np.ndarray,
                 stuff: list[np.ndarray], shape: tuple[int, int]) -> SynthResult:
    """The masks of one image, each made on its own (see the module docstring)."""
    h, w = shape
    made = _Made()
    for region in stuff:
        made.add(jitter(region, rng, cfg.jitter), "stuff", 0, instance=-1, gt_class=0)
    missed = rng.random(len(objects)) < cfg.miss_rate
    for idx, (k, region) in enumerate(objects):
        if not missed[idx]:
            _object_masks(made, idx, k, region, stuff, background, image, rng, cfg)
    _merge_masks(made, objects, missed, occupied, rng, cfg)
    stack, out_records = _shuffled(made, rng, h, w)
    counts: dict[str, int] = {}
    for rec in out_records:
        counts[rec["kind"]] = counts.get(rec["kind"], 0) + 1
    return SynthResult(MaskSet(stack, out_records), objects=len(objects), missed=int(missed.sum()), counts=counts)


class _Made:
    """The masks made so far and their records (masks under 8 pixels are left out)."""

    def __init__(self) -> None:
        self.masks: list[np.ndarray] = []
        self.records: list[dict[str, Any]] = []

    def add(self, mask: np.ndarray, kind: str, level: int, **extra: Any) -> None:
        if mask.sum() < 8:
            return
        self.masks.append(mask)
        self.records.append({"kind": kind, "synthetic": True, "level": level, **extra})


def _object_masks(made: _Made, idx: int, k: int, region: np.ndarray, stuff: list[np.ndarray],
                  background: np.ndarray, image: np.ndarray | None, rng: np.random.Generator,
                  cfg: SynthConfig) -> None:
    """One object's masks: whole, near-duplicate, parts and sub-parts, envelope (each at its rate)."""
    info = {"instance": idx, "gt_class": k}
    if rng.random() < cfg.whole_rate:
        made.add(jitter(region, rng, cfg.jitter), "object", 1, **info)
    if rng.random() < cfg.duplicate_rate:
        made.add(jitter(region, rng, 2 * cfg.jitter, grow=int(rng.choice([-2, -1, 1, 2]))), "jitter", 1, **info)
    if rng.random() < cfg.part_rate:
        for part in split(region, image, rng, int(rng.integers(2, 4))):
            made.add(jitter(part, rng, cfg.jitter), "part", 2, **info)
            if rng.random() < cfg.subpart_rate:
                for sub in split(part, image, rng, 2):
                    made.add(jitter(sub, rng, cfg.jitter), "part", 3, **info)
    if rng.random() < cfg.envelope_rate:
        env = envelope(region, stuff, background, rng)
        if env is not None:
            made.add(jitter(env, rng, cfg.jitter), "envelope", 0, **info)


def _merge_masks(made: _Made, objects: list[tuple[int, np.ndarray]], missed: np.ndarray, occupied: np.ndarray,
                 rng: np.random.Generator, cfg: SynthConfig) -> None:
    """Masks grouping pairs of kept objects that touch once grown by a few pixels."""
    for a, b, near in merged_pairs(objects, missed, rng, cfg.merge_rate):
        union = objects[a][1] | objects[b][1] | (near & ~occupied)
        made.add(jitter(union, rng, cfg.jitter), "merge", 0, instance=a, instances=[a, b],
                 gt_class=objects[a][0], gt_classes=[objects[a][0], objects[b][0]])


def _shuffled(made: _Made, rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The masks in random order, each record completed with amg.py's fields (random point and scores)."""
    order = rng.permutation(len(made.masks))
    stack = np.stack([made.masks[i] for i in order]) if made.masks else np.zeros((0, h, w), bool)
    boxes = masks_to_bbox_xywh(stack)
    out_records = []
    for n, i in enumerate(order):
        rec = dict(made.records[i])
        ys, xs = np.nonzero(stack[n])
        pick = int(rng.integers(len(ys)))
        rec.update({
            "area": int(len(ys)),
            "bbox": [float(v) for v in boxes[n]],
            "point_coords": [[float(xs[pick]), float(ys[pick])]],
            "predicted_iou": float(rng.uniform(0.86, 1.0)),
            "stability_score": float(rng.uniform(0.92, 1.0)),
            "crop_box": [0.0, 0.0, float(w), float(h)],
        })
        out_records.append(rec)
    return stack, out_records
