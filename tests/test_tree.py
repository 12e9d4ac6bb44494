"""The containment tree on literal masks, and against a brute-force reading of its definition."""

import networkx as nx
import numpy as np
import pytest

from sepl_tree.masks import MaskSet, mask_to_rle, rle_to_masks, rle_to_maskset
from sepl_tree.tree import ancestors_of_class, any_descendant, build_tree, depths, parent_array
from tests.helpers import masks_from_strings


def containment_parents(masks, tau: float = 0.9) -> np.ndarray:
    """Each mask's parent in the tree (``-1`` for roots), for literal comparisons."""
    maskset = masks if isinstance(masks, MaskSet) else MaskSet(np.asarray(masks, bool))
    return parent_array(build_tree(maskset, tau), len(maskset))


def reference_parents(masks: np.ndarray, tau: float) -> list[int]:
    """The definition read literally: smallest (area, index) among the qualifying larger masks."""
    area = masks.reshape(len(masks), -1).sum(axis=1)
    out = []
    for c in range(len(masks)):
        qualifying = [(area[p], p) for p in range(len(masks)) if p != c
                      and (masks[p] & masks[c]).sum() >= tau * area[c] - 1e-9
                      and (area[p], p) > (area[c], c)]
        out.append(min(qualifying)[1] if qualifying else -1)
    return out


def test_nested_masks_form_a_chain_with_depths():
    masks = masks_from_strings(["########"], ["####...."], ["##......"])
    tree = build_tree(MaskSet(masks))
    assert sorted(tree.edges) == [(0, 1), (1, 2)]
    assert [tree.nodes[i]["depth"] for i in range(3)] == [0, 1, 2]
    assert [tree.nodes[i]["area"] for i in range(3)] == [8, 4, 2]
    assert tree.nodes[1]["bbox"] == (0, 0, 4, 1)
    assert nx.is_branching(tree)


def test_parent_is_the_smallest_container_not_the_largest():
    # Mask 2 is inside both 0 and 1; its parent is 1, the smaller of the two.
    masks = masks_from_strings(["######"], ["###..."], [".#...."])
    assert containment_parents(masks).tolist() == [-1, 0, 1]


def test_disjoint_masks_are_all_roots():
    masks = masks_from_strings(["##...."], ["..##.."], ["....##"])
    tree = build_tree(MaskSet(masks))
    assert tree.number_of_nodes() == 3 and tree.number_of_edges() == 0


def test_equal_masks_nest_by_index():
    # Identical masks: (area, index) decides, so the higher index is the parent of the lower.
    masks = masks_from_strings(["###."], ["###."], ["###."])
    assert containment_parents(masks).tolist() == [1, 2, -1]


def test_equal_area_partial_overlap_uses_index_order():
    # Same area 4, overlap 3 of 4 = 0.75: a parent for tau = 0.75, none for tau = 0.9.
    masks = masks_from_strings(["####."], [".####"])
    assert containment_parents(masks, tau=0.75).tolist() == [1, -1]
    assert containment_parents(masks, tau=0.9).tolist() == [-1, -1]


@pytest.mark.parametrize("tau, expected", [(0.7, [-1, 0]), (0.71, [-1, -1]), (1.0, [-1, -1]), (0.0, [-1, 0])])
def test_tau_boundary_is_inclusive(tau, expected):
    # Mask 1 has 10 pixels, 7 of them inside mask 0 (12 pixels): exactly tau = 0.7 qualifies (>=).
    masks = masks_from_strings(["############......"], [".....##########..."])
    assert containment_parents(masks, tau=tau).tolist() == expected


def test_tau_one_needs_full_containment():
    masks = masks_from_strings(["#####"], ["####."], ["....#"])
    assert containment_parents(masks, tau=1.0).tolist() == [-1, 0, 0]


def test_tau_zero_chains_every_mask_by_rank():
    masks = masks_from_strings(["##...."], ["...###"], ["#....."])
    # Ranks by (area, index): 2 (1 px) < 0 (2 px) < 1 (3 px); tau = 0 links each to the next.
    assert containment_parents(masks, tau=0.0).tolist() == [1, -1, 0]


