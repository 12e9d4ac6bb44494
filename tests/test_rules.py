"""The paper's rule (`threshold`) and the released code's rule (`official`) on literal arrays."""

import numpy as np
import pytest

from sepl_tree.strategies.official import official
from sepl_tree.strategies.threshold import threshold
from tests.helpers import make_sample, masks_from_strings


def test_threshold_keeps_mask_mostly_inside_pseudo_label():
    # P_1 covers 3 of the mask's 4 pixels: o_s = 0.75 > 0.5, so the whole mask becomes class 1.
    pseudo = [[1, 1, 1, 0, 0, 0]]
    masks = masks_from_strings(["####.."])
    assert threshold(make_sample(pseudo, masks)).tolist() == [[1, 1, 1, 1, 0, 0]]


def test_threshold_strict_inequality_on_o_s():
    # o_s = 2/4 = 0.5 is not > 0.5, and o_p = 2/3 is not > 0.85: dropped, P_1 kept as is.
    pseudo = [[0, 1, 1, 1, 0, 0]]
    masks = masks_from_strings(["..####"])
    assert threshold(make_sample(pseudo, masks)).tolist() == [[0, 1, 1, 1, 0, 0]]


def test_threshold_keeps_large_mask_covering_the_pseudo_label():
    # o_s = 2/6 but o_p = 2/2 > 0.85: the enveloping mask is kept (the paper's known failure).
    pseudo = [[0, 0, 1, 1, 0, 0]]
    masks = masks_from_strings(["######"])
    assert threshold(make_sample(pseudo, masks)).tolist() == [[1] * 6]


def test_threshold_parameters_change_the_decision():
    pseudo = [[0, 0, 1, 1, 0, 0]]
    masks = masks_from_strings(["######"])
    assert threshold(make_sample(pseudo, masks), t2=1.0).tolist() == [[0, 0, 1, 1, 0, 0]]


def test_assignment_ties_go_to_the_lowest_class():
    # The mask meets classes 2 and 1 with 2 pixels each: it goes to class 1 (o_s = 0.5, o_p = 1.0).
    pseudo = [[2, 2, 1, 1]]
    masks = masks_from_strings(["####"])
    out = threshold(make_sample(pseudo, masks))
    # Class 1 takes the whole mask; class 2 keeps nothing and falls back to P_2, painted later.
    assert out.tolist() == [[2, 2, 1, 1]]
    assert threshold(make_sample(pseudo, masks), t2=0.99).tolist() == [[2, 2, 1, 1]]


def test_later_class_wins_where_regions_overlap():
    pseudo = [[1, 1, 1, 2, 2, 2]]
    masks = masks_from_strings(["####..", "..####"])
    # Mask 0 -> class 1 (3 of 4), mask 1 -> class 2 (3 of 4); pixels 2-3 are in both: class 2 wins.
    assert threshold(make_sample(pseudo, masks)).tolist() == [[1, 1, 2, 2, 2, 2]]


def test_mask_touching_no_class_is_dropped_and_empty_mask_ignored():
    pseudo = [[1, 1, 0, 0]]
    masks = masks_from_strings(["..##", "...."])
    sample = make_sample(pseudo, masks)
    assert threshold(sample).tolist() == [[1, 1, 0, 0]]
    assert sample.assigned.tolist() == [-1, -1]  # no class overlaps either: neither is assigned


def test_no_masks_keeps_the_pseudo_label():
    pseudo = np.array([[1, 255, 0, 3]], np.uint8)
    sample = make_sample(pseudo, np.zeros((0, 1, 4), bool))
    assert threshold(sample).tolist() == [[1, 255, 0, 3]]


def test_ignore_pixels_stay_ignore_unless_covered():
    pseudo = [[1, 1, 255, 255, 0]]
    masks = masks_from_strings(["###.."])
    # The kept mask covers one 255 pixel; the other stays 255. 255 is never a class.
    assert threshold(make_sample(pseudo, masks)).tolist() == [[1, 1, 1, 255, 0]]


