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
Masks are shuffled, so the mask order says nothing about the kind.

By default (``prompts=True``, :mod:`sepl_tree.synth.prompts`) the masks come as SAM makes them:
three alternative outputs per prompt sharing ``point_coords``, with ``level`` and a
``predicted_iou`` that follows mask quality as real SAM 2.1's does, so that the synthetic bed does
not reward rules that real masks punish (a rule that trusted nested masks to be parts). The
legacy generator (``prompts=False``, :mod:`sepl_tree.synth.legacy`: independent masks, scores
drawn from one distribution for every kind) is kept bit for bit.

Conventions: GT label maps ``uint8 (H, W)``, 0 background, 1..K-1 classes, 255 ignore; images
``uint8 (H, W, 3)``; masks ``bool (L, H, W)``; boxes XYWH. Pure functions, seeded by the caller's
``np.random.Generator``; no files.
"""

from __future__ import annotations

import numpy as np

from sepl_tree.label_maps import IGNORE
from sepl_tree.morphology import dilate
from sepl_tree.synth.config import KINDS, SynthConfig, SynthResult
from sepl_tree.synth.legacy import legacy_masks
from sepl_tree.synth.prompts import prompted_masks
from sepl_tree.synth.shapes import gt_objects, stuff_segments

__all__ = ["KINDS", "SynthConfig", "SynthResult", "synthesize_masks"]


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
    objects = gt_objects(gt, cfg)
    occupied = np.zeros((h, w), bool)
    for _, region in objects:
        occupied |= region
    background = ~occupied & (gt != IGNORE) | (~occupied & (gt == IGNORE) & ~dilate(occupied, 1))
    stuff = stuff_segments(background & (gt == 0), image, rng, cfg)
    if cfg.prompts:
        return prompted_masks(gt, image, rng, cfg, objects, occupied, background, stuff)
    return legacy_masks(image, rng, cfg, objects, occupied, background, stuff, (h, w))
