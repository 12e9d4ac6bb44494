"""SAM masks: the :class:`MaskSet` container and segment-anything's two on-disk layouts.

Conventions
-----------
- ``MaskSet.masks`` is ``bool (L, H, W)``; it may be a view whose last two axes are swapped
  in memory (masks decoded from COCO RLE are column-major), so use :func:`flat_masks` for
  pixel-order-independent work instead of assuming C order.
- ``MaskSet.packed`` holds the same masks as bits (:func:`pack_rows`), in the set's pixel order
  (``MaskSet.order``). RLE files decode straight into bits; dense masks are unpacked from them
  only when something asks for ``.masks``. Overlap counts, unions and the containment tree
  work on the bits.
- Boxes are XYWH in pixels, as ``scripts/amg.py`` writes them.
- RLE is COCO's compressed RLE (``{"size": [H, W], "counts": str}``), Fortran order inside.
- The two layouts, detected per image, exactly as ``scripts/amg.py`` writes them:

  * folder: ``MASKS/<id>/<n>.png`` (255 = mask) and an optional ``metadata.csv`` with header
    ``id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,point_input_y,predicted_iou,
    stability_score,crop_box_x0,crop_box_y0,crop_box_w,crop_box_h``;
  * RLE: ``MASKS/<id>.json``, a list of records ``{segmentation, area, bbox, predicted_iou,
    point_coords, stability_score, crop_box}`` (extra keys, such as ``level`` or ``kind``,
    are kept).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from sepl_tree.errors import InputError
from sepl_tree.io import atomic_write_bytes, read_png

__all__ = [
    "AMG_CSV_HEADER",
    "MaskSet",
    "WORD",
    "find_mask_source",
    "flat_label",
    "flat_masks",
    "list_mask_ids",
    "mask_to_rle",
    "masks_to_bbox_xywh",
    "read_masks",
    "pack_rows",
    "popcount_rows",
    "rle_to_masks",
    "rle_to_maskset",
    "unflatten",
    "unpack_rows",
    "write_masks_png_folder",
    "write_masks_rle",
]

AMG_CSV_HEADER = (
    "id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,point_input_y,predicted_iou,"
    "stability_score,crop_box_x0,crop_box_y0,crop_box_w,crop_box_h"
)


#: Packed masks are rows of little-endian 64-bit words: pixel p (in the set's pixel order) is
#: bit ``p % 64`` of word ``p // 64``; rows are zero-padded to whole words.
WORD = np.dtype("<u8")
_ALL_ONES = np.array(0xFFFFFFFFFFFFFFFF, WORD)


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


def flat_label(label: np.ndarray, order: str) -> np.ndarray:
    """A ``(H, W)`` map flattened in pixel order ``order`` (``"C"`` rows, ``"F"`` columns)."""
    return label.reshape(-1) if order == "C" else np.ascontiguousarray(label.T).reshape(-1)


def unflatten(flat: np.ndarray, shape: tuple[int, int], order: str) -> np.ndarray:
    """A flat ``(H*W,)`` array in pixel order ``order`` as ``(H, W)``; a view, no copy."""
    height, width = shape
    return flat.reshape(height, width) if order == "C" else flat.reshape(width, height).T


def pack_rows(flat: np.ndarray) -> np.ndarray:
    """``bool (L, N)`` as bits: ``(L, ceil(N / 64))`` words of :data:`WORD`, zero-padded.

    Counting on the packed rows reads an eighth of the bytes; the zero padding never counts.
    """
    n, width = flat.shape
    packed = np.zeros((n, -(-width // 64) * 8), np.uint8)
    packed[:, : -(-width // 8)] = np.packbits(flat, axis=1, bitorder="little")
    return packed.view(WORD)


def popcount_rows(words: np.ndarray) -> np.ndarray:
    """``int64 (L,)``: the number of set bits in each row of ``(L, n)`` words.

    >>> popcount_rows(pack_rows(np.array([[1, 0, 1], [0, 0, 0]], bool))).tolist()
    [2, 0]
    """
    return np.bitwise_count(words).sum(axis=1, dtype=np.int64)


def unpack_rows(words: np.ndarray, count: int) -> np.ndarray:
    """The inverse of :func:`pack_rows`: ``bool (L, count)``.

    >>> bits = pack_rows(np.array([[1, 0, 1]], bool))
    >>> unpack_rows(bits, 3).tolist()
    [[True, False, True]]
    """
    as_bytes = np.ascontiguousarray(words, WORD).view(np.uint8)
    return np.unpackbits(as_bytes, axis=1, count=count, bitorder="little").view(bool)


class MaskSet:
    """The SAM masks of one image, dense or bit-packed, each made from the other on demand.

    Attributes
    ----------
    masks
        ``bool (L, H, W)``; may be a view whose last two axes are swapped in memory (masks
        decoded from COCO RLE are column-major): use :func:`flat_masks` for work that does not
        depend on pixel order, instead of assuming C order. Unpacked on first use when the set
        was read packed.
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
        records = records or [{} for _ in range(self._count)]
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
    def masks(self) -> np.ndarray:
        if self._dense is None:
            flat = unpack_rows(self._packed, self._shape[0] * self._shape[1])
            if self.order == "C":
                self._dense = flat.reshape(self._count, *self._shape)
            else:
                self._dense = flat.reshape(self._count, self._shape[1], self._shape[0]).transpose(0, 2, 1)
        return self._dense

    @property
    def packed(self) -> np.ndarray:
        if self._packed is None:
            self._packed = pack_rows(flat_masks(self._dense)[0])
        return self._packed

    @property
    def boxes(self) -> np.ndarray:
        """Tight XYWH boxes, ``int64 (L, 4)``; zeros for empty masks."""
        if self._boxes is None:
            self._boxes = masks_to_bbox_xywh(self.masks)
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
        """A per-mask metadata field as float64, NaN where a record lacks it."""
        return np.array([float(r.get(key, np.nan)) for r in self.records], dtype=np.float64)


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


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE of one ``bool (H, W)`` mask, with ``counts`` as ``str`` (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _rle_counts(strings: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths of COCO compressed RLE strings, all strings at once.

    Returns ``(counts, per_string)``: the int64 run lengths of every string, concatenated, and
    how many belong to each string. The format (pycocotools' ``rleFrString``): each value is
    written in 5-bit groups, least significant first, as characters ``48 + group`` with bit
    0x20 set on all but the last group and bit 0x10 of the last group as the sign; from the
    fourth value on, each is stored as the difference to the value two places before it.
    """
    lengths = np.fromiter((len(s) for s in strings), np.int64, len(strings))
    chars = np.frombuffer(b"".join(strings), np.uint8).astype(np.int64) - 48
    if ((chars < 0) | (chars > 63)).any():
        raise ValueError("RLE counts contain characters outside '0'..'o'")
    last = (chars & 0x20) == 0  # the last group of a value
    ends = np.flatnonzero(last)
    string_ends = np.cumsum(lengths)
    if not last[string_ends[lengths > 0] - 1].all():
        raise ValueError("an RLE string ends in the middle of a value")
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    groups = ends - starts + 1
    if groups.size and groups.max() > 7:
        raise ValueError("an RLE value has more than 7 groups")
    shift = 5 * (np.arange(chars.size) - np.repeat(starts, groups))
    values = np.add.reduceat((chars & 0x1F) << shift, starts) if ends.size else np.zeros(0, np.int64)
    negative = (chars[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * groups[negative])
    per_string = np.diff(np.searchsorted(ends, string_ends - 1, side="right"), prepend=0)
    # Undo the delta coding: value m (m > 2) adds value m - 2, i.e. running sums over the odd
    # places from 1 and over the even places from 2, restarted for every string.
    first = np.repeat(np.cumsum(per_string) - per_string, per_string)
    place = np.arange(values.size) - first
    for parity, start in ((1, 1), (0, 2)):
        sel = np.flatnonzero((place >= start) & (place % 2 == parity))
        if sel.size:
            running = np.cumsum(values[sel])
            owner = first[sel]
            new_owner = np.flatnonzero(np.diff(owner, prepend=-1))
            before = np.concatenate([[0], running[new_owner[1:] - 1]])
            values[sel] = running - np.repeat(before, np.diff(np.append(new_owner, sel.size)))
    return values, per_string


def _rle_runs(rles: Sequence[dict[str, Any]], height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The runs of ones of COCO RLEs: ``(start, stop, owner)``, column-major pixel positions.

    Sorted by owner (the index of the RLE), then position; empty runs are left out. Strict:
    counts that do not cover exactly ``height * width`` pixels raise ``ValueError``.
    """
    for r in rles:
        if [int(v) for v in r["size"]] != [height, width]:
            raise ValueError(f"an RLE has size {list(r['size'])}, expected {[height, width]}")
        if not isinstance(r["counts"], (str, bytes)):
            raise ValueError("RLE counts must be a compressed string (as amg.py writes them)")
    counts, per_mask = _rle_counts([r["counts"].encode("ascii") if isinstance(r["counts"], str) else r["counts"]
                                    for r in rles])
    if (per_mask == 0).any() or (counts < 0).any():
        raise ValueError("corrupt RLE counts")
    first = np.cumsum(per_mask) - per_mask
    if (np.add.reduceat(counts, first) != height * width).any():
        raise ValueError(f"RLE counts do not add up to {height}x{width} pixels")
    owner = np.repeat(np.arange(len(rles)), per_mask)
    stop = np.cumsum(counts)
    stop -= np.repeat(stop[first] - counts[first], per_mask)  # restart at 0 for every mask
    on = ((np.arange(counts.size) - first[owner]) % 2 == 1) & (counts > 0)  # runs alternate 0, 1, ...
    return stop[on] - counts[on], stop[on], owner[on]


def _runs_to_words(start: np.ndarray, stop: np.ndarray, owner: np.ndarray, n: int, words: int) -> np.ndarray:
    """Sorted, disjoint runs of ones as :func:`pack_rows` rows (``n`` rows of ``words`` words).

    Words wholly inside a run are laid down with one ``np.repeat`` of alternating 0 and all-ones
    stretches; the partial words at either end of each run are ORed in afterwards (two runs can
    share one, so equal words are ORed together first).
    """
    base = owner * (words * 64)
    lo, hi = start + base, stop + base - 1  # first and last bit of each run
    w_lo, w_hi = lo >> 6, hi >> 6
    full_lo = w_lo + 1
    full_hi = np.maximum(w_hi, full_lo)
    bounds = np.empty(2 * lo.size + 2, np.int64)
    bounds[0], bounds[-1] = 0, n * words
    bounds[1:-1:2], bounds[2:-1:2] = full_lo, full_hi
    stretch = np.zeros(bounds.size - 1, WORD)
    stretch[1::2] = _ALL_ONES
    out = np.repeat(stretch, np.diff(bounds))
    head = _ALL_ONES << (lo & 63).astype(WORD)
    tail = _ALL_ONES >> (63 - (hi & 63)).astype(WORD)
    same = w_lo == w_hi
    index = np.empty(2 * lo.size, np.int64)
    value = np.empty(2 * lo.size, WORD)
    index[0::2], index[1::2] = w_lo, w_hi
    value[0::2] = np.where(same, head & tail, head)
    value[1::2] = np.where(same, 0, tail)
    if index.size:
        group = np.flatnonzero(np.r_[True, index[1:] != index[:-1]])
        out[index[group]] |= np.bitwise_or.reduceat(value, group)
    return out.reshape(n, words)


def _runs_to_boxes(start: np.ndarray, stop: np.ndarray, owner: np.ndarray, n: int, height: int) -> np.ndarray:
    """Tight XYWH boxes of masks given as column-major runs (zeros for a mask with no run)."""
    boxes = np.zeros((n, 4), np.int64)
    if not start.size:
        return boxes
    col_lo, col_hi = start // height, (stop - 1) // height
    across = col_lo != col_hi  # a run that wraps into the next column covers its top and the bottom before
    row_lo = np.where(across, 0, start % height)
    row_hi = np.where(across, height - 1, (stop - 1) % height)
    group = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    last = np.r_[group[1:], owner.size] - 1
    who = owner[group]
    y0 = np.minimum.reduceat(row_lo, group)
    boxes[who, 0] = col_lo[group]
    boxes[who, 1] = y0
    boxes[who, 2] = col_hi[last] + 1 - col_lo[group]
    boxes[who, 3] = np.maximum.reduceat(row_hi, group) + 1 - y0
    return boxes


def rle_to_maskset(rles: Sequence[dict[str, Any]], height: int, width: int,
                   records: list[dict[str, Any]] | None = None) -> MaskSet:
    """Decode COCO RLEs straight into a bit-packed :class:`MaskSet` (pixel order ``"F"``).

    Decoded with numpy, every mask at once, without ever making the ``L x H x W`` bytes of dense
    masks; the boxes and areas come from the runs. Strict: counts that do not cover exactly
    ``height * width`` pixels raise ``ValueError``.
    """
    n, words = len(rles), -(-height * width // 64)
    if not rles:
        return MaskSet.from_packed(np.zeros((0, words), WORD), (height, width), "F", records,
                                   boxes=np.zeros((0, 4), np.int64), areas=np.zeros(0, np.int64))
    start, stop, owner = _rle_runs(rles, height, width)
    areas = np.bincount(owner, weights=stop - start, minlength=n).astype(np.int64)
    return MaskSet.from_packed(_runs_to_words(start, stop, owner, n, words), (height, width), "F", records,
                               boxes=_runs_to_boxes(start, stop, owner, n, height), areas=areas)


def rle_to_masks(rles: Sequence[dict[str, Any]], height: int, width: int) -> np.ndarray:
    """Decode COCO RLEs into ``bool (L, H, W)`` (a column-major view, see :func:`flat_masks`).

    Decoded with numpy through :func:`rle_to_maskset` (several times faster than
    ``pycocotools.mask.decode`` on SAM-sized sets) and as strict.

    >>> rle = mask_to_rle(np.array([[1, 0], [1, 1]], bool))
    >>> rle_to_masks([rle], 2, 2)[0].astype(int).tolist()
    [[1, 0], [1, 1]]
    """
    return rle_to_maskset(rles, height, width).masks


# ---------------------------------------------------------------------------------------- read


def find_mask_source(masks_dir: Path, image_id: str) -> Path | None:
    """``<id>.json`` if it exists, else the ``<id>/`` folder if it exists, else ``None``."""
    rle = masks_dir / f"{image_id}.json"
    if rle.is_file():
        return rle
    folder = masks_dir / image_id
    if folder.is_dir():
        return folder
    return None


def list_mask_ids(masks_dir: Path) -> list[str]:
    """Image ids with masks in ``masks_dir`` (either layout), sorted."""
    ids = {p.stem for p in masks_dir.glob("*.json") if p.is_file()}
    ids |= {p.name for p in masks_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
    return sorted(ids)


def _read_rle_json(path: Path, shape: tuple[int, int] | None) -> MaskSet:
    try:
        records = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read mask JSON: {exc}") from None
    if not isinstance(records, list):
        raise InputError(path, "mask JSON must be a list of records (as segment-anything's amg.py writes)")
    rles = []
    for n, rec in enumerate(records):
        seg = rec.get("segmentation") if isinstance(rec, dict) else None
        if not isinstance(seg, dict) or "size" not in seg or "counts" not in seg:
            raise InputError(path, f"record {n} has no COCO RLE 'segmentation' with 'size' and 'counts'")
        rles.append(seg)
    sizes = {tuple(r["size"]) for r in rles}
    if len(sizes) > 1:
        raise InputError(path, f"masks have different sizes: {sorted(sizes)}")
    if rles:
        height, width = (int(v) for v in rles[0]["size"])
    elif shape is not None:
        height, width = shape
    else:
        raise InputError(path, "no masks and no image size to give them")
    if shape is not None and (height, width) != tuple(shape):
        raise InputError(path, f"masks are {height}x{width} (HxW) but the pseudo-label is {shape[0]}x{shape[1]}")
    meta = [{k: v for k, v in rec.items() if k != "segmentation"} for rec in records]
    try:
        return rle_to_maskset(rles, height, width, meta)
    except (ValueError, TypeError, UnicodeError) as exc:
        raise InputError(path, f"corrupt RLE: {exc}") from None


def _read_csv(path: Path) -> dict[int, dict[str, Any]]:
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(path, f"cannot read metadata.csv: {exc}") from None
    out: dict[int, dict[str, Any]] = {}
    for row in rows:
        try:
            n = int(row["id"])
            rec: dict[str, Any] = {
                "area": int(float(row["area"])),
                "bbox": [float(row[f"bbox_{k}"]) for k in ("x0", "y0", "w", "h")],
                "point_coords": [[float(row["point_input_x"]), float(row["point_input_y"])]],
                "predicted_iou": float(row["predicted_iou"]),
                "stability_score": float(row["stability_score"]),
                "crop_box": [float(row[f"crop_box_{k}"]) for k in ("x0", "y0", "w", "h")],
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(path, f"bad row {row!r}: expected columns {AMG_CSV_HEADER}") from exc
        rec.update({k: v for k, v in row.items() if k not in AMG_CSV_HEADER.split(",") and k})
        out[n] = rec
    return out


_PNG_NAME = re.compile(r"^(\d+)\.png$")


def _read_png_folder(folder: Path, shape: tuple[int, int] | None) -> MaskSet:
    files = sorted(((int(m.group(1)), p) for p in folder.iterdir() if (m := _PNG_NAME.match(p.name))))
    meta = _read_csv(folder / "metadata.csv") if (folder / "metadata.csv").is_file() else {}
    masks: np.ndarray | None = None  # filled in place: no per-mask temporaries, no stacking copy
    records = []
    for index, (n, path) in enumerate(files):
        m = read_png(path)
        if m.ndim != 2:
            raise InputError(path, f"a mask PNG must have one channel, got shape {m.shape}")
        if shape is None:
            shape = m.shape
        if m.shape != tuple(shape):
            raise InputError(path, f"mask is {m.shape[0]}x{m.shape[1]} (HxW) but expected {shape[0]}x{shape[1]}")
        if masks is None:
            masks = np.empty((len(files), *m.shape), bool)
        np.greater(m, 127, out=masks[index])
        records.append(meta.get(n, {}))
    if masks is None:
        if shape is None:
            raise InputError(folder, "no masks and no image size to give them")
        return MaskSet.empty(*shape)
    return MaskSet(masks, records)


def read_masks(masks_dir: Path, image_id: str, shape: tuple[int, int] | None = None) -> MaskSet:
    """The masks of ``image_id`` from ``masks_dir``, in whichever amg.py layout is there.

    Raises ``InputError`` when neither layout exists or a file is corrupt or of the wrong size
    (``shape`` is the expected ``(H, W)``, usually the pseudo-label's). An empty list of masks is
    valid.
    """
    source = find_mask_source(masks_dir, image_id)
    if source is None:
        raise InputError(masks_dir / f"{image_id}.json", "no masks for this image (neither <id>.json nor <id>/)")
    if source.suffix == ".json" and source.is_file():
        return _read_rle_json(source, shape)
    return _read_png_folder(source, shape)


# --------------------------------------------------------------------------------------- write


def _complete_record(mask: np.ndarray, rec: dict[str, Any], box: np.ndarray) -> dict[str, Any]:
    h, w = mask.shape
    out = {
        "area": int(rec.get("area", int(mask.sum()))),
        "bbox": [float(v) for v in rec.get("bbox", box.tolist())],
        "predicted_iou": float(rec.get("predicted_iou", 1.0)),
        "point_coords": rec.get("point_coords", [[0.0, 0.0]]),
        "stability_score": float(rec.get("stability_score", 1.0)),
        "crop_box": [float(v) for v in rec.get("crop_box", [0, 0, w, h])],
    }
    out.update({k: v for k, v in rec.items() if k not in out and k != "segmentation"})
    return out


def write_masks_rle(path: Path, maskset: MaskSet) -> None:
    """Write ``<id>.json`` as amg.py does (atomic); missing metadata gets amg.py-style defaults."""
    boxes = masks_to_bbox_xywh(maskset.masks)
    records = []
    for mask, rec, box in zip(maskset.masks, maskset.records, boxes):
        out = {"segmentation": mask_to_rle(mask)}
        out.update(_complete_record(mask, rec, box))
        records.append(out)
    atomic_write_bytes(path, json.dumps(records).encode())


def write_masks_png_folder(folder: Path, maskset: MaskSet) -> None:
    """Write ``<n>.png`` files and ``metadata.csv`` into ``folder`` as amg.py does.

    The folder is filled under a temporary name and renamed into place, so a reader never sees
    half of it.
    """
    tmp = folder.with_name(f".{folder.name}.tmp")
    if tmp.exists():
        for p in tmp.iterdir():
            p.unlink()
    tmp.mkdir(parents=True, exist_ok=True)
    boxes = masks_to_bbox_xywh(maskset.masks)
    lines = [AMG_CSV_HEADER]
    for n, (mask, rec, box) in enumerate(zip(maskset.masks, maskset.records, boxes)):
        Image.fromarray(mask.astype(np.uint8) * 255).save(tmp / f"{n}.png")
        r = _complete_record(mask, rec, box)
        (px, py), = r["point_coords"][:1] or [[0.0, 0.0]]
        row = [n, r["area"], *r["bbox"], px, py, r["predicted_iou"], r["stability_score"], *r["crop_box"]]
        lines.append(",".join(str(v) for v in row))
    (tmp / "metadata.csv").write_text("\n".join(lines) + "\n")
    if folder.exists():
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()
    tmp.rename(folder)
