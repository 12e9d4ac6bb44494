"""Tree-aware strategies: literal cases, a plain reference on random nested masks, registration."""

import networkx as nx
import numpy as np
import pytest

from sepl_tree.masks import MaskSet, mask_to_rle, rle_to_maskset
from sepl_tree.selection import Selector
from sepl_tree.plugins import load_host
from sepl_tree.sample import Sample
from sepl_tree.strategies.threshold import threshold
from sepl_tree.strategies.tree_smallest_cover import tree_smallest_cover
from sepl_tree.tree import build_tree
from tests import loop_rules as loop
from tests.helpers import masks_from_strings



def make_sample(pseudo, masks, num_classes=21, from_rle=False):
    """A sample; ``from_rle``: the masks as the RLE reader gives them (bits only)."""
    pseudo = np.asarray(pseudo, np.uint8)
    masks = np.asarray(masks, bool)
    if from_rle:
        maskset = rle_to_maskset([mask_to_rle(m) for m in masks], *pseudo.shape)
    else:
        maskset = MaskSet(masks)
    return Sample(pseudo, maskset, num_classes)


# A boat (class 4) on the sea: mask 0 is boat + sea, mask 1 the boat alone.
BOAT_PSEUDO = [[0, 0, 4, 4, 4, 0, 0, 0, 0, 0]]
BOAT_MASKS = masks_from_strings(["#########."], [".#####...."])


def test_threshold_keeps_the_enveloping_mask():
    assert threshold(make_sample(BOAT_PSEUDO, BOAT_MASKS)).tolist() == [[4] * 9 + [0]]


def test_smallest_cover_drops_the_enveloping_mask():
    # Mask 0: o_s = 3/9, o_p = 1 (kept by threshold through o_p only); its child mask 1 has
    # o_s = 3/5 and o_p = 1 as well, so mask 0 is dropped and only the boat mask remains.
    out = tree_smallest_cover(make_sample(BOAT_PSEUDO, BOAT_MASKS))
    assert out.tolist() == [[0, 4, 4, 4, 4, 4, 0, 0, 0, 0]]


def test_smallest_cover_keeps_parent_admitted_by_o_s():
    # The parent is mostly inside the class (o_s = 5/6 > t1): kept although its child covers it.
    pseudo = [[4, 4, 4, 4, 4, 0]]
    masks = masks_from_strings(["######"], ["#####."])
    assert tree_smallest_cover(make_sample(pseudo, masks)).tolist() == [[4] * 6]


def test_smallest_cover_ignores_descendants_of_another_class():
    masks = masks_from_strings(["#####...."], [".##......"])
    # Same class: the parent (o_s = 2/5, o_p = 1) yields to its child (o_s = 1, o_p = 1).
    sample = make_sample([[0, 4, 4, 0, 0, 0, 0, 0, 0]], masks)
    assert tree_smallest_cover(sample).tolist() == [[0, 4, 4, 0, 0, 0, 0, 0, 0]]
    # The parent goes to class 2 (3 pixels) and the child to class 4: no shadowing, as threshold.
    sample = make_sample([[2, 4, 4, 2, 2, 0, 0, 0, 0]], masks)
    assert sample.assigned.tolist() == [2, 4]
    assert tree_smallest_cover(sample).tolist() == threshold(sample).tolist() == [[2, 4, 4, 2, 2, 0, 0, 0, 0]]


def test_smallest_cover_needs_descendant_with_high_o_p():
    # The child covers only 2 of the 3 class pixels (o_p = 0.67): the parent stays.
    pseudo = [[0, 4, 4, 4, 0, 0, 0, 0]]
    masks = masks_from_strings(["#######."], [".##....."])
    sample = make_sample(pseudo, masks)
    assert tree_smallest_cover(sample).tolist() == threshold(sample).tolist() == [[4] * 7 + [0]]


