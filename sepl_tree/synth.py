"""SYNTHETIC SAM-like masks derived from a labelled image (ground truth + RGB), for studying SEPL.

These masks are **synthetic**: they are made from the ground truth, not by SAM, so numbers
measured on them say how strategies react to controlled failure modes, not how they do on real
SAM output. Every record carries ``"synthetic": true`` and a ``kind``:

- ``object``: a whole object (a connected component of one GT class, with the adjacent part of
  VOC's 255 border band), boundary jittered;
- ``part``: a piece of an object (k-means on pixel positions and colour), sometimes a piece of a
  piece (``level`` 2);
- ``jitter``: a second, noisier copy of an object (SAM's near-duplicates across scales);
- ``envelope``: an object together with neighbouring background, either the adjacent
  background segment it touches most (the boat and the sea) or a ring of background around it;
- ``merge``: two neighbouring objects (of any classes) grouped into one mask;
- ``stuff``: a background segment (k-means on colour and position of the GT background,
  split into connected pieces).

Objects are *missed* (no mask of their own, no part, no envelope) at ``miss_rate``; an object's
whole mask is omitted (parts only) at ``1 - whole_rate``. Every mask gets boundary jitter.
Masks are shuffled, so the mask order says nothing about the kind. Scores (``predicted_iou``,
``stability_score``) are drawn from one distribution for every kind, so they carry no
information either.

Conventions: GT label maps ``uint8 (H, W)``, 0 background, 1..K-1 classes, 255 ignore; images
``uint8 (H, W, 3)``; masks ``bool (L, H, W)``; boxes XYWH. Pure functions, seeded by the caller's
``np.random.Generator``; no files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sepl_tree.label_maps import IGNORE
from sepl_tree.morphology import connected_components, dilate, erode
from sepl_tree.masks import MaskSet, masks_to_bbox_xywh

__all__ = [
    "KINDS",
    "SynthConfig",
    "SynthResult",
    "synthesize_masks",
]

#: Every ``kind`` a synthetic record can have.
KINDS = ("object", "part", "jitter", "envelope", "merge", "stuff")


@dataclass(frozen=True)
class SynthConfig:
    """How often each SAM behaviour happens (rates are per object unless said otherwise).

    Attributes
    ----------
    envelope_rate
        An object gets an enveloping mask (itself plus neighbouring background).
    merge_rate
        A pair of neighbouring objects gets a mask grouping them (per pair).
    miss_rate
        An object gets no mask at all.
    whole_rate
        An object's whole mask is present (otherwise SAM gave only its parts).
    part_rate
        An object is split into parts (2 or 3).
    subpart_rate
        A part is split again.
    duplicate_rate
        An object gets a second, noisier copy (kind ``jitter``).
    jitter
        Boundary noise: the share of boundary pixels flipped.
    min_object
        Smaller GT components get no masks (share of the image area).
    stuff_segments
        Colour/position clusters of the background before splitting into connected pieces.
    min_stuff
        Smaller background pieces are dropped (share of the image area).
    """

    envelope_rate: float = 0.3
    merge_rate: float = 0.2
    miss_rate: float = 0.05
    whole_rate: float = 0.9
    part_rate: float = 0.7
    subpart_rate: float = 0.3
    duplicate_rate: float = 0.3
    jitter: float = 0.3
    min_object: float = 0.002
    stuff_segments: int = 5
    min_stuff: float = 0.01


@dataclass
class SynthResult:
    """The synthetic masks of one image and what was done to its objects."""

    masks: MaskSet
    objects: int = 0
    missed: int = 0
    counts: dict[str, int] = field(default_factory=dict)


# -------------------------------------------------------------------------------- helpers


def _kmeans(features: np.ndarray, k: int, rng: np.random.Generator, iters: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Plain k-means: ``(labels, centres)``; k-means++-style seeding from ``rng``."""
    k = max(1, min(k, len(features)))
    centres = [features[rng.integers(len(features))]]
    for _ in range(1, k):
        d = np.min([((features - c) ** 2).sum(1) for c in centres], axis=0)
        total = d.sum()
        centres.append(features[rng.choice(len(features), p=d / total)] if total > 0 else features[rng.integers(len(features))])
    centres = np.array(centres, np.float64)
    labels = np.zeros(len(features), np.int64)
    for _ in range(iters):
        dist = ((features[:, None, :] - centres[None]) ** 2).sum(-1)
        labels = dist.argmin(1)
        for j in range(k):
            sel = labels == j
            if sel.any():
                centres[j] = features[sel].mean(0)
    return labels, centres