def test_background_is_not_a_class():
    # The mask is mostly background but touches class 1 once: it is assigned to class 1 and
    # o_s = 1/4, o_p = 1/1 > 0.85, so it is kept (0 never competes in the argmax).
    pseudo = [[0, 0, 0, 1]]
    masks = masks_from_strings(["####"])
    assert threshold(make_sample(pseudo, masks)).tolist() == [[1, 1, 1, 1]]


def test_official_mask_serves_only_the_first_class():
    # Mask 0 is 4/4 inside class 1, and also covers all of class 2's... it is taken by class 1.
    pseudo = [[1, 1, 1, 2, 0, 0]]
    masks = masks_from_strings(["####.."])
    # Class 1: 2*3-4 > 0, kept. Class 2: mask taken; U (free masks) is empty, so P_2 \ U = P_2.
    assert official(make_sample(pseudo, masks)).tolist() == [[1, 1, 1, 2, 0, 0]]


def test_official_keeps_p_k_only_outside_free_masks():
    # Class 1 keeps no mask: 2*1-3 <= 0 and 1/2 < 0.85. P_1 \ U keeps only the pixel outside the mask.
    pseudo = [[1, 0, 0, 0, 1]]
    masks = masks_from_strings(["###.."])
    assert official(make_sample(pseudo, masks)).tolist() == [[0, 0, 0, 0, 1]]


def test_official_inclusive_o_p_and_ignore_becomes_zero():
    pseudo = [[255, 1, 1, 1, 0, 0, 0, 0]]
    masks = masks_from_strings(["########"])
    # o_p = 3/3 >= 0.85: kept; input 255 becomes 0 where nothing is painted.
    assert official(make_sample(pseudo, masks)).tolist() == [[1] * 8]
    assert official(make_sample(pseudo, np.zeros((0, 1, 8), bool))).tolist() == [[0, 1, 1, 1, 0, 0, 0, 0]]


def test_official_differs_from_threshold_on_shared_masks():
    # One mask over classes 1 (3 px) and 2 (4 px). threshold assigns it to class 2 (the argmax)
    # and keeps it (o_s = 4/7); official offers it to class 1 first, which keeps it through
    # o_p = 3/3 and so takes it away from class 2.
    pseudo = [[1, 1, 1, 2, 2, 2, 2, 0]]
    masks = masks_from_strings(["#######."])
    assert threshold(make_sample(pseudo, masks)).tolist() == [[2, 2, 2, 2, 2, 2, 2, 0]]
    assert official(make_sample(pseudo, masks)).tolist() == [[1, 1, 1, 2, 2, 2, 2, 0]]


def test_masks_of_another_size_than_the_pseudo_label_are_one_clear_error():
    from sepl_tree.masks import MaskSet
    from sepl_tree.sample import Sample

    with pytest.raises(ValueError, match="masks of 3x4 for a pseudo-label of 3x5"):
        Sample(np.zeros((3, 5), np.uint8), MaskSet(np.zeros((2, 3, 4), bool)))


@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (5, 0)])
def test_an_image_without_pixels_is_one_clear_error(shape):
    from sepl_tree.masks import MaskSet
    from sepl_tree.sample import Sample

    with pytest.raises(ValueError, match=rf"the pseudo-label of image 'a' has no pixels \({shape[0]}x{shape[1]}\)"):
        Sample(np.zeros(shape, np.uint8), MaskSet(np.zeros((2, *shape), bool)), image_id="a")


def test_official_o_p_exactly_t2_keeps_the_mask():
    # |S ∩ P| = 3 of |P| = 4: o_p = 0.75, and 2 * 3 - 9 < 0, so only the inclusive o_p >= t2 keeps it
    masks = masks_from_strings(["###.######"])
    assert official(make_sample([[1, 1, 1, 1, 0, 0, 0, 0, 0, 0]], masks), t2=0.75).tolist() == [[1] * 10]