def test_smallest_cover_parameters_reach_the_rule():
    # With t2 = 1.0 nothing is admitted through o_p, so the enveloping mask is not kept anyway.
    out = tree_smallest_cover(make_sample(BOAT_PSEUDO, BOAT_MASKS), t2=1.0)
    assert out.tolist() == threshold(make_sample(BOAT_PSEUDO, BOAT_MASKS), t2=1.0).tolist()
    # tau reaches the tree: the boat mask pokes out of the envelope (3 of its 4 pixels inside),
    # so it is the envelope's child only for tau <= 0.75, and only then does it shadow it.
    masks = masks_from_strings(["###########."], [".###.......#"])
    pseudo = [[0, 4, 4, 4, 0, 0, 0, 0, 0, 0, 0, 0]]
    sample = make_sample(pseudo, masks)
    assert sample.tree(0.9).number_of_edges() == 0 and sample.tree(0.7).number_of_edges() == 1
    assert tree_smallest_cover(sample, tau=0.9).tolist() == threshold(sample).tolist() == [[4] * 12]
    assert tree_smallest_cover(sample, tau=0.7).tolist() == [[0, 4, 4, 4, 0, 0, 0, 0, 0, 0, 0, 4]]


def test_sample_builds_each_tree_once_per_tau():
    sample = make_sample(BOAT_PSEUDO, BOAT_MASKS)
    assert sample.tree(0.9) is sample.tree() is sample.tree(0.9)
    assert sample.tree(0.5) is not sample.tree(0.9)
    assert list(sample.tree(0.9).edges) == list(build_tree(sample.masks, 0.9).edges) == [(0, 1)]


def reference_tree(masks: np.ndarray, area, tau: float):
    """The containment tree by its definition, pair by pair: the parent list and node -> descendants."""
    n = len(masks)
    parent = []
    for c in range(n):
        options = [(area[p], p) for p in range(n) if p != c and (area[p], p) > (area[c], c)
                   and (masks[p] & masks[c]).sum() >= tau * area[c] - 1e-9]
        parent.append(min(options)[1] if options else -1)

    def descendants(node):
        kids = [c for c in range(n) if parent[c] == node]
        return kids + [d for k in kids for d in descendants(k)]

    return parent, descendants


def reference_smallest_cover(pseudo: np.ndarray, masks: np.ndarray, t1: float, t2: float, tau: float) -> np.ndarray:
    """Plain loops over masks and pixels, without the package's vectorised helpers."""
    area = [int(m.sum()) for m in masks]
    assigned, o_s, o_p = loop.loop_ratios(pseudo, masks, 21)
    _, descendants = reference_tree(masks, area, tau)
    keep = []
    for i in range(len(masks)):
        if assigned[i] < 0:
            keep.append(False)
        elif o_s[i] > t1:
            keep.append(True)
        elif o_p[i] > t2:
            keep.append(not any(assigned[d] == assigned[i] and o_p[d] > t2 for d in descendants(i)))
        else:
            keep.append(False)
    return loop.loop_paint(pseudo, masks, keep, assigned, 21)


