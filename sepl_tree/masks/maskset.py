"""The :class:`MaskSet` container: one image's SAM masks, dense or as bits, and their records.

Conventions
-----------
- ``MaskSet.dense`` (alias ``.masks``) is ``bool (L, H, W)``; it may be a view whose last two
  axes are swapped in memory (masks decoded from COCO RLE are column-major), so use
  :func:`flat_masks` for pixel-order-independent work instead of assuming C order.
- ``MaskSet.packed`` holds the same masks as bits (:func:`sepl_tree.masks.rle.pack_rows`), in
  the set's pixel order (``MaskSet.order``). RLE files decode straight into bits; dense masks
  are unpacked from them only when something asks for ``.dense``. Overlap counts, unions and
  the containment tree work on the bits.
- Boxes are XYWH in pixels, as segment-anything's ``scripts/amg.py`` writes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sepl_tree.masks.rle import WORD, flat_label, pack_rows, popcount_rows, rle_to_bits, unflatten, unpack_rows
from sepl_tree.prompts import score_value

__all__ = ["MaskSet", "flat_masks", "masks_to_bbox_xywh", "rle_to_masks", "rle_to_maskset"]


def _pixel_order(masks: np.ndarray) -> str:
    """``"F"`` for a column-major view (as decoded from RLE), else ``"C"``."""
    if not masks.flags.c_contiguous and masks.transpose(0, 2, 1).flags.c_contiguous:
        return "F"
    return "C"


def flat_masks(masks: np.ndarray, label: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``masks`` as ``(L, H*W)`` without copying, and ``label`` flattened in the same pixel order.

    Masks decoded from RLE are column-major; flattening them column-major (and the label map
    likewise) avoids a transposing copy. Only order-independent results (counts, unions that
    are reshaped back with :func:`unflatten`) may be computed on the flat arrays.
    """
    n = masks.shape[0]
    order = _pixel_order(masks)
    if order == "C":
        flat = np.ascontiguousarray(masks).reshape(n, masks.shape[1] * masks.shape[2])
    else:
        flat = masks.transpose(0, 2, 1).reshape(n, masks.shape[1] * masks.shape[2])
    return flat, (None if label is None else flat_label(label, order))