def test_empty_masks_hang_below_the_next_ranked_mask():
    masks = masks_from_strings(["...."], ["##.."], ["...."])
    # (0,0) < (0,2) < (2,1): the empty mask 0's parent is empty mask 2, whose parent is mask 1.
    assert containment_parents(masks).tolist() == [2, -1, 1]
    assert nx.is_branching(build_tree(MaskSet(masks)))


def test_no_masks_and_one_mask():
    assert build_tree(MaskSet.empty(3, 4)).number_of_nodes() == 0
    tree = build_tree(MaskSet(masks_from_strings(["#."])))
    assert list(tree.nodes) == [0] and tree.nodes[0]["depth"] == 0


def test_scores_become_node_attributes_where_known():
    masks = masks_from_strings(["###"], ["#.."])
    tree = build_tree(MaskSet(masks, [{"predicted_iou": 0.9, "stability_score": 0.95}, {"predicted_iou": "nan"}]))
    assert tree.nodes[0]["predicted_iou"] == 0.9 and tree.nodes[0]["stability_score"] == 0.95
    assert "predicted_iou" not in tree.nodes[1] and "stability_score" not in tree.nodes[1]


@pytest.mark.parametrize("value", [0.9, 1, np.float32(0.5), float("inf"), True, "0.9", None, [0.9]])
def test_the_tree_and_the_strategies_scores_read_a_field_alike(value):
    """A tree strategy and a flat one must not see two scores for one mask."""
    from sepl_tree.prompts import mask_scores

    records = [{"predicted_iou": value, "stability_score": 0.25}]
    node = build_tree(MaskSet(masks_from_strings(["#."]), records)).nodes[0]
    assert node.get("predicted_iou", node["stability_score"]) == mask_scores(records)[0]


def test_level_becomes_a_node_attribute_where_known():
    masks = masks_from_strings(["###"], ["#.."], ["##."])
    tree = build_tree(MaskSet(masks, [{"level": 1}, {"level": 0}, {"level": "2"}]))
    assert [tree.nodes[i].get("level") for i in range(3)] == [1, 0, None]  # a level must be an int


def test_node_attributes_are_scalars_or_tuples():
    tree = build_tree(MaskSet(masks_from_strings(["###"], ["#.."])))
    for _, attrs in tree.nodes(data=True):
        assert all(isinstance(v, (int, float, tuple)) for v in attrs.values())


def test_column_major_masks_give_the_same_tree():
    rng = np.random.default_rng(3)
    masks = rng.random((12, 9, 11)) < 0.5
    masks[5] = masks[2] | masks[7]
    decoded = rle_to_masks([mask_to_rle(m) for m in masks], 9, 11)
    assert not decoded.flags.c_contiguous
    assert containment_parents(decoded).tolist() == containment_parents(masks).tolist()
    assert containment_parents(masks).tolist() == reference_parents(masks, 0.9)


@pytest.mark.parametrize("seed", range(40))
def test_random_boxes_match_the_definition(seed):
    rng = np.random.default_rng(seed)
    n, h, w = int(rng.integers(2, 14)), int(rng.integers(2, 10)), int(rng.integers(2, 10))
    masks = np.zeros((n, h, w), bool)
    for i in range(n):
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        y1, x1 = rng.integers(y0, h) + 1, rng.integers(x0, w) + 1
        masks[i, y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) < 0.9
    tau = float(rng.choice([0.0, 0.5, 0.8, 0.9, 1.0]))
    tree = build_tree(MaskSet(masks), tau=tau)
    assert nx.is_branching(tree)
    assert parent_array(tree).tolist() == reference_parents(masks, tau)
    for p, c in tree.edges:
        assert tree.nodes[c]["depth"] == tree.nodes[p]["depth"] + 1


def test_depths_and_parent_array():
    tree = nx.DiGraph([(3, 0), (0, 1), (0, 2)])
    tree.add_node(4)
    parents = parent_array(tree)
    assert parents.tolist() == [3, 0, 0, -1, -1]
    assert depths(parents).tolist() == [1, 2, 2, 0, 0]


