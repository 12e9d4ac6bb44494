"""``tree-prompt``: one output per SAM prompt. Literal cases on hand-built prompts, the record
fields it reads, and where it is exactly ``threshold``. (Its per-mask reference loop is in
``tests/loop_rules.py``, compared on random inputs in ``tests/test_rules_property.py``.)"""

import numpy as np
import pytest

from sepl_tree.masks import MaskSet, mask_to_rle, rle_to_maskset
from sepl_tree.plugins import load_host
from sepl_tree.prompts import mask_scores, prompt_ids
from sepl_tree.sample import Sample
from sepl_tree.selection import Selector
from sepl_tree.strategies.threshold import threshold
from sepl_tree.strategies.tree_prompt import tree_prompt
from sepl_tree.synth import SynthConfig, synthesize_masks
from tests.helpers import masks_from_strings

POINT = [[3.5, 0.5]]


def prompt_sample(pseudo, masks, scores, point=POINT, key="predicted_iou", from_rle=False):
    """One image's sample whose masks are the outputs of one prompt (``scores[i]`` None: unscored)."""
    pseudo = np.asarray(pseudo, np.uint8)
    records = []
    for score in scores:
        rec = {"point_coords": point, "crop_box": [0, 0, pseudo.shape[1], pseudo.shape[0]]}
        if score is not None:
            rec[key] = score
        records.append(rec)
    if from_rle:
        maskset = rle_to_maskset([mask_to_rle(m) for m in masks], *pseudo.shape, records)
    else:
        maskset = MaskSet(np.asarray(masks, bool), records)
    return Sample(pseudo, maskset, 21)


def row(s):
    return [[4 if c == "4" else int(c) for c in s]]


# A boat (class 4, pixels 1..5) on the sea. One box prompt's three outputs, in SAM's level order:
# a part, the largest (boat and sea), the whole boat.
BOAT = row("044444000000")
THREE = masks_from_strings(["..###......."], ["##########.."], [".#####......"])


@pytest.mark.parametrize("from_rle", [False, True])
def test_three_outputs_of_one_prompt_keep_the_best_scored(from_rle):
    # All three pass threshold's test (part and whole on o_s, the largest on o_p = 1), so threshold
    # paints their union, boat and sea. SAM scores the whole best; the largest adds 0 and 6..9,
    # none of them in the pseudo-label, so the whole stays.
    sample = prompt_sample(BOAT, THREE, [0.80, 0.85, 0.93], from_rle=from_rle)
    assert threshold(sample).tolist() == row("444444444400")
    assert tree_prompt(sample).tolist() == row("044444000000")


def test_an_enveloping_output_scored_best_is_kept_as_threshold_keeps_it():
    # The rule trusts SAM's score: when SAM prefers the output with the sea, nothing larger is
    # left to try and it paints what threshold paints.
    sample = prompt_sample(BOAT, THREE, [0.80, 0.95, 0.93])
    assert tree_prompt(sample).tolist() == threshold(sample).tolist() == row("444444444400")


def test_a_larger_output_replaces_the_best_when_the_pseudo_label_holds_what_it_adds():
    # SAM scores the part best; the whole adds pixels 1 and 5, both in the pseudo-label
    # (share 1 > t1), so the whole replaces it; the largest then adds 0 and 6..9 (share 0): no.
    sample = prompt_sample(BOAT, THREE, [0.97, 0.85, 0.93])
    assert tree_prompt(sample).tolist() == row("044444000000")
    # With the part alone in the pseudo-label the whole adds pixels outside it: the part stays.
    part_only = row("000000000000")
    part_only[0][2:5] = [4, 4, 4]
    sample = prompt_sample(part_only, THREE, [0.97, 0.85, 0.93])
    assert tree_prompt(sample).tolist() == part_only


def test_a_part_only_activation_gets_the_whole_object_not_its_surroundings():
    # The CAM lights only the boat's bow (pixels 2..3). The whole boat (o_s = 2/5, o_p = 1) and
    # the largest (o_p = 1) pass through o_p; SAM's best-scored, the whole, is kept; the sea is not.
    bow = row("004400000000")
    sample = prompt_sample(bow, masks_from_strings(["..##........"], ["##########.."], [".#####......"]),
                           [0.80, 0.86, 0.93])
    assert threshold(sample).tolist() == row("444444444400")
    assert tree_prompt(sample).tolist() == row("044444000000")


def test_t1_reaches_the_growing_test():
    # The whole adds pixels 1 and 5 to the part; only 5 is in the pseudo-label (share 1/2).
    pseudo = row("004444000000")
    masks = masks_from_strings(["..###......."], [".#####......"])
    sample = prompt_sample(pseudo, masks, [0.97, 0.9])
    assert tree_prompt(sample, t1=0.5).tolist() == row("004440000000")  # 1/2 is not > 1/2
    assert tree_prompt(sample, t1=0.4).tolist() == row("044444000000")


def test_without_scores_it_keeps_the_largest_passing_output():
    sample = prompt_sample(BOAT, THREE, [None, None, None])
    assert tree_prompt(sample).tolist() == threshold(sample).tolist()
    # the largest of the kept: the whole when the largest fails threshold's test
    masks = masks_from_strings(["..###......."], ["############"], [".#####......"])
    sample = prompt_sample(row("044444000000"), masks, [None, None, None], )
    assert threshold(sample).tolist() == tree_prompt(sample).tolist()


