"""A pure codec for masks: COCO compressed RLE and rows of bits. No files, no containers.

Conventions
-----------
- Bits: a mask flattened in a pixel order (``"C"`` row by row, ``"F"`` column by column) is a
  row of little-endian 64-bit words (:data:`WORD`): pixel p is bit ``p % 64`` of word
  ``p // 64``; rows are zero-padded to whole words (:func:`pack_rows`).
- RLE is COCO's compressed RLE (``{"size": [H, W], "counts": str}``), column-major ("F")
  inside, exactly as pycocotools and segment-anything's ``scripts/amg.py`` write it.
- Boxes are XYWH in pixels, as ``scripts/amg.py`` writes them.

Why a numpy decoder and not ``pycocotools.mask.decode``: it decodes every mask of an image at
once straight into bits (never the ``L x H x W`` bytes). On images of 500x375 with 100 masks it
takes 3.2 ms an image against 29 ms for pycocotools' decode alone and 51 ms for its decode
followed by packing (2-core machine; on small sets of ~18 masks it is only ~1.3x faster). It is
also strict where pycocotools leaves pixels uninitialised (counts that do not cover H x W).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "WORD",
    "flat_label",
    "mask_to_rle",
    "pack_rows",
    "popcount",
    "popcount_rows",
    "rle_to_bits",
    "unflatten",
    "unpack_rows",
]

#: Packed masks are rows of little-endian 64-bit words: pixel p (in the set's pixel order) is
#: bit ``p % 64`` of word ``p // 64``; rows are zero-padded to whole words.
WORD = np.dtype("<u8")
_ALL_ONES = np.array(0xFFFFFFFFFFFFFFFF, WORD)


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


def popcount(words: np.ndarray) -> int:
    """The number of set bits in ``words`` (any shape): the pixels of a packed mask or selection.

    >>> popcount(pack_rows(np.array([[1, 0, 1]], bool))[0])
    2
    """
    return int(np.bitwise_count(words).sum())


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



def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE of one ``bool (H, W)`` mask, with ``counts`` as ``str`` (JSON-ready)."""
    from pycocotools import mask as mask_utils

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




def rle_to_bits(rles: Sequence[dict[str, Any]], height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode COCO RLEs into ``(words, boxes, areas)``: :func:`pack_rows` rows in pixel order
    ``"F"``, tight XYWH boxes and pixel counts, all from the runs, every mask at once.

    Strict: counts that do not cover exactly ``height * width`` pixels raise ``ValueError``.
    """
    n, words = len(rles), -(-height * width // 64)
    if not rles:
        return np.zeros((0, words), WORD), np.zeros((0, 4), np.int64), np.zeros(0, np.int64)
    start, stop, owner = _rle_runs(rles, height, width)
    areas = np.bincount(owner, weights=stop - start, minlength=n).astype(np.int64)
    return (_runs_to_words(start, stop, owner, n, words), _runs_to_boxes(start, stop, owner, n, height), areas)