def test_class_walks():
    # 0 > 1 > 2 > 3 with classes 1, 2, 1, 1
    tree = nx.DiGraph([(0, 1), (1, 2), (2, 3)])
    assigned = np.array([1, 2, 1, 1])
    assert ancestors_of_class(tree, 3, assigned) == [2, 0]
    assert ancestors_of_class(tree, 1, assigned) == []
    flags = np.array([0, 0, 0, 1], bool)
    assert any_descendant(tree, flags, assigned).tolist() == [True, False, True, False]
    assert any_descendant(tree, flags).tolist() == [True, True, True, False]


def test_any_descendant_ignores_unassigned_nodes():
    tree = nx.DiGraph([(0, 1)])
    assert any_descendant(tree, np.array([0, 1], bool), np.array([-1, -1])).tolist() == [False, False]


@pytest.mark.parametrize("layout", ["c", "column-major"])
def test_node_boxes_and_areas_match_the_masks(layout):
    from sepl_tree.masks import masks_to_bbox_xywh

    rng = np.random.default_rng(7)
    masks = np.zeros((9, 13, 70), bool)  # 910 pixels: not a multiple of 64, boxes at the edges
    for i in range(8):
        y0, x0 = rng.integers(0, 13), rng.integers(0, 70)
        masks[i, y0:y0 + rng.integers(1, 13), x0:x0 + rng.integers(1, 70)] = True
    masks[3, -1, -1] = masks[4, 0, 0] = True  # the very last and first pixels
    if layout != "c":
        masks = np.ascontiguousarray(masks.transpose(0, 2, 1)).transpose(0, 2, 1)
    tree = build_tree(MaskSet(masks))
    boxes = masks_to_bbox_xywh(masks)
    for i in range(9):
        assert tree.nodes[i]["bbox"] == tuple(int(v) for v in boxes[i])
        assert tree.nodes[i]["area"] == int(masks[i].sum())
    assert tree.nodes[8]["bbox"] == (0, 0, 0, 0)  # the empty mask


def test_small_gather_budget_gives_the_same_parents(monkeypatch):
    import sepl_tree.tree as tree_module

    rng = np.random.default_rng(11)
    masks = rng.random((15, 20, 40)) < 0.3
    masks[3] = masks[1] | masks[2]
    masks[9] = masks[3] | masks[4]
    expected = reference_parents(masks, 0.9)
    assert containment_parents(masks).tolist() == expected
    monkeypatch.setattr(tree_module, "_GATHER_BUDGET", 3)  # one pair per chunk
    assert containment_parents(masks).tolist() == expected


def test_packed_and_dense_sets_give_the_same_tree():
    """A set held as bits (as read from RLE, boxes from the runs) builds the tree a dense set does."""
    rng = np.random.default_rng(5)
    masks = rng.random((10, 9, 70)) < 0.4
    masks[6] = masks[1] | masks[2]
    masks[8] = False  # an empty mask
    masks[4, :, :30] = False  # a box that does not start at column 0
    dense = build_tree(MaskSet(masks))
    read = rle_to_maskset([mask_to_rle(m) for m in masks], 9, 70)
    for maskset in (read, MaskSet.from_packed(read.packed, (9, 70), "F"),
                    MaskSet(np.ascontiguousarray(masks.transpose(0, 2, 1)).transpose(0, 2, 1))):
        tree = build_tree(maskset)
        assert sorted(tree.edges) == sorted(dense.edges)
        assert dict(tree.nodes(data=True)) == dict(dense.nodes(data=True))


@pytest.mark.parametrize("tau, expected", [(0.56, [-1, 0]), (0.57, [-1, -1])])
def test_a_decimal_tau_is_met_exactly_despite_float_rounding(tau, expected):
    # child 25 pixels, 14 of them inside the 30-pixel parent: 0.56 * 25 = 14.000000000000002
    masks = masks_from_strings(["...........##############################........."],
                               ["#########################........................."])
    assert containment_parents(masks, tau=tau).tolist() == expected