class MaskSet:
    """The SAM masks of one image, dense or bit-packed, each made from the other on demand.

    Attributes
    ----------
    dense
        ``bool (L, H, W)`` (also ``masks``, its older name); may be a view whose last two axes
        are swapped in memory (masks decoded from COCO RLE are column-major): use
        :func:`flat_masks` for work that does not depend on pixel order, instead of assuming C
        order. Unpacked on first use when the set was read packed (a few ms for 100 VOC-sized
        masks; :meth:`union` works on the bits instead).
    packed
        The masks as :func:`pack_rows` bits in pixel order :attr:`order`: ``(L, ceil(H*W/64))``
        words. Counts and unions work on these (an eighth of the bytes). Packed on first use
        when the set was made dense.
    order
        ``"C"`` (row by row) or ``"F"`` (column by column, as COCO RLE stores masks).
    records
        One dict per mask with whatever metadata the source had (``area``, ``bbox``,
        ``predicted_iou``, ``stability_score``, ``point_coords``, ``crop_box``, ``level``, ...).
    """

    def __init__(self, masks: np.ndarray, records: list[dict[str, Any]] | None = None) -> None:
        if masks.ndim != 3 or masks.dtype != bool:
            raise ValueError(f"masks must be bool (L, H, W), got {masks.dtype} {masks.shape}")
        self._dense: np.ndarray | None = masks
        self._packed: np.ndarray | None = None
        self._boxes: np.ndarray | None = None
        self._areas: np.ndarray | None = None
        self._count = len(masks)
        self._shape = (int(masks.shape[1]), int(masks.shape[2]))
        self.order = _pixel_order(masks)
        self.records = self._check_records(records)

    @classmethod
    def from_packed(cls, packed: np.ndarray, shape: tuple[int, int], order: str = "C",
                    records: list[dict[str, Any]] | None = None, boxes: np.ndarray | None = None,
                    areas: np.ndarray | None = None) -> MaskSet:
        """A set held as :func:`pack_rows` bits in pixel order ``order`` (and, if known, its
        boxes and areas, which are otherwise computed from the bits on first use)."""
        words = -(-shape[0] * shape[1] // 64)
        if packed.ndim != 2 or packed.shape[1] != words or packed.dtype != WORD:
            raise ValueError(f"packed must be {WORD} (L, {words}), got {packed.dtype} {packed.shape}")
        if order not in ("C", "F"):
            raise ValueError(f"order must be 'C' or 'F', got {order!r}")
        self = cls.__new__(cls)
        self._dense, self._packed, self._boxes, self._areas = None, packed, boxes, areas
        self._count, self._shape, self.order = len(packed), (int(shape[0]), int(shape[1])), order
        self.records = self._check_records(records)
        return self

    @classmethod
    def empty(cls, height: int, width: int) -> MaskSet:
        return cls(np.zeros((0, height, width), bool), [])

    def _check_records(self, records: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        records = [{} for _ in range(self._count)] if records is None else records
        if len(records) != self._count:
            raise ValueError("one record per mask is required")
        return records

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        held = "dense" if self.has_dense else "packed"
        return f"MaskSet({self._count} masks, {self._shape[0]}x{self._shape[1]}, {held}, order {self.order!r})"

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)``."""
        return self._shape

    @property
    def has_dense(self) -> bool:
        """Whether the dense masks exist yet (a set read from RLE has only bits until asked)."""
        return self._dense is not None

    @property
    def dense(self) -> np.ndarray:
        """``bool (L, H, W)``, unpacked from the bits on first use (see the class docstring)."""
        if self._dense is None:
            flat = unpack_rows(self._packed, self._shape[0] * self._shape[1])
            if self.order == "C":
                self._dense = flat.reshape(self._count, *self._shape)
            else:
                self._dense = flat.reshape(self._count, self._shape[1], self._shape[0]).transpose(0, 2, 1)
        return self._dense

    masks = dense  # the older name, kept for plugins

    @property
    def packed(self) -> np.ndarray:
        if self._packed is None:
            self._packed = pack_rows(flat_masks(self._dense)[0])
        return self._packed

    @property
    def boxes(self) -> np.ndarray:
        """Tight XYWH boxes, ``int64 (L, 4)``; zeros for empty masks."""
        if self._boxes is None:
            self._boxes = masks_to_bbox_xywh(self.dense)
        return self._boxes

    @property
    def areas(self) -> np.ndarray:
        """Pixels in each mask, ``int64 (L,)``."""
        if self._areas is None:
            self._areas = popcount_rows(self.packed)
        return self._areas

    @property
    def spans(self) -> tuple[np.ndarray, np.ndarray]:
        """First and one-past-last word of each row of :attr:`packed` that can be non-zero.

        From the boxes when they are known (the words of the lines, columns for order ``"F"``
        and rows for ``"C"``, that a mask's box covers), else from the words themselves;
        ``(0, 0)`` for an empty mask.
        """
        if self._boxes is None:
            nonzero = self.packed != 0
            lo = nonzero.argmax(axis=1)
            hi = nonzero.shape[1] - nonzero[:, ::-1].argmax(axis=1)
            empty = ~nonzero[np.arange(len(lo)), lo]
            lo[empty], hi[empty] = 0, 0
            return lo, hi
        x, y, w, h = self.boxes.T
        height, width = self._shape
        lo, hi = (x * height, (x + w) * height) if self.order == "F" else (y * width, (y + h) * width)
        return lo // 64, -(-hi // 64)

    def subset(self, selected: np.ndarray) -> MaskSet:
        """The masks ``selected`` (a bool mask or int index) as a set of their own, held as this
        one is (dense masks are not made from bits, nor bits from dense masks).

        >>> m = np.array([[[1, 0, 0]], [[0, 1, 0]], [[0, 0, 1]]], bool)
        >>> MaskSet(m, [{"n": 0}, {"n": 1}, {"n": 2}]).subset(np.array([2, 0])).records
        [{'n': 2}, {'n': 0}]
        """
        selected = np.asarray(selected)
        index = np.flatnonzero(selected) if selected.dtype == bool else selected.reshape(-1).astype(np.int64)
        records = [self.records[i] for i in index]
        if self._dense is not None:
            out = MaskSet(self._dense[index], records)
            out.order = self.order
        else:
            out = MaskSet.from_packed(self._packed[index], self._shape, self.order, records)
        if self._packed is not None:
            out._packed = self._packed[index]
        if self._boxes is not None:
            out._boxes = self._boxes[index]
        if self._areas is not None:
            out._areas = self._areas[index]
        return out

    def flat_label(self, label: np.ndarray) -> np.ndarray:
        """``label`` (``(H, W)``) flattened in this set's pixel order, to match :attr:`packed`."""
        return flat_label(label, self.order)

    def union(self, selected: np.ndarray) -> np.ndarray:
        """Union (``bool (H, W)``) of the masks ``selected`` (a bool mask or int index), from the bits.

        >>> m = np.array([[[1, 0, 0]], [[0, 1, 0]], [[0, 0, 1]]], bool)
        >>> MaskSet(m).union(np.array([True, False, True])).tolist()
        [[True, False, True]]
        """
        selected = np.asarray(selected)
        index = np.flatnonzero(selected) if selected.dtype == bool else selected.reshape(-1)
        if index.size == 0:
            return np.zeros(self._shape, bool)
        bits = np.bitwise_or.reduce(self.packed[index], axis=0)
        flat = unpack_rows(bits[None], self._shape[0] * self._shape[1])[0]
        return unflatten(flat, self._shape, self.order)

    def score(self, key: str) -> np.ndarray:
        """A per-mask metadata field as float64, NaN where a record lacks it or holds no finite
        number (the rule of :func:`sepl_tree.prompts.score_value`: a bool or a string is none).

        >>> MaskSet(np.ones((3, 1, 1), bool), [{"s": 0.5}, {"s": "0.9"}, {}]).score("s").tolist()
        [0.5, nan, nan]
        """
        values = (score_value(r.get(key)) for r in self.records)
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def masks_to_bbox_xywh(masks: np.ndarray) -> np.ndarray:
    """Tight XYWH boxes (int64 ``(L, 4)``) of ``bool (L, H, W)`` masks; zeros for empty masks."""
    boxes = np.zeros((len(masks), 4), np.int64)
    if len(masks) == 0:
        return boxes
    rows = masks.any(axis=2)
    cols = masks.any(axis=1)
    nonempty = rows.any(axis=1)
    y0 = rows.argmax(axis=1)
    y1 = rows.shape[1] - rows[:, ::-1].argmax(axis=1)
    x0 = cols.argmax(axis=1)
    x1 = cols.shape[1] - cols[:, ::-1].argmax(axis=1)
    boxes[:] = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
    boxes[~nonempty] = 0
    return boxes


def rle_to_maskset(rles: Sequence[dict[str, Any]], height: int, width: int,
                   records: list[dict[str, Any]] | None = None) -> MaskSet:
    """Decode COCO RLEs straight into a bit-packed :class:`MaskSet` (pixel order ``"F"``).

    Decoded with numpy (:func:`sepl_tree.masks.rle.rle_to_bits`), every mask at once, without
    ever making the ``L x H x W`` bytes of dense masks; the boxes and areas come from the runs.
    Strict: counts that do not cover exactly ``height * width`` pixels raise ``ValueError``.
    """
    words, boxes, areas = rle_to_bits(rles, height, width)
    return MaskSet.from_packed(words, (height, width), "F", records, boxes=boxes, areas=areas)


def rle_to_masks(rles: Sequence[dict[str, Any]], height: int, width: int) -> np.ndarray:
    """Decode COCO RLEs into ``bool (L, H, W)`` (a column-major view, see :func:`flat_masks`).

    Decoded with numpy through :func:`rle_to_maskset` (several times faster than
    ``pycocotools.mask.decode`` on SAM-sized sets) and as strict.

    >>> from sepl_tree.masks.rle import mask_to_rle
    >>> rle = mask_to_rle(np.array([[1, 0], [1, 1]], bool))
    >>> rle_to_masks([rle], 2, 2)[0].astype(int).tolist()
    [[1, 0], [1, 1]]
    """
    return rle_to_maskset(rles, height, width).masks