def _jitter(mask: np.ndarray, rng: np.random.Generator, rate: float, grow: int = 0) -> np.ndarray:
    """Flip a share ``rate`` of the boundary pixels; ``grow`` > 0 dilates, < 0 erodes first."""
    out = dilate(mask, grow) if grow > 0 else (erode(mask, -grow) if grow < 0 else mask.copy())
    if not out.any():
        out = mask.copy()
    edge = dilate(out, 1) & ~erode(out, 1)
    return out ^ (edge & (rng.random(out.shape) < rate))


def _split(region: np.ndarray, image: np.ndarray, rng: np.random.Generator, k: int) -> list[np.ndarray]:
    """Split ``region`` into ``k`` pieces by k-means on position (and a little colour)."""
    ys, xs = np.nonzero(region)
    if len(ys) < 4 * k:
        return []
    scale = max(int(np.ptp(ys)), int(np.ptp(xs)), 1)
    feats = np.stack([ys / scale, xs / scale], 1)
    if image is not None:
        feats = np.concatenate([feats, 0.3 * image[ys, xs].astype(np.float64) / 255.0], 1)
    labels, _ = _kmeans(feats, k, rng)
    pieces = []
    for j in range(k):
        piece = np.zeros(region.shape, bool)
        piece[ys[labels == j], xs[labels == j]] = True
        if piece.sum() >= 8:
            pieces.append(piece)
    return pieces if len(pieces) > 1 else []


