"""``MaskSet``: dense and bit-packed forms, each made from the other, and what is computed on the bits."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sepl_tree.label_maps import label_values
from sepl_tree.masks import MaskSet, flat_masks, masks_to_bbox_xywh, pack_rows, unpack_rows


def _column_major(masks: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(masks.transpose(0, 2, 1)).transpose(0, 2, 1)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 5).flatmap(lambda n: st.tuples(st.integers(1, 9), st.integers(1, 70)).flatmap(
    lambda hw: hnp.arrays(bool, (n, *hw)))), st.booleans())
def test_dense_and_packed_forms_agree(masks, column_major):
    layout = _column_major(masks) if column_major else masks
    dense = MaskSet(layout)
    packed = MaskSet.from_packed(dense.packed, dense.shape, dense.order)
    np.testing.assert_array_equal(packed.masks, masks)  # unpacked in the same pixel order
    np.testing.assert_array_equal(packed.areas, masks.sum(axis=(1, 2)))
    np.testing.assert_array_equal(packed.boxes, masks_to_bbox_xywh(masks))
    assert len(packed) == len(masks) and packed.shape == masks.shape[1:]
    # padding bits beyond H*W stay zero, so counts on whole rows are exact
    assert not unpack_rows(dense.packed, dense.packed.shape[1] * 64)[:, masks.shape[1] * masks.shape[2]:].any()
    rng = np.random.default_rng(len(masks))
    chosen = rng.random(len(masks)) < 0.5
    expected = masks[chosen].any(axis=0) if chosen.any() else np.zeros(masks.shape[1:], bool)
    np.testing.assert_array_equal(packed.union(chosen), expected)
    np.testing.assert_array_equal(dense.union(np.flatnonzero(chosen)), expected)


def test_pixel_order_of_the_bits_follows_the_layout():
    m = np.zeros((1, 2, 3), bool)
    m[0, 1, 0] = True  # row 1, column 0: pixel 3 in row order, pixel 1 in column order
    assert np.flatnonzero(unpack_rows(MaskSet(m).packed, 6)[0]).tolist() == [3]
    col = MaskSet(_column_major(m))
    assert col.order == "F" and np.flatnonzero(unpack_rows(col.packed, 6)[0]).tolist() == [1]
    assert col.flat_label(np.arange(6).reshape(2, 3)).tolist() == [0, 3, 1, 4, 2, 5]
    assert flat_masks(_column_major(m))[0].tolist() == [[False, True, False, False, False, False]]


def test_bad_packed_input_and_records_are_refused():
    with pytest.raises(ValueError, match="packed must be"):
        MaskSet.from_packed(np.zeros((2, 3), np.uint64), (10, 10))  # 100 pixels need 2 words
    with pytest.raises(ValueError, match="order"):
        MaskSet.from_packed(pack_rows(np.zeros((1, 4), bool)), (2, 2), order="X")
    with pytest.raises(ValueError, match="one record per mask"):
        MaskSet(np.zeros((2, 2, 2), bool), [{}])
    with pytest.raises(ValueError, match="one record per mask"):
        MaskSet(np.zeros((2, 2, 2), bool), [])  # (an empty list is no records, not "none given")
    assert MaskSet(np.zeros((2, 2, 2), bool)).records == [{}, {}]
    with pytest.raises(ValueError, match="bool"):
        MaskSet(np.zeros((2, 2, 2), np.uint8))


@settings(max_examples=200, deadline=None)
@given(hnp.arrays(np.uint8, st.tuples(st.integers(0, 9), st.integers(0, 9))))
def test_label_values_are_the_distinct_values(label):
    assert label_values(label).tolist() == np.unique(label).tolist()
    assert label_values(label.T).tolist() == np.unique(label).tolist()  # non-contiguous input


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 4).flatmap(lambda n: hnp.arrays(bool, (n, 5, 40), elements=st.booleans() | st.just(False))),
       st.booleans())
def test_spans_hold_every_set_word(masks, column_major):
    """Word spans, from the words or from the boxes, hold every non-zero word of each row."""
    layout = _column_major(masks) if column_major else masks
    for maskset in (MaskSet(layout), MaskSet.from_packed(MaskSet(layout).packed, (5, 40), MaskSet(layout).order,
                                                         boxes=masks_to_bbox_xywh(masks))):
        lo, hi = maskset.spans
        for row, a, b in zip(maskset.packed, lo, hi):
            assert not row[:a].any() and not row[b:].any()
            assert b == a == 0 or (row[a:b].any() and a < b)


def test_built_in_strategies_never_unpack_masks_read_from_rle():
    """The hot path stays on the bits: no strategy makes the L x H x W dense masks."""
    from sepl_tree.masks import mask_to_rle, rle_to_maskset
    from sepl_tree.selection import Selector
    from sepl_tree.plugins import load_host
    from sepl_tree.sample import Sample

    rng = np.random.default_rng(3)
    pseudo = np.zeros((30, 40), np.uint8)
    pseudo[5:20, 8:30] = 2
    pseudo[22:28, :] = 255
    masks = np.zeros((4, 30, 40), bool)
    masks[0, 4:22, 6:32] = True  # an envelope
    masks[1, 5:20, 8:30] = True  # the object
    masks[2, 5:12, 8:18] = True  # a part
    masks[3] = rng.random((30, 40)) < 0.2
    rles = [mask_to_rle(m) for m in masks]
    host = load_host(autoload=False)
    for name in ("threshold", "official", "tree-smallest-cover", "tree-residual"):
        strategy = host.strategy(name)
        maskset = rle_to_maskset(rles, 30, 40)
        params = {p: v.default for p, v in strategy.params.items()}
        out = Selector(strategy, params).apply(Sample(pseudo, maskset))
        assert out.shape == pseudo.shape and (out == 2).any()
        assert not maskset.has_dense, name
    assert maskset.masks.shape == (4, 30, 40) and maskset.has_dense  # made on request
