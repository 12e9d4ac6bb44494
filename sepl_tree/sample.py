"""What a strategy receives for one image."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from sepl_tree.masks import MaskSet
from sepl_tree.overlap import Overlap, assign_masks, compute_overlap

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["Sample"]


@dataclass
class Sample:
    """One image's inputs to a strategy.

    Attributes
    ----------
    pseudo
        ``uint8 (H, W)`` pseudo-label: 0 background, 1..K-1 classes, 255 ignore.
    masks
        The image's SAM masks.
    num_classes
        K, background included (VOC 21, COCO 81).
    tree
        The containment tree (``nx.DiGraph`` parent -> child, node = mask index) for strategies
        that declare ``needs_tree``; ``None`` otherwise.
    """

    pseudo: np.ndarray
    masks: MaskSet
    num_classes: int = 21
    tree: nx.DiGraph | None = None
    image_id: str = ""

    @cached_property
    def overlap(self) -> Overlap:
        """Mask/class intersection counts (computed once, shared by everything that asks)."""
        return compute_overlap(self.masks, self.pseudo, self.num_classes)

    @cached_property
    def assigned(self) -> np.ndarray:
        """Each mask's class by the paper's argmax rule, -1 for masks touching no class."""
        return assign_masks(self.overlap)
