"""Shapes the synthetic generators are made of: k-means pieces, jitter, background segments,
GT objects, envelopes, bands.

Masks are ``bool (H, W)``; images ``uint8 (H, W, 3)`` (or ``None``); GT ``uint8 (H, W)`` with
255 ignore. Pure functions of their arguments and the caller's ``np.random.Generator``.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from sepl_tree.label_maps import IGNORE
from sepl_tree.morphology import connected_components, dilate, erode
from sepl_tree.synth.config import SynthConfig

__all__ = ["arc", "band", "envelope", "gt_objects", "jitter", "kmeans", "merged_pairs", "sized_envelope", "split",
           "stuff_segments"]


def kmeans(features: np.ndarray, k: int, rng: np.random.Generator, iters: int = 10) -> tuple[np.ndarray, np.ndarray]:
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


def jitter(mask: np.ndarray, rng: np.random.Generator, rate: float, grow: int = 0) -> np.ndarray:
    """Flip a share ``rate`` of the boundary pixels; ``grow`` > 0 dilates, < 0 erodes first."""
    out = dilate(mask, grow) if grow > 0 else (erode(mask, -grow) if grow < 0 else mask.copy())
    if not out.any():
        out = mask.copy()
    edge = dilate(out, 1) & ~erode(out, 1)
    return out ^ (edge & (rng.random(out.shape) < rate))


def split(region: np.ndarray, image: np.ndarray, rng: np.random.Generator, k: int) -> list[np.ndarray]:
    """Split ``region`` into ``k`` pieces by k-means on position (and a little colour)."""
    ys, xs = np.nonzero(region)
    if len(ys) < 4 * k:
        return []
    scale = max(int(np.ptp(ys)), int(np.ptp(xs)), 1)
    feats = np.stack([ys / scale, xs / scale], 1)
    if image is not None:
        feats = np.concatenate([feats, 0.3 * image[ys, xs].astype(np.float64) / 255.0], 1)
    labels, _ = kmeans(feats, k, rng)
    pieces = []
    for j in range(k):
        piece = np.zeros(region.shape, bool)
        piece[ys[labels == j], xs[labels == j]] = True
        if piece.sum() >= 8:
            pieces.append(piece)
    return pieces if len(pieces) > 1 else []


def stuff_segments(background: np.ndarray, image: np.ndarray, rng: np.random.Generator, cfg: SynthConfig) -> list[np.ndarray]:
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
    _, centres = kmeans(pts, cfg.stuff_segments, rng)
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


def gt_objects(gt: np.ndarray, cfg: SynthConfig) -> list[tuple[int, np.ndarray]]:
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


def envelope(region: np.ndarray, stuff: list[np.ndarray], background: np.ndarray,
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


def sized_envelope(region: np.ndarray, stuff: list[np.ndarray], background: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray | None:
    """An envelope as SAM 2.1's "whole" output makes one: the object plus the nearest part of the
    background segment it touches most (or of any background), adding 25 % to 100 % of its area."""
    area = int(region.sum())
    want = int(area * rng.uniform(0.25, 1.0))
    touching = dilate(region, 3)
    contacts = [int((touching & s).sum()) for s in stuff]
    source = stuff[int(np.argmax(contacts))] if stuff and max(contacts) > 0 and rng.random() < 0.5 else background
    added = np.zeros_like(region)
    grown = region
    for _ in range(60):  # grow into the source until enough is taken
        grown = dilate(grown, 2) & (source | region)
        added = grown & ~region
        if added.sum() >= want:
            break
    if not added.any():
        return None
    if added.sum() > want:
        added = arc(added, region, want, rng) if rng.random() < 0.5 else added
    return region | added


def arc(ring: np.ndarray, region: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """The ``count`` pixels of ``ring`` in one angular sector around ``region``'s centre (a random one)."""
    yy, xx = np.nonzero(ring)
    if count >= len(yy):
        return ring
    ys, xs = np.nonzero(region)
    angle = np.arctan2(yy - ys.mean(), xx - xs.mean())
    start = rng.uniform(-np.pi, np.pi)
    order = np.argsort((angle - start) % (2 * np.pi))[:count]
    out = np.zeros_like(ring)
    out[yy[order], xx[order]] = True
    return out


def band(region: np.ndarray, allowed: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``allowed`` pixels next to ``region``: a share of its area drawn around 3.5 % (SAM's "whole" output
    takes in a little background), in one sector when that share is less than a full ring."""
    area = int(region.sum())
    want = int(round(area * min(0.4, rng.lognormal(np.log(0.035), 1.1))))
    if want < 1:
        return np.zeros_like(region)
    rim = int((dilate(region, 1) & ~region).sum())
    radius = int(np.clip(np.ceil(want / max(rim, 1)), 1, 25))
    return arc(dilate(region, radius) & ~region & allowed, region, want, rng)


def merged_pairs(objects: list[tuple[int, np.ndarray]], missed: np.ndarray, rng: np.random.Generator,
                 rate: float) -> Iterator[tuple[int, int, np.ndarray]]:
    """Pairs ``(a, b)`` of objects not missed that touch once grown by 4 pixels, each kept at ``rate``,
    with the band where the two grown objects meet. Lazy: the caller's draws for one pair come
    before the next pair is drawn."""
    grown = [dilate(region, 4) for _, region in objects]
    for a in range(len(objects)):
        for b in range(a + 1, len(objects)):
            if missed[a] or missed[b] or not (grown[a] & objects[b][1]).any():
                continue
            if rng.random() < rate:
                yield a, b, grown[a] & grown[b]
