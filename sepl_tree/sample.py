"""What a strategy receives for one image: the :class:`Sample`, the whole strategy API.

Everything a selection rule needs is on the sample and computed once, on first use: the overlap
counts, each mask's class, o_s and o_p against that class, the paper's keep rule, the
containment tree for any ``tau``, and SAM's own structure where the mask files record it (which
masks answer one prompt, and SAM's scores). A strategy is a pure function of its sample.

Conventions: the pseudo-label is ``uint8 (H, W)`` (0 background, 1..K-1 classes, 255 ignore);
masks are a :class:`~sepl_tree.masks.MaskSet`; per-mask arrays have length L, one entry per
mask in the set's order; a mask's class is -1 when it touches no class pixel.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from sepl_tree.masks import MaskSet
from sepl_tree.overlap import Overlap, assign_masks, compute_overlap
from sepl_tree.prompts import mask_scores, prompt_ids

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["DEFAULT_TAU", "Sample"]

#: The containment threshold of the tree when a strategy does not choose one.
DEFAULT_TAU = 0.9


@dataclass
class Sample:
    """One image's inputs to a strategy, with what every rule derives from them.

    Attributes
    ----------
    pseudo
        ``uint8 (H, W)`` pseudo-label: 0 background, 1..K-1 classes, 255 ignore.
    masks
        The image's SAM masks (``masks.dense`` is ``bool (L, H, W)``; ``masks.union(keep)``
        the fast union of a selection; ``masks.records`` each mask's metadata).
    num_classes
        K, background included (VOC 21, COCO 81).
    image_id
        The image's id (for messages).

    Examples
    --------
    >>> masks = MaskSet(np.array([[[1, 1, 0, 0]], [[1, 1, 1, 1]]], bool))
    >>> s = Sample(np.array([[1, 1, 1, 0]], np.uint8), masks)
    >>> s.assigned.tolist(), s.o_s.tolist(), s.o_p.round(2).tolist(), s.sepl_keep().tolist()
    ([1, 1], [1.0, 0.75], [0.67, 1.0], [True, True])
    >>> sorted(s.tree().edges)
    [(1, 0)]
    """

    pseudo: np.ndarray
    masks: MaskSet
    num_classes: int = 21
    image_id: str = ""
    _trees: dict[float, nx.DiGraph] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if tuple(self.masks.shape) != tuple(self.pseudo.shape):
            raise ValueError(f"masks of {self.masks.shape[0]}x{self.masks.shape[1]} for a pseudo-label of "
                             f"{self.pseudo.shape[0]}x{self.pseudo.shape[1]}")
        if self.pseudo.size == 0:  # (no PNG reads as this; the API can be handed one)
            on = f" of image {self.image_id!r}" if self.image_id else ""
            raise ValueError(f"the pseudo-label{on} has no pixels ({self.pseudo.shape[0]}x{self.pseudo.shape[1]})")

    @cached_property
    def overlap(self) -> Overlap:
        """Mask/class intersection counts (:class:`~sepl_tree.overlap.Overlap`)."""
        return compute_overlap(self.masks, self.pseudo, self.num_classes)

    @cached_property
    def assigned(self) -> np.ndarray:
        """``int64 (L,)``: each mask's class by the paper's argmax rule, -1 for masks touching no class."""
        return assign_masks(self.overlap)

    @cached_property
    def _ratios(self) -> tuple[np.ndarray, np.ndarray]:
        ov, assigned = self.overlap, self.assigned
        o_s, o_p = np.zeros(len(assigned)), np.zeros(len(assigned))
        hit = np.flatnonzero(assigned >= 0)
        if hit.size:
            k = assigned[hit]
            inter = ov.inter[hit, k].astype(np.float64)
            o_s[hit] = inter / ov.mask_area[hit]
            o_p[hit] = inter / ov.class_area[k]
        return o_s, o_p

    @property
    def o_s(self) -> np.ndarray:
        """``float64 (L,)``: ``|S ∩ P_k| / |S|`` for each mask S and its class k; 0 when unassigned."""
        return self._ratios[0]

    @property
    def o_p(self) -> np.ndarray:
        """``float64 (L,)``: ``|S ∩ P_k| / |P_k|`` for each mask S and its class k; 0 when unassigned."""
        return self._ratios[1]

    @cached_property
    def prompts(self) -> np.ndarray:
        """``int64 (L,)``: masks answering one SAM prompt (shared ``point_coords`` and ``crop_box``)
        share an id; -1 for a mask whose record has no point, or whose point more than three
        masks share (not one SAM prompt; :func:`sepl_tree.prompts.prompt_ids`)."""
        return prompt_ids(self.masks.records)

    @cached_property
    def scores(self) -> np.ndarray:
        """``float64 (L,)``: SAM's ``predicted_iou``, else ``stability_score``, else NaN
        (:func:`sepl_tree.prompts.mask_scores`)."""
        return mask_scores(self.masks.records)

    def sepl_keep(self, t1: float = 0.5, t2: float = 0.85) -> np.ndarray:
        """``bool (L,)``: the paper's keep rule, an assigned mask with ``o_s > t1`` or ``o_p > t2``."""
        return (self.assigned >= 0) & ((self.o_s > t1) | (self.o_p > t2))

    def tree(self, tau: float = DEFAULT_TAU) -> nx.DiGraph:
        """The containment tree of the masks (:func:`sepl_tree.tree.build_tree`), built once per ``tau``.

        An ``nx.DiGraph`` with edges parent -> child and node ids = mask indices: the parent of
        a mask is the smallest mask ranking above it by ``(area, index)`` that holds at least
        ``tau`` of its pixels.
        """
        tau = float(tau)
        if tau not in self._trees:
            from sepl_tree.tree import build_tree  # networkx is imported only where a tree is made

            self._trees[tau] = build_tree(self.masks, tau=tau)
        return self._trees[tau]
