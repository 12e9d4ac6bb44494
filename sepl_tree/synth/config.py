"""What ``sepl_tree.synth`` makes and how often: :class:`SynthConfig`, the record ``kind`` names, the result."""

from __future__ import annotations

from dataclasses import dataclass, field

from sepl_tree.masks import MaskSet

__all__ = ["KINDS", "SynthConfig", "SynthResult"]


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
    prompts
        SAM-like prompts (the default): every mask is one of the three multimask outputs of a
        prompt, which share ``point_coords`` and carry ``level`` 0, 1, 2 in SAM's output order,
        with ``predicted_iou`` drawn as SAM 2.1's relates to mask quality. ``False``: the legacy
        generator (independent masks, one random point each, uninformative scores).
    stuff_rate
        Share of the background segments given a prompt of their own (prompt mode).
    score_noise
        Scale of the noise of ``predicted_iou`` (1: as measured on real SAM 2.1 box prompts;
        0: the score is a function of the mask's IoU with its prompt's target).
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
    prompts: bool = True
    score_noise: float = 1.0
    stuff_rate: float = 1.0


@dataclass
class SynthResult:
    """The synthetic masks of one image and what was done to its objects."""

    masks: MaskSet
    objects: int = 0
    missed: int = 0
    counts: dict[str, int] = field(default_factory=dict)