def random_nested_case(rng: np.random.Generator):
    """Objects in a pseudo-label, with masks for each: the object, parts, and boxes around it."""
    h, w = int(rng.integers(8, 16)), int(rng.integers(8, 16))
    pseudo = np.zeros((h, w), np.uint8)
    masks = []

    def box(y0, x0, y1, x1):
        m = np.zeros((h, w), bool)
        m[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
        if rng.random() < 0.3:
            m &= rng.random((h, w)) < 0.95  # a little jitter: containment no longer exact
        return m

    for _ in range(int(rng.integers(1, 4))):
        y0, x0 = int(rng.integers(0, h - 3)), int(rng.integers(0, w - 3))
        y1, x1 = y0 + int(rng.integers(2, 6)), x0 + int(rng.integers(2, 6))
        pseudo[y0:y1, x0:x1] = rng.integers(1, 4)
        for _ in range(int(rng.integers(0, 4))):
            kind = rng.random()
            if kind < 0.3:  # the object, give or take a pixel
                d = rng.integers(-1, 2, 4)
                masks.append(box(y0 + d[0], x0 + d[1], y1 + d[2], x1 + d[3]))
            elif kind < 0.7:  # around it, with background
                d = rng.integers(0, 5, 4)
                masks.append(box(y0 - d[0], x0 - d[1], y1 + d[2], x1 + d[3]))
            else:  # a part of it
                masks.append(box(y0, x0, y0 + int(rng.integers(1, y1 - y0 + 1)), x1))
    for _ in range(int(rng.integers(0, 4))):  # anything anywhere
        a, b = sorted(rng.integers(0, h + 1, 2))
        c, d = sorted(rng.integers(0, w + 1, 2))
        masks.append(box(a, c, b + 1, d + 1))
    pseudo[rng.random((h, w)) < 0.03] = 255
    return pseudo, np.array(masks, bool).reshape(-1, h, w)


def random_params(rng):
    return float(rng.choice([0.5, 0.3])), float(rng.choice([0.85, 0.6])), float(rng.choice([0.9, 0.75]))


@pytest.mark.parametrize("seed", range(60))
def test_smallest_cover_matches_plain_reference(seed):
    rng = np.random.default_rng(seed)
    pseudo, masks = random_nested_case(rng)
    t1, t2, tau = random_params(rng)
    sample = make_sample(pseudo, masks, from_rle=seed % 2 == 1)
    got = tree_smallest_cover(sample, t1=t1, t2=t2, tau=tau)
    np.testing.assert_array_equal(got, reference_smallest_cover(pseudo, masks, t1, t2, tau))


def test_random_cases_exercise_the_shadowing():
    # The reference comparison above is only meaningful if some cases differ from threshold.
    differ = 0
    for seed in range(60):
        rng = np.random.default_rng(seed)
        pseudo, masks = random_nested_case(rng)
        t1, t2, tau = random_params(rng)
        sample = make_sample(pseudo, masks)
        differ += not np.array_equal(tree_smallest_cover(sample, t1, t2, tau), threshold(sample, t1, t2))
    assert differ >= 6


def test_registered_with_tau_and_runs_without_a_prebuilt_tree():
    host = load_host(autoload=False)
    strategy = host.strategy("tree-smallest-cover")
    assert set(strategy.params) == {"t1", "t2", "tau"}
    assert strategy.params["tau"].default == 0.9 and strategy.params["tau"].help
    out = Selector(strategy, {"t1": 0.5, "t2": 0.85, "tau": 0.9})(np.asarray(BOAT_PSEUDO, np.uint8), MaskSet(BOAT_MASKS))
    assert out.tolist() == [[0, 4, 4, 4, 4, 4, 0, 0, 0, 0]]


def test_tree_of_sample_is_a_branching():
    sample = make_sample(BOAT_PSEUDO, BOAT_MASKS)
    assert nx.is_branching(sample.tree()) and list(sample.tree().edges) == [(0, 1)]


# ------------------------------------------------------------------------------ tree-residual

from sepl_tree.strategies.tree_residual import residual_drops, tree_residual  # noqa: E402


def test_residual_drops_an_envelope_kept_by_o_p():
    # Mask 0 = boat + sea (no child covers the sea), mask 1 = boat: mask 0 is dropped.
    out = tree_residual(make_sample(BOAT_PSEUDO, BOAT_MASKS))
    assert out.tolist() == [[0, 4, 4, 4, 4, 4, 0, 0, 0, 0]]


def test_residual_drops_an_envelope_kept_by_o_s_with_a_leaky_pseudo_label():
    # The CAM leaks over the envelope (o_s = 6/8 > t1): threshold keeps it; the boat mask holds
    # the pseudo-label's core (4 of its 6 pixels inside the envelope = 0.67 >= cover 0.5).
    pseudo = [[0, 4, 4, 4, 4, 4, 4, 0, 0, 0]]
    masks = masks_from_strings(["########.."], ["..####...."])
    sample = make_sample(pseudo, masks)
    assert threshold(sample).tolist() == [[4] * 8 + [0, 0]]
    assert tree_residual(sample).tolist() == [[0, 0, 4, 4, 4, 4, 0, 0, 0, 0]]
    # cover = 0.8 asks more of the boat mask: the envelope stays.
    assert tree_residual(sample, cover=0.8).tolist() == threshold(sample).tolist()


def test_residual_keeps_a_whole_object_made_of_its_parts():
    # Partial activation: only the head (mask 1) is in the pseudo-label; the body (mask 2) is a
    # part too, so the whole (mask 0) is explained by its children and kept.
    pseudo = [[0, 4, 4, 0, 0, 0, 0, 0, 0, 0]]
    masks = masks_from_strings([".#######.."], [".##......."], ["...#####.."])
    sample = make_sample(pseudo, masks)
    assert sorted(sample.tree().edges) == [(0, 1), (0, 2)]
    assert tree_residual(sample).tolist() == threshold(sample).tolist() == [[0] + [4] * 7 + [0, 0]]
    # tree-smallest-cover throws the body away here.
    assert tree_smallest_cover(sample).tolist() == [[0, 4, 4, 0, 0, 0, 0, 0, 0, 0]]
    # Asking the children to explain everything (explained > 1) drops the whole as well.
    assert tree_residual(sample, explained=1.01).tolist() == [[0, 4, 4, 0, 0, 0, 0, 0, 0, 0]]


def test_residual_drops_an_envelope_kept_by_o_s_whose_background_is_a_mask():
    # Boat (mask 1, 5 px) + sea (mask 2, 3 px) = mask 0: its children explain it, but it was
    # admitted through o_s (5/8 > 0.5) and its residual (the sea) has no support: dropped.
    pseudo = [[0, 4, 4, 4, 4, 4, 0, 0, 0, 0]]
    masks = masks_from_strings([".########."], [".#####...."], ["......###."])
    sample = make_sample(pseudo, masks)
    assert sorted(sample.tree().edges) == [(0, 1), (0, 2)]
    assert threshold(sample).tolist() == [[0] + [4] * 8 + [0]]
    assert tree_residual(sample).tolist() == [[0, 4, 4, 4, 4, 4, 0, 0, 0, 0]]
    # One support pixel in the sea is 1/3 of the residual: above support = 0.05, so it stays.
    pseudo2 = [[0, 4, 4, 4, 4, 4, 4, 0, 0, 0]]
    assert tree_residual(make_sample(pseudo2, masks)).tolist() == [[0] + [4] * 8 + [0]]
    assert tree_residual(make_sample(pseudo2, masks), support=0.5).tolist() == [[0, 4, 4, 4, 4, 4, 0, 0, 0, 0]]


def test_residual_keeps_an_o_p_only_whole_with_an_unsupported_part():
    # Partial activation again, the head being small: the whole (o_s = 2/7) is kept through o_p
    # only and its parts explain it, so branch 2b does not apply.
    pseudo = [[0, 4, 4, 0, 0, 0, 0, 0, 0, 0]]
    masks = masks_from_strings([".#######.."], [".##......."], ["...#####.."])
    sample = make_sample(pseudo, masks)
    assert tree_residual(sample, support=0.9).tolist() == threshold(sample).tolist()


def test_residual_needs_a_kept_descendant_of_the_same_class():
    # The child goes to another class: nothing below explains class 4's support; as threshold.
    pseudo = [[4, 2, 2, 4, 4, 4, 0, 0, 0, 0]]
    masks = masks_from_strings(["########.."], [".##......."])
    sample = make_sample(pseudo, masks)
    assert sample.assigned.tolist() == [4, 2]
    assert not residual_drops(sample, np.array([True, True]), np.array([True, True])).any()
    assert tree_residual(sample).tolist() == threshold(sample).tolist()


def test_residual_without_tree_edges_is_threshold():
    pseudo = [[0, 4, 4, 0, 0, 1, 1, 1]]
    masks = masks_from_strings(["####...."], ["....####"])
    sample = make_sample(pseudo, masks)
    assert sample.tree().number_of_edges() == 0
    assert tree_residual(sample).tolist() == threshold(sample).tolist()


def reference_residual(pseudo, masks, t1, t2, tau, cover, explained, support_share):
    """The rule in plain loops, on top of the plain reference's ratios and tree."""
    n = len(masks)
    area = [int(m.sum()) for m in masks]
    assigned, o_s, o_p = loop.loop_ratios(pseudo, masks, 21)
    share = [a >= 0 and s > t1 for a, s in zip(assigned, o_s)]
    kept = [a >= 0 and (s > t1 or p > t2) for a, s, p in zip(assigned, o_s, o_p)]
    parent, descendants = reference_tree(masks, area, tau)

    keep = list(kept)
    for e in range(n):
        below = [d for d in descendants(e) if kept[d] and assigned[d] == assigned[e]]
        if not kept[e] or not below:
            continue
        support = masks[e] & (pseudo == assigned[e])
        under = np.zeros(pseudo.shape, bool)
        for d in below:
            under |= masks[d]
        children = np.zeros(pseudo.shape, bool)
        for c in range(n):
            if parent[c] == e:
                children |= masks[c]
        if (support & under).sum() < cover * support.sum():
            continue
        residual = masks[e] & ~under
        if (children & masks[e]).sum() < explained * area[e]:
            keep[e] = False
        elif share[e] and residual.sum() and (residual & (pseudo == assigned[e])).sum() < support_share * residual.sum():
            keep[e] = False
    return loop.loop_paint(pseudo, masks, keep, assigned, 21)


@pytest.mark.parametrize("seed", range(40))
def test_residual_matches_plain_reference(seed):
    rng = np.random.default_rng(1000 + seed)
    pseudo, masks = random_nested_case(rng)
    t1, t2, tau = random_params(rng)
    cover, explained = float(rng.choice([0.5, 0.8])), float(rng.choice([0.9, 0.7]))
    support = float(rng.choice([0.05, 0.3]))
    sample = make_sample(pseudo, masks, from_rle=seed % 2 == 1)
    got = tree_residual(sample, t1, t2, tau, cover, explained, support)
    np.testing.assert_array_equal(got, reference_residual(pseudo, masks, t1, t2, tau, cover, explained, support))


def test_residual_random_cases_differ_from_threshold():
    differ = 0
    for seed in range(40):
        rng = np.random.default_rng(1000 + seed)
        pseudo, masks = random_nested_case(rng)
        t1, t2, tau = random_params(rng)
        sample = make_sample(pseudo, masks)
        differ += not np.array_equal(tree_residual(sample, t1, t2, tau), threshold(sample, t1, t2))
    assert differ >= 4


def test_residual_registered_with_its_parameters():
    strategy = load_host(autoload=False).strategy("tree-residual")
    assert set(strategy.params) == {"t1", "t2", "tau", "cover", "explained", "support"}
    assert all(p.help for p in strategy.params.values())


def test_residual_is_judged_against_kept_descendants_of_its_own_class_only():
    # E (class 4, o_s 5/9) holds C (class 2): C's pixels are no support of E's class, and E's
    # residual beyond C is still E's own pseudo-label, so E stays, as threshold keeps it
    masks = masks_from_strings(["#########."], ["..#######."])
    s = make_sample([[4, 4, 4, 4, 4, 2, 2, 2, 2, 0]], masks)
    assert s.assigned.tolist() == [4, 2] and sorted(s.tree().edges) == [(0, 1)]
    assert not residual_drops(s, np.array([True, True]), np.array([True, True])).any()
    assert tree_residual(s).tolist() == threshold(s).tolist() == [[4] * 9 + [0]]
