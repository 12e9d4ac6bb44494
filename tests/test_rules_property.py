"""Property tests: the vectorised ``threshold``, ``official`` and ``tree-prompt`` against plain per-mask loops.

The loops live in ``tests/loop_rules.py`` (the benchmark times the same code). Inputs are
small random label maps with classes 0..K-1 and 255, random masks (empty, full, copies of a
class, noise) in both memory layouts the readers produce, and thresholds that often sit exactly
on a ratio, so ties and the ``>`` / ``>=`` boundaries are exercised.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sepl_tree.masks import (MaskSet, mask_to_rle, masks_to_bbox_xywh, read_masks, rle_to_masks, rle_to_maskset,
                             write_masks_png_folder, write_masks_rle)
from sepl_tree.overlap import assign_masks, compute_overlap
from sepl_tree.sample import Sample
from sepl_tree.strategies.official import official
from sepl_tree.strategies.threshold import threshold
from sepl_tree.strategies.tree_prompt import tree_prompt
from tests import loop_rules as loop



# Thresholds on common ratios (1/2, 1/3, 3/4 ...) hit the '>' vs '>=' boundaries on small maps.
RATIOS = st.sampled_from([0.0, 0.2, 0.25, 1 / 3, 0.5, 2 / 3, 0.75, 0.8, 0.85, 1.0]) | st.floats(0.0, 1.0)


@st.composite
def scenes(draw, max_side: int = 7, max_masks: int = 9):
    """``(pseudo, masks, num_classes)`` with masks as C-order ``bool (L, H, W)``."""
    k = draw(st.integers(2, 5))
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    values = st.sampled_from([*range(k), 255])
    pseudo = draw(hnp.arrays(np.uint8, (h, w), elements=values))
    masks = []
    for _ in range(draw(st.integers(0, max_masks))):
        kind = draw(st.sampled_from(["noise", "class", "class-noisy", "straddle", "subset", "empty", "full"]))
        if kind in ("straddle", "subset"):
            # 'straddle': n pixels of a class and n outside it (o_s = 1/2 exactly);
            # 'subset': part of a class (o_p on simple fractions such as 3/4).
            rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
            inside = np.flatnonzero(pseudo == draw(values))
            outside = np.setdiff1d(np.arange(h * w), inside)
            n = min(len(inside), len(outside)) if kind == "straddle" else len(inside)
            n = int(rng.integers(0, n + 1))
            mask = np.zeros(h * w, bool)
            mask[rng.choice(inside, n, replace=False)] = True
            if kind == "straddle":
                mask[rng.choice(outside, n, replace=False)] = True
            masks.append(mask.reshape(h, w))
        elif kind == "empty":
            masks.append(np.zeros((h, w), bool))
        elif kind == "full":
            masks.append(np.ones((h, w), bool))
        else:
            mask = pseudo == draw(values) if kind.startswith("class") else np.zeros((h, w), bool)
            if kind != "class":
                mask = mask ^ draw(hnp.arrays(bool, (h, w)))
            masks.append(mask)
    stack = np.stack(masks) if masks else np.zeros((0, h, w), bool)
    return pseudo, stack, k


LAYOUTS = st.sampled_from(["dense", "column-major", "rle"])


def _maskset(masks: np.ndarray, layout: str) -> MaskSet:
    """The masks as a set made from C-order arrays, from a column-major view, or as the RLE
    reader makes it (bits decoded straight from the runs, boxes from the runs)."""
    if layout == "dense":
        return MaskSet(masks)
    h, w = masks.shape[1:]
    rles = [mask_to_rle(m) for m in masks]
    if layout == "column-major":
        decoded = rle_to_masks(rles, h, w)
        np.testing.assert_array_equal(decoded, masks)
        return MaskSet(decoded)
    maskset = rle_to_maskset(rles, h, w)
    np.testing.assert_array_equal(maskset.boxes, masks_to_bbox_xywh(masks))
    np.testing.assert_array_equal(maskset.areas, masks.sum(axis=(1, 2)))
    return maskset


@settings(max_examples=400, deadline=None)
@given(scenes(), LAYOUTS, RATIOS, RATIOS)
def test_threshold_matches_per_mask_loop(scene, layout, t1, t2):
    pseudo, masks, k = scene
    expected = loop.loop_threshold(pseudo, masks, k, t1, t2)
    got = threshold(Sample(pseudo, _maskset(masks, layout), k), t1=t1, t2=t2)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=400, deadline=None)
@given(scenes(), LAYOUTS, RATIOS)
def test_official_matches_per_mask_loop(scene, layout, t2):
    pseudo, masks, k = scene
    expected = loop.loop_official(pseudo, masks, k, t2)
    got = official(Sample(pseudo, _maskset(masks, layout), k), t2=t2)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)


@st.composite
def prompt_records(draw, count: int):
    """Records as SAM writes them, or not: a prompt (of three points; or none), a score (often tied; or none)."""
    records = []
    for _ in range(count):
        rec: dict = {}
        point = draw(st.sampled_from([None, 0, 1, 2]))
        if point is not None:
            rec["point_coords"] = [[point + 0.5, 2.0 + draw(st.sampled_from([0.0, 0.0001]))]]  # rounds to one prompt
            rec["crop_box"] = [0, 0, 9, 9]
        score = draw(st.sampled_from([None, "stability", 0.9, 0.9, 0.8, 0.95]) | st.floats(0.0, 1.0))
        if score == "stability":
            rec["stability_score"] = 0.85
        elif score is not None:
            rec["predicted_iou"] = score
        records.append(rec)
    return records


@settings(max_examples=400, deadline=None)
@given(scenes(), LAYOUTS, RATIOS, RATIOS, st.data())
def test_tree_prompt_matches_per_mask_loop(scene, layout, t1, t2, data):
    pseudo, masks, k = scene
    records = data.draw(prompt_records(len(masks)))
    expected = loop.loop_tree_prompt(pseudo, masks, records, k, t1, t2)
    maskset = _maskset(masks, layout)
    maskset.records = records
    got = tree_prompt(Sample(pseudo, maskset, k), t1=t1, t2=t2)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, expected)


@settings(max_examples=300, deadline=None)
@given(scenes(), LAYOUTS)
def test_overlap_counts_match_per_mask_loop(scene, layout):
    pseudo, masks, k = scene
    ov = compute_overlap(_maskset(masks, layout), pseudo, k)
    classes = [c for c in range(1, k) if np.any(pseudo == c)]
    assert ov.classes.tolist() == classes
    assert ov.class_area.tolist() == [0] + [int(np.count_nonzero(pseudo == c)) for c in range(1, k)]
    assert ov.mask_area.tolist() == [int(np.count_nonzero(m)) for m in masks]
    for n, mask in enumerate(masks):
        assert ov.inter[n].tolist() == [0] + [int(np.count_nonzero(mask & (pseudo == c))) if c in classes else 0
                                              for c in range(1, k)]
    best = [max(classes, key=lambda c: (ov.inter[n, c], -c)) if classes else -1 for n in range(len(masks))]
    expected = [c if c >= 0 and ov.inter[n, c] > 0 else -1 for n, c in enumerate(best)]
    assert assign_masks(ov).tolist() == expected


def test_loop_and_fast_rules_disagree_on_a_wrong_threshold():
    """The comparison can fail: a different t1 changes the loop's answer on this input."""
    pseudo = np.array([[1, 1, 0, 0]], np.uint8)
    masks = np.array([[[1, 1, 1, 0]]], bool)  # o_s = 2/3
    sample = Sample(pseudo, MaskSet(masks), 3)
    assert threshold(sample, t1=0.5, t2=1.0).tolist() == [[1, 1, 1, 0]]
    assert loop.loop_threshold(pseudo, masks, 3, t1=0.7, t2=1.0).tolist() == [[1, 1, 0, 0]]


@pytest.mark.parametrize("layout", ["rle", "png"])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(scene=scenes(max_side=6, max_masks=5))
def test_rules_through_both_file_layouts(layout, scene):
    pseudo, masks, k = scene
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if layout == "rle":
            write_masks_rle(folder / "img.json", MaskSet(masks))
        else:
            write_masks_png_folder(folder / "img", MaskSet(masks))
        read = read_masks(folder, "img", shape=pseudo.shape)
    np.testing.assert_array_equal(read.masks, masks)
    sample = Sample(pseudo, read, k)
    np.testing.assert_array_equal(threshold(sample), loop.loop_threshold(pseudo, masks, k))
    np.testing.assert_array_equal(official(sample), loop.loop_official(pseudo, masks, k))
