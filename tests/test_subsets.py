"""Failure subsets on hand-built label maps, masks and trees."""

from collections import deque

import networkx as nx
import numpy as np
import pytest

from sepl_tree.masks import MaskSet
from sepl_tree.sample import Sample
from sepl_tree.morphology import connected_components
from sepl_tree.subsets import (
    SUBSETS,
    compute_subsets,
    envelopes,
    nested_chains,
    pseudo_failures,
    sam_merges,
    sam_misses,
    subset_names,
)
from tests.helpers import VOC_SAMPLE, needs_voc_sample

H = W = 40  # 1600 pixels: the 0.1 % floor is 2 pixels


def box(y0, y1, x0, x1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


def label(*regions):
    out = np.zeros((H, W), np.uint8)
    for k, region in regions:
        out[region] = k
    return out


def sample(pseudo, masks):
    return Sample(pseudo, MaskSet(np.array(masks, bool).reshape(-1, H, W)), 21)


# ------------------------------------------------------------------------------ pseudo-failure


def test_pseudo_failure_flags_a_class_absent_from_gt():
    gt = label((1, box(0, 10, 0, 10)))
    pseudo = label((1, box(0, 10, 0, 10)), (2, box(20, 25, 20, 25)))
    assert pseudo_failures(pseudo, gt, 21) == {"absent": [2], "missed": []}


def test_pseudo_failure_ignores_a_speck_below_the_floor():
    gt = label((1, box(0, 10, 0, 10)))
    pseudo = label((1, box(0, 10, 0, 10)), (2, box(20, 21, 20, 21)))  # 1 pixel < 2
    assert pseudo_failures(pseudo, gt, 21) == {"absent": [], "missed": []}


def test_pseudo_failure_flags_a_class_mostly_missed_but_not_exactly_half():
    gt = label((1, box(0, 10, 0, 10)))
    assert pseudo_failures(label((1, box(0, 4, 0, 10))), gt, 21)["missed"] == [{"class": 1, "recall": 0.4}]
    assert pseudo_failures(label((1, box(0, 5, 0, 10))), gt, 21)["missed"] == []


def test_pseudo_failure_does_not_count_ignore_as_a_class():
    gt = label((1, box(0, 10, 0, 10)))
    gt[20:30, 20:30] = 255
    pseudo = label((1, box(0, 10, 0, 10)))
    pseudo[30:35, 30:35] = 255
    assert pseudo_failures(pseudo, gt, 21) == {"absent": [], "missed": []}


# ---------------------------------------------------------------------------------- components


def _bfs_components(mask):
    seen = np.zeros(mask.shape, int)
    n = 0
    for y, x in zip(*np.nonzero(mask)):
        if seen[y, x]:
            continue
        n += 1
        seen[y, x] = n
        queue = deque([(y, x)])
        while queue:
            cy, cx = queue.popleft()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx_ = cy + dy, cx + dx
                    if 0 <= ny < mask.shape[0] and 0 <= nx_ < mask.shape[1] and mask[ny, nx_] and not seen[ny, nx_]:
                        seen[ny, nx_] = n
                        queue.append((ny, nx_))
    return seen, n


def _same_partition(a, b):
    pairs = {(int(x), int(y)) for x, y in zip(a.ravel(), b.ravel())}
    return len(pairs) == len({p[0] for p in pairs}) == len({p[1] for p in pairs})


@pytest.mark.parametrize("seed", range(8))
def test_connected_components_matches_a_flood_fill(seed):
    mask = np.random.default_rng(seed).random((23, 31)) < 0.45
    labels, n = connected_components(mask, connectivity=8)
    ref, ref_n = _bfs_components(mask)
    assert n == ref_n
    assert ((labels > 0) == mask).all()
    assert _same_partition(labels, ref)


def test_connected_components_joins_diagonal_neighbours_and_u_shapes():
    mask = np.array([[1, 0, 1],
                     [1, 0, 1],
                     [1, 1, 1],
                     [0, 0, 0],
                     [0, 0, 1]], bool)
    labels, n = connected_components(mask, connectivity=8)
    assert n == 2
    assert labels[0, 0] == labels[0, 2] != labels[4, 2]


# ------------------------------------------------------------------------------------ sam-miss


def test_sam_miss_not_flagged_when_a_mask_matches_the_object():
    gt = label((1, box(0, 10, 0, 10)))
    assert sam_misses(np.array([box(0, 10, 0, 10)]), gt, 21) == []


def test_sam_miss_flags_an_object_seen_only_as_parts():
    gt = label((1, box(0, 10, 0, 10)))
    parts = np.array([box(0, 4, 0, 10), box(4, 10, 0, 10)])  # IoU 0.4 and 0.6
    assert sam_misses(parts, gt, 21) == []
    parts = np.array([box(0, 4, 0, 10), box(4, 8, 0, 10)])  # IoU 0.4 and 0.4
    assert sam_misses(parts, gt, 21) == [{"class": 1, "pixels": 100, "best_iou": 0.4, "best_mask": 0}]


def test_sam_miss_looks_at_each_connected_region_and_skips_ignore_pixels():
    gt = label((1, box(0, 10, 0, 10)), (1, box(20, 30, 20, 30)))
    gt[10:12, 0:10] = 255  # ignore band: a mask spilling into it is not penalised
    masks = np.array([box(0, 12, 0, 10)])
    assert sam_misses(masks, gt, 21) == [{"class": 1, "pixels": 100, "best_iou": 0.0, "best_mask": 0}]


def test_sam_miss_without_masks_flags_every_object():
    gt = label((1, box(0, 10, 0, 10)), (2, box(20, 30, 20, 30)))
    found = sam_misses(np.zeros((0, H, W), bool), gt, 21)
    assert [f["class"] for f in found] == [1, 2] and all(f["best_mask"] == -1 for f in found)


# ----------------------------------------------------------------------------------- sam-merge


def test_sam_merge_flags_a_mask_over_two_object_classes_only():
    gt = label((1, box(0, 10, 0, 10)), (2, box(0, 10, 10, 20)))
    masks = np.array([
        box(0, 10, 0, 20),   # half class 1, half class 2: merge
        box(0, 10, 0, 11),   # class 2 holds 1/11 < 0.2: no
        box(0, 20, 0, 10),   # class 1 and background: not a merge
    ])
    assert sam_merges(masks, gt, 21) == [{"mask": 0, "classes": [1, 2]}]


# ------------------------------------------------------------------------------------ envelope


def _envelope_case():
    obj = box(10, 20, 10, 20)
    gt = label((1, obj))
    pseudo = label((1, obj))
    masks = [box(0, 40, 0, 40), obj]  # the whole image envelops the object
    return gt, pseudo, masks


def test_envelope_flags_a_kept_parent_mostly_outside_its_class():
    gt, pseudo, masks = _envelope_case()
    s = sample(pseudo, masks)
    assert s.sepl_keep().tolist() == [True, True]  # o_p = 1 > 0.85 keeps the envelope
    found = envelopes(s, nx.DiGraph([(0, 1)]), gt)
    assert found == [{"mask": 0, "class": 1, "inside": 0.0625, "background": 0.9375, "descendants": 1}]


def test_envelope_needs_descendants_and_selection():
    gt, pseudo, masks = _envelope_case()
    s = sample(pseudo, masks)
    flat_tree = nx.DiGraph()
    flat_tree.add_nodes_from([0, 1])
    assert envelopes(s, flat_tree, gt) == []
    assert envelopes(s, nx.DiGraph([(0, 1)]), gt, t2=1.0) == []  # not kept by threshold


def test_envelope_not_flagged_for_a_wrong_class_mask():
    # The pseudo-label calls the object class 2; GT says class 1. The kept parent is mostly
    # class 1 in GT: a class confusion, not an envelope.
    obj = box(10, 30, 10, 30)
    gt, pseudo = label((1, obj)), label((2, box(12, 28, 12, 28)))
    s = sample(pseudo, [box(8, 32, 8, 32), box(12, 28, 12, 28)])
    assert s.sepl_keep()[0]
    assert envelopes(s, nx.DiGraph([(0, 1)]), gt) == []
    gt_bg = label((1, box(10, 14, 10, 14)))  # the same masks over mostly background: an envelope
    assert [e["mask"] for e in envelopes(s, nx.DiGraph([(0, 1)]), gt_bg)] == [0]


def test_envelope_not_flagged_when_the_parent_is_mostly_its_class():
    obj = box(0, 30, 0, 30)
    gt, pseudo = label((1, obj)), label((1, obj))
    s = sample(pseudo, [box(0, 32, 0, 32), box(0, 10, 0, 10)])
    assert envelopes(s, nx.DiGraph([(0, 1)]), gt) == []


# -------------------------------------------------------------------------------------- nested


def test_nested_counts_links_of_one_class_through_other_classes():
    tree = nx.DiGraph([(0, 1), (1, 2), (2, 3)])
    assert nested_chains(np.array([1, 2, 1, 1]), tree) == [{"class": 1, "depth": 2}]
    assert nested_chains(np.array([1, 2, 1, 2]), tree) == []  # class 1: one link; class 2: one link


def test_nested_ignores_unassigned_masks_and_siblings():
    tree = nx.DiGraph([(0, 1), (0, 2), (0, 3)])
    assert nested_chains(np.array([1, 1, 1, 1]), tree) == []
    assert nested_chains(np.array([-1, -1, -1, -1]), nx.DiGraph([(0, 1), (1, 2)])) == []


# --------------------------------------------------------------------------------------- combine


def test_compute_subsets_flags_and_details():
    gt, pseudo, masks = _envelope_case()
    s = sample(pseudo, masks)
    assert list(s.tree().edges) == [(0, 1)]  # the whole image holds the object
    result = compute_subsets(s, gt)
    assert list(result.flags) == list(SUBSETS)
    assert result.flags == {"all": True, "pseudo-failure": False, "sam-miss": False, "sam-merge": False,
                            "envelope": True, "nested": False}
    assert set(result.details) == {"envelope"}


def test_compute_subsets_gt_free_and_errors():
    gt, pseudo, masks = _envelope_case()
    s = sample(pseudo, masks)
    assert compute_subsets(s, None, names=["all", "nested"]).flags == {"all": True, "nested": False}
    with pytest.raises(ValueError, match="need ground truth"):
        compute_subsets(s, None)
    with pytest.raises(ValueError, match="unknown subset"):
        compute_subsets(s, gt, names=["bogus"])


def test_subset_names_keeps_report_order_and_all():
    assert subset_names(None) == SUBSETS
    assert subset_names(["nested", "sam-miss"]) == ("all", "sam-miss", "nested")
    with pytest.raises(ValueError):
        subset_names(["nope"])


# ------------------------------------------------------------------------------ real VOC sample

VOC = VOC_SAMPLE


@needs_voc_sample
def test_pseudo_failure_on_real_transcam_labels_matches_a_plain_count():
    from sepl_tree.files import read_label_png

    ids = sorted(p.stem for p in (VOC / "pseudo_labels" / "transcam").glob("*.png"))[:40]
    flagged = 0
    for image_id in ids:
        pseudo = read_label_png(VOC / "pseudo_labels" / "transcam" / f"{image_id}.png", 21)
        gt = read_label_png(VOC / "SegmentationClass" / f"{image_id}.png", 21)
        found = pseudo_failures(pseudo, gt, 21)
        missed = {m["class"] for m in found["missed"]}
        for k in range(1, 21):
            in_gt = int((gt == k).sum())
            if in_gt:
                recall = int(((gt == k) & (pseudo == k)).sum()) / in_gt
                assert (k in missed) == (recall < 0.5)
            elif (pseudo == k).sum() >= np.ceil(0.001 * gt.size):
                assert k in found["absent"]
        flagged += bool(missed or found["absent"])
    assert 0 < flagged < len(ids)  # real CAM labels fail on some images, not all


@pytest.mark.parametrize("seed", range(4))
def test_gt_counts_match_a_plain_count_per_mask(seed):
    from sepl_tree.subsets import _gt_counts

    rng = np.random.default_rng(seed)
    gt = rng.choice(np.array([0, 1, 2, 5, 255], np.uint8), size=(H, W))
    masks = rng.random((6, H, W)) < 0.3
    masks = masks.transpose(0, 2, 1).copy().transpose(0, 2, 1) if seed % 2 else masks  # column-major too
    inter, valid = _gt_counts(masks, gt, 21)
    for m in range(len(masks)):
        values = gt[masks[m]]
        assert valid[m] == np.count_nonzero(values != 255)
        assert inter[m].tolist() == np.bincount(values[values != 255], minlength=21).tolist()


def test_sam_miss_handles_more_regions_than_one_uint8_map_holds():
    gt = np.zeros((60, 60), np.uint8)
    for y in range(0, 60, 3):
        for x in range(0, 60, 3):
            gt[y:y + 2, x:x + 2] = 1  # 400 separate 2x2 objects, each at the 4-pixel floor
    mask = np.zeros((1, 60, 60), bool)
    mask[0, 57:59, 57:59] = True  # matches the last object exactly
    found = sam_misses(mask, gt, 21)
    assert len(found) == 399
    assert all(f["best_iou"] == 0.0 and f["pixels"] == 4 for f in found)


def test_subsets_decided_together_are_those_decided_one_by_one():
    # compute_subsets counts each mask's GT pixels once for sam-miss, sam-merge and envelope
    from sepl_tree.demo import make_scene

    rng = np.random.default_rng(5)
    hits = dict.fromkeys(SUBSETS, 0)
    for _ in range(12):
        scene = make_scene(rng)
        s = Sample(scene.pseudo, scene.masks, 21)
        together = compute_subsets(s, scene.gt)
        tree = s.tree(0.9)
        alone = {"sam-miss": sam_misses(s.masks, scene.gt, 21), "sam-merge": sam_merges(s.masks, scene.gt, 21),
                 "envelope": envelopes(s, tree, scene.gt)}
        for name, found in alone.items():
            assert together.details.get(name, []) == found
            assert compute_subsets(s, scene.gt, names=[name]).details.get(name, []) == found
            hits[name] += bool(found)
    assert hits["envelope"] and hits["sam-merge"], hits  # the scenes exercise the shared counts


def test_envelope_background_is_a_share_of_the_whole_mask_against_half_of_the_rest():
    # a 100-pixel mask: 20 class 1, 35 class 2, 45 background; 0.45 >= 0.5 * (1 - 0.2) = 0.4
    gt = label((1, box(0, 2, 0, 10)), (2, box(2, 5, 0, 10)), (2, box(5, 6, 0, 5)))
    s = sample(label((1, box(0, 2, 0, 10))), [box(0, 10, 0, 10), box(0, 2, 0, 10)])
    found = envelopes(s, nx.DiGraph([(0, 1)]), gt)
    assert found == [{"mask": 0, "class": 1, "inside": 0.2, "background": 0.45, "descendants": 1}]


def test_a_mask_of_iou_exactly_one_half_matches_a_gt_region():
    assert sam_misses(np.array([box(0, 5, 0, 10)]), label((1, box(0, 10, 0, 10))), 21) == []