def test_stability_score_stands_in_for_predicted_iou():
    sample = prompt_sample(BOAT, THREE, [0.80, 0.85, 0.93], key="stability_score")
    assert sample.scores.tolist() == [0.80, 0.85, 0.93]
    assert tree_prompt(sample).tolist() == row("044444000000")


def test_masks_without_a_point_are_each_their_own_prompt():
    sample = Sample(np.asarray(BOAT, np.uint8), MaskSet(THREE, [{"predicted_iou": s} for s in (0.8, 0.85, 0.93)]), 21)
    assert sample.prompts.tolist() == [-1, -1, -1]
    assert tree_prompt(sample).tolist() == threshold(sample).tolist()


def test_outputs_of_different_prompts_are_not_grouped():
    sample = prompt_sample(BOAT, THREE, [0.80, 0.85, 0.93])
    for n, rec in enumerate(sample.masks.records):
        rec["point_coords"] = [[float(n), 0.5]]
    assert tree_prompt(sample).tolist() == threshold(sample).tolist()


def test_outputs_of_one_prompt_on_two_classes_keep_one_each():
    # A prompt between a boat (4) and a person (15): the person alone, both, the boat alone.
    pseudo = [[4, 4, 4, 15, 15, 15, 0, 0]]
    masks = masks_from_strings(["...###.."], ["######.."], ["###....."])
    sample = prompt_sample(pseudo, masks, [0.9, 0.95, 0.9])
    assert sample.assigned.tolist() == [15, 4, 4]  # the pair ties 3:3 and goes to the lower class
    # class 4: the pair (best score) vs the boat alone; class 15: the person alone.
    assert tree_prompt(sample).tolist() == threshold(sample).tolist() == [[4, 4, 4, 15, 15, 15, 0, 0]]
    sample = prompt_sample(pseudo, masks, [0.9, 0.85, 0.9])
    assert tree_prompt(sample).tolist() == [[4, 4, 4, 15, 15, 15, 0, 0]]


def test_equal_score_and_size_keep_the_first():
    pseudo = row("044440000000")
    masks = masks_from_strings([".####......."], ["..####......"])
    sample = prompt_sample(pseudo, masks, [0.9, 0.9])
    assert tree_prompt(sample).tolist() == row("044440000000")
    sample = prompt_sample(pseudo, masks[::-1], [0.9, 0.9])
    assert tree_prompt(sample).tolist() == row("004444000000")


def test_prompt_ids_and_scores_from_records():
    records = [{"point_coords": [[1.0, 2.0]], "crop_box": [0, 0, 10, 10], "predicted_iou": 0.9},
               {"point_coords": [[1.0, 2.0]], "crop_box": [0, 0, 5, 5], "stability_score": 0.8},  # another crop
               {"point_coords": [[1.0004, 2.0]], "crop_box": [0, 0, 10, 10], "predicted_iou": "high"},
               {"point_coords": None, "predicted_iou": float("nan"), "stability_score": 0.7},
               {"point_coords": [], "predicted_iou": True}]
    assert prompt_ids(records).tolist() == [0, 1, 0, -1, -1]
    np.testing.assert_array_equal(mask_scores(records), [0.9, 0.8, np.nan, 0.7, np.nan])


def test_a_placeholder_point_on_many_masks_is_no_prompt():
    # Writers that fill a missing point with [[0, 0]] give every mask the same one: not SAM's prompt.
    masks = masks_from_strings(["..###......."], ["##########.."], [".#####......"], ["#..........."])
    sample = prompt_sample(BOAT, masks, [0.8, 0.85, 0.93, 0.99], point=[[0.0, 0.0]])
    assert sample.prompts.tolist() == [-1, -1, -1, -1]
    assert tree_prompt(sample).tolist() == threshold(sample).tolist()


def test_on_synthetic_prompts_it_differs_from_threshold_and_without_points_it_is_threshold():
    gt = np.zeros((48, 64), np.uint8)
    gt[8:30, 6:28], gt[20:44, 36:60] = 4, 15
    differ = 0
    for seed in range(6):
        masks = synthesize_masks(gt, None, np.random.default_rng(seed), SynthConfig(envelope_rate=1.0)).masks
        pseudo = gt.copy()
        pseudo[gt == 255] = 0
        sample = Sample(pseudo, masks, 21)
        differ += not np.array_equal(tree_prompt(sample), threshold(sample))
        bare = Sample(pseudo, MaskSet(masks.dense, [{"predicted_iou": r["predicted_iou"]} for r in masks.records]), 21)
        np.testing.assert_array_equal(tree_prompt(bare), threshold(bare))
    assert differ >= 3


def test_registered_with_its_parameters():
    strategy = load_host(autoload=False).strategy("tree-prompt")
    assert set(strategy.params) == {"t1", "t2"}
    assert strategy.params["t1"].default == 0.5 and strategy.params["t2"].default == 0.85
    assert all(p.help for p in strategy.params.values())
    records = [{"point_coords": POINT, "predicted_iou": s} for s in (0.80, 0.85, 0.93)]
    out = Selector(strategy, {"t1": 0.5, "t2": 0.85})(np.asarray(BOAT, np.uint8), MaskSet(THREE, records))
    assert out.tolist() == row("044444000000")


def test_a_score_or_point_too_large_for_a_float_is_no_score_or_point():
    """(JSON integers have no limit: 10**400 made the tree strategies and the subsets raise OverflowError.)"""
    from sepl_tree.prompts import prompt_ids, score_value

    assert score_value(10**400) is None
    assert prompt_ids([{"point_coords": [[10**400, 0]]}, {"point_coords": [[1, 2]]}]).tolist() == [-1, 0]
