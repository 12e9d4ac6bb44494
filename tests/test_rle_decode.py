"""The numpy COCO-RLE decoder (``rle_to_masks``) against pycocotools' own decoder."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from pycocotools import mask as mask_utils

from sepl_tree.masks import mask_to_rle, masks_to_bbox_xywh, pack_rows, rle_to_masks, rle_to_maskset


def _coco_decode(rles: list[dict], height: int, width: int) -> np.ndarray:
    coco = [{"size": r["size"], "counts": r["counts"].encode("ascii")} for r in rles]
    return mask_utils.decode(coco).transpose(2, 0, 1).astype(bool)


@st.composite
def mask_stacks(draw):
    h, w = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    masks = []
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["noise", "rect", "empty", "full"]))
        if kind == "noise":
            masks.append(draw(hnp.arrays(bool, (h, w))))
        elif kind == "rect":  # long runs: values of several 5-bit groups, negative deltas
            m = np.zeros((h, w), bool)
            y0, x0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
            m[y0 : draw(st.integers(y0 + 1, h)), x0 : draw(st.integers(x0 + 1, w))] = True
            masks.append(m)
        else:
            masks.append(np.full((h, w), kind == "full"))
    return np.stack(masks)


@settings(max_examples=300, deadline=None)
@given(mask_stacks())
def test_decode_matches_pycocotools_and_round_trips(masks):
    h, w = masks.shape[1:]
    rles = [mask_to_rle(m) for m in masks]
    decoded = rle_to_masks(rles, h, w)
    assert decoded.dtype == bool and decoded.shape == masks.shape
    np.testing.assert_array_equal(decoded, masks)
    np.testing.assert_array_equal(decoded, _coco_decode(rles, h, w))
    assert decoded.transpose(0, 2, 1).flags.c_contiguous  # the column-major view flat_masks expects


def test_decode_large_sam_sized_masks():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:375, :500]
    masks = np.stack([(yy - rng.uniform(0, 375)) ** 2 + (xx - rng.uniform(0, 500)) ** 2 < rng.uniform(1, 200) ** 2
                      for _ in range(30)] + [np.ones((375, 500), bool), np.zeros((375, 500), bool)])
    rles = [mask_to_rle(m) for m in masks]
    np.testing.assert_array_equal(rle_to_masks(rles, 375, 500), masks)
    np.testing.assert_array_equal(rle_to_masks(rles, 375, 500), _coco_decode(rles, 375, 500))


def test_decode_accepts_bytes_counts_and_empty_list():
    rle = mask_to_rle(np.array([[1, 0, 1]], bool))
    as_bytes = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    assert rle_to_masks([as_bytes], 1, 3).tolist() == [[[True, False, True]]]
    assert rle_to_masks([], 4, 5).shape == (0, 4, 5)


@pytest.mark.parametrize("counts, size", [
    ("", [2, 2]),       # no runs at all
    ("3", [2, 2]),      # runs cover 3 of 4 pixels
    ("05", [2, 2]),     # 0 + 5 > 4 pixels
    ("0g", [2, 2]),     # ends in the middle of a value (continuation bit set)
    ("0 4", [2, 2]),    # a character outside the alphabet
    ("4", [3, 3]),      # size differs from the one asked for
])
def test_corrupt_rle_raises(counts, size):
    with pytest.raises(ValueError):
        rle_to_masks([{"size": size, "counts": counts}], 2, 2)


def test_uncompressed_counts_are_refused():
    with pytest.raises(ValueError, match="compressed"):
        rle_to_masks([{"size": [1, 2], "counts": [1, 1]}], 1, 2)


@settings(max_examples=200, deadline=None)
@given(mask_stacks())
def test_decoded_bits_boxes_and_areas_match_the_dense_masks(masks):
    """Bits, boxes and areas come straight from the runs (runs that wrap into the next column
    included); they must equal what the dense masks give."""
    h, w = masks.shape[1:]
    read = rle_to_maskset([mask_to_rle(m) for m in masks], h, w)
    assert read.order == "F"
    np.testing.assert_array_equal(read.packed, pack_rows(masks.transpose(0, 2, 1).reshape(len(masks), -1)))
    np.testing.assert_array_equal(read.boxes, masks_to_bbox_xywh(masks))
    np.testing.assert_array_equal(read.areas, masks.sum(axis=(1, 2)))