def _stuff_segments(background: np.ndarray, image: np.ndarray, rng: np.random.Generator, cfg: SynthConfig) -> list[np.ndarray]:
    """Background pieces: k-means on colour and position, then connected pieces above a size."""
    h, w = background.shape
    if not background.any():
        return []
    step = 4
    yy, xx = np.mgrid[0:h:step, 0:w:step]
    sample = background[yy, xx]
    scale = float(max(h, w))

    def feats(ys, xs):
        col = image[ys, xs].astype(np.float64) / 255.0 if image is not None else np.zeros((len(ys), 3))
        return np.concatenate([col, 0.6 * np.stack([ys / scale, xs / scale], 1)], 1)

    pts = feats(yy[sample], xx[sample])
    if len(pts) < cfg.stuff_segments:
        return [background]
    _, centres = _kmeans(pts, cfg.stuff_segments, rng)
    ys, xs = np.nonzero(background)
    f = feats(ys, xs)
    lab = ((f[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
    seg = np.full((h, w), -1, np.int64)
    seg[ys, xs] = lab
    out = []
    for j in range(len(centres)):
        labels, n = connected_components(seg == j)
        if n == 0:
            continue
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        for c in np.flatnonzero(sizes[1:] >= cfg.min_stuff * h * w) + 1:
            out.append(labels == c)
    return out


def _objects(gt: np.ndarray, cfg: SynthConfig) -> list[tuple[int, np.ndarray]]:
    """``(class, region)`` of each GT component, grown into the adjacent 255 band."""
    h, w = gt.shape
    void = gt == IGNORE
    out = []
    for k in np.unique(gt):
        if k == 0 or k == IGNORE:
            continue
        labels, n = connected_components(gt == k)
        sizes = np.bincount(labels.ravel(), minlength=n + 1)
        for c in np.flatnonzero(sizes[1:] >= max(cfg.min_object * h * w, 16)) + 1:
            comp = labels == c
            out.append((int(k), comp | (dilate(comp, 3) & void)))
    return out


# ---------------------------------------------------------------------------------- main


def synthesize_masks(gt: np.ndarray, image: np.ndarray | None, rng: np.random.Generator,
                     config: SynthConfig | None = None) -> SynthResult:
    """SYNTHETIC SAM-like masks for one image from its ground truth (see the module docstring).

    Parameters
    ----------
    gt
        ``uint8 (H, W)`` ground truth: 0 background, 1..K-1 classes, 255 ignore.
    image
        ``uint8 (H, W, 3)`` image, used to split objects into parts and the background into
        segments along colours; ``None`` splits by position only.
    rng
        The random generator (the caller seeds it per image for reproducible datasets).
    config
        Rates of each behaviour.

    >>> gt = np.zeros((40, 60), np.uint8); gt[10:30, 5:25] = 1; gt[10:30, 35:55] = 2
    >>> res = synthesize_masks(gt, None, np.random.default_rng(0), SynthConfig(envelope_rate=1.0, miss_rate=0))
    >>> res.objects, "envelope" in res.counts, all(r["synthetic"] for r in res.masks.records)
    (2, True, True)
    """
    cfg = config or SynthConfig()
    h, w = gt.shape
    if image is not None and image.shape[:2] != gt.shape:
        raise ValueError(f"image is {image.shape[:2]} but the ground truth is {gt.shape}")
    objects = _objects(gt, cfg)
    occupied = np.zeros((h, w), bool)
    for _, region in objects:
        occupied |= region
    background = ~occupied & (gt != IGNORE) | (~occupied & (gt == IGNORE) & ~dilate(occupied, 1))
    stuff = _stuff_segments(background & (gt == 0), image, rng, cfg)
    made = _Made()
    for region in stuff:
        made.add(_jitter(region, rng, cfg.jitter), "stuff", 0, instance=-1, gt_class=0)
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
        made.add(_jitter(region, rng, cfg.jitter), "object", 1, **info)
    if rng.random() < cfg.duplicate_rate:
        made.add(_jitter(region, rng, 2 * cfg.jitter, grow=int(rng.choice([-2, -1, 1, 2]))), "jitter", 1, **info)
    if rng.random() < cfg.part_rate:
        for part in _split(region, image, rng, int(rng.integers(2, 4))):
            made.add(_jitter(part, rng, cfg.jitter), "part", 2, **info)
            if rng.random() < cfg.subpart_rate:
                for sub in _split(part, image, rng, 2):
                    made.add(_jitter(sub, rng, cfg.jitter), "part", 3, **info)
    if rng.random() < cfg.envelope_rate:
        env = _envelope(region, stuff, background, rng)
        if env is not None:
            made.add(_jitter(env, rng, cfg.jitter), "envelope", 0, **info)


def _merge_masks(made: _Made, objects: list[tuple[int, np.ndarray]], missed: np.ndarray, occupied: np.ndarray,
                 rng: np.random.Generator, cfg: SynthConfig) -> None:
    """Masks grouping pairs of kept objects that touch once grown by a few pixels."""
    grown = [dilate(region, 4) for _, region in objects]
    for a in range(len(objects)):
        for b in range(a + 1, len(objects)):
            if missed[a] or missed[b] or not (grown[a] & objects[b][1]).any():
                continue
            if rng.random() < cfg.merge_rate:
                gap = grown[a] & grown[b] & ~occupied
                union = objects[a][1] | objects[b][1] | gap
                made.add(_jitter(union, rng, cfg.jitter), "merge", 0, instance=a, instances=[a, b],
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


def _envelope(region: np.ndarray, stuff: list[np.ndarray], background: np.ndarray,
              rng: np.random.Generator) -> np.ndarray | None:
    """The object plus neighbouring background: its most-touching background segment, or a ring."""
    area = int(region.sum())
    touching = dilate(region, 3)
    contacts = [int((touching & s).sum()) for s in stuff]
    if stuff and max(contacts) > 0 and rng.random() < 0.5:
        seg = stuff[int(np.argmax(contacts))]
        # a segment far larger than the object is cut to the object's neighbourhood
        limit = dilate(region, int(max(8, 1.5 * np.sqrt(area))))
        return region | (seg & limit) | (touching & background & limit & dilate(seg, 3))
    margin = int(max(4, rng.uniform(0.15, 0.5) * np.sqrt(area)))
    ring = dilate(region, margin) & background
    if not ring.any():
        return None
    return region | ring
