"""Tests from the fourth mutation round, each checked to fail with a small bug the suite missed:
the CAM and pseudo-label readers (the power background, a file's own background channel, L2G's
and RCA's per-class PNGs, PSA dictionaries, format sniffing), the tree strategies, binding a
strategy, the metrics and evaluation, the failure subsets, COCO ground truth, and the
``made_from.jsonl`` log that decides which outputs are out of date."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sepl_tree.errors import InputError
from sepl_tree.masks import MaskSet
from sepl_tree.plugins import load_host
from sepl_tree.registry import ReadContext
from sepl_tree.sample import Sample

VOC = ReadContext(num_classes=21)


@pytest.fixture(scope="module")
def host():
    return load_host(autoload=False)


def read(host, name: str, folder: Path, image_id: str = "img", ctx: ReadContext = VOC, **params) -> list:
    return host.reader(name).read(folder, image_id, ctx, **params).tolist()


def grey_png(path: Path, values) -> Path:
    """An 8-bit greyscale PNG of ``values``, as ``cv2.imwrite`` and L2G's scripts write them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(values, np.uint8), mode="L").save(path)
    return path


def sample_of(pseudo, *masks, records=None) -> Sample:
    """A sample of one pseudo-label row (a list of ints) and masks given as strings, '#' = in."""
    dense = np.array([[[c == "#" for c in m]] for m in masks], bool)
    return Sample(np.array([pseudo], np.uint8), MaskSet(dense, records), 21)


def row(text: str) -> list[list[int]]:
    return [[int(c) for c in text]]


# ------------------------------------------------------------------------------- CAM readers


def test_power_background_of_a_score_above_one_is_zero():
    # (1 - max)^p is clipped at 0 first: a score of 3 (a CAM not scaled to max 1) leaves no
    # background, where (1 - 3)^2 = 4 would beat it.
    from sepl_tree.readers.cam import cam_to_label

    label = cam_to_label(Path("x.npy"), np.array([[[3.0, 0.5]]]), [1], 21, bg=2.0)
    assert label.tolist() == [[1, 1]]


def test_image_labels_never_drop_a_files_own_background_channel(host, tmp_path):
    # SIPE's IS_CAM holds the background at key 0: restricting to the image's labels drops the
    # other classes' maps, never the background's.
    cams = np.array([[[0.9, 0.1]], [[0.05, 0.8]], [[0.05, 0.3]]], np.float32)  # background, class 3, class 7
    np.save(tmp_path / "img.npy", {"keys": np.array([0, 3, 7]), "IS_CAM": cams})
    assert read(host, "sipe", tmp_path) == [[0, 3]]
    only_7 = ReadContext(num_classes=21, image_labels={"img": frozenset({7})})
    assert read(host, "sipe", tmp_path, ctx=only_7) == [[0, 7]]


def test_irn_bg_low_zero_is_a_band_not_off(host, tmp_path):
    # "If 0 or more": bg_low 0 makes every background pixel with any class score uncertain.
    np.save(tmp_path / "img.npy", {"keys": np.array([0]), "high_res": np.array([[[0.1, 0.5, 0.0]]], np.float32)})
    assert read(host, "irn", tmp_path, bg=0.3) == [[0, 1, 0]]
    assert read(host, "irn", tmp_path, bg=0.3, bg_low=0.0) == [[255, 1, 0]]


def test_l2g_a_value_just_above_the_threshold_is_the_class(host, tmp_path):
    # gen_gt.py: value / 255 against --thr 0.25; 64/255 = 0.251 is aeroplane, 63/255 = 0.247 not.
    grey_png(tmp_path / "img_0.png", [[64, 63]])
    assert read(host, "l2g", tmp_path) == [[1, 0]]


def test_l2g_reads_the_last_class(host, tmp_path):
    # 0-based class 19 is tvmonitor, class 20 of VOC's 21.
    grey_png(tmp_path / "img_19.png", [[255, 0]])
    assert read(host, "l2g", tmp_path) == [[20, 0]]


def test_rca_normalises_each_map_by_its_own_min_and_max(host, tmp_path):
    # aeroplane 100..200 -> 0, 1, 0.8; bicycle 0..100 -> 0, 0.7, 1; background (1 - max)^4.
    grey_png(tmp_path / "img_0.png", [[100, 200, 180]])
    grey_png(tmp_path / "img_1.png", [[0, 70, 100]])
    assert read(host, "rca", tmp_path) == [[0, 1, 2]]


def test_rca_greyscale_final_label_holding_k_is_refused(host, tmp_path):
    grey_png(tmp_path / "img.png", [[0, 20, 255]])
    assert read(host, "rca", tmp_path) == [[0, 20, 255]]
    grey_png(tmp_path / "img.png", [[0, 21, 255]])  # 21 is no VOC label
    with pytest.raises(InputError, match="is not a label map"):
        read(host, "rca", tmp_path)


def test_psa_ties_go_to_the_lowest_class_whatever_the_dictionary_order(host, tmp_path):
    same = np.array([[0.9, 0.1]], np.float32)
    np.save(tmp_path / "img.npy", {11: same, 0: same})  # dog written before aeroplane
    assert read(host, "psa", tmp_path) == [[1, 0]]


def test_a_greyscale_per_class_png_holding_most_classes_is_scores(tmp_path):
    from sepl_tree.readers.sniff import MOST_CLASSES, identify

    assert identify(grey_png(tmp_path / "a_3.png", [[0, MOST_CLASSES]])) == "l2g"
    assert identify(grey_png(tmp_path / "b_3.png", [[0, MOST_CLASSES - 1]])) == "png"


def test_crf_probabilities_must_sum_to_one():
    from sepl_tree.readers.sniff import looks_like_crf

    a = np.array([[0.3, 0.6]])
    assert looks_like_crf({0: a, 1: 1.0 - a})
    assert not looks_like_crf({0: a, 1: 1.2 - a})  # sums of 1.2: CAMs, not probabilities


# -------------------------------------------------------------------------------- strategies


def test_tree_prompt_an_unscored_output_never_beats_a_scored_one():
    # One prompt, two kept outputs of class 1: the part (scored, if poorly) and the part with
    # its surroundings (no score). The scored one is chosen; the larger one's added pixels hold
    # no class pixel, so it does not replace it.
    from sepl_tree.strategies.tree_prompt import tree_prompt

    records = [{"point_coords": [[1.0, 0.0]], "predicted_iou": -0.05}, {"point_coords": [[1.0, 0.0]]}]
    sample = sample_of([1, 1, 1, 1, 0, 0, 0, 0], "####....", "########", records=records)
    assert sample.prompts.tolist() == [0, 0] and sample.sepl_keep().tolist() == [True, True]
    assert tree_prompt(sample).tolist() == row("11110000")


def test_residual_support_exactly_at_the_share_is_kept():
    # E (40 pixels, kept through o_s 21/40) holds the part D (20, all class 1) and C, a mask on
    # the other 20 pixels of which 1 is class 1: E's residual has a support share of exactly
    # 1/20 = 0.05 -- not below ``support`` 0.05, so E stays.
    from sepl_tree.strategies.tree_residual import tree_residual

    pseudo = [1] * 21 + [0] * 19
    sample = sample_of(pseudo, "#" * 40, "#" * 20 + "." * 20, "." * 20 + "#" * 20)
    assert sample.sepl_keep().tolist() == [True, True, False]
    assert sorted(sample.tree().edges) == [(0, 1), (0, 2)]
    assert tree_residual(sample).tolist() == [[1] * 40]
    assert tree_residual(sample, support=0.06).tolist() == [[1] * 20 + [0] * 20]  # below it: dropped


def test_a_strategy_binds_for_255_classes(host):
    from sepl_tree.errors import SeplError
    from sepl_tree.selection import bind_strategy

    selector = bind_strategy(host, "threshold", {}, 255)  # classes 1..254, 255 the ignore value
    pseudo = np.array([[254, 254, 0]], np.uint8)
    out = selector(pseudo, MaskSet(np.array([[[1, 1, 1]]], bool)))
    assert out.tolist() == [[254, 254, 254]]
    with pytest.raises(SeplError, match="2..255"):
        bind_strategy(host, "threshold", {}, 256)


# --------------------------------------------------------------------------- metrics and eval


def test_scores_of_a_class_nobody_has_are_nan_without_a_warning():
    from sepl_tree.metrics import scores

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = scores(np.array([[3, 0, 0], [0, 0, 0]]))
    assert s.iou[0] == 100.0 and np.isnan(s.iou[1]) and s.miou == 100.0



# ---------------------------------------------------------------------------------- subsets


def test_sam_miss_iou_leaves_out_ignore_pixels():
    from sepl_tree.subsets import sam_misses

    gt = np.array([[1, 1, 1, 1] + [255] * 8], np.uint8)
    masks = np.ones((1, 1, 12), bool)  # the object and the ignore band around it: IoU 1
    assert sam_misses(masks, gt, 21) == []


def test_sam_miss_regions_are_eight_connected():
    from sepl_tree.subsets import sam_misses

    gt = np.zeros((4, 4), np.uint8)
    gt[:3, :3] = 1
    gt[3, 3] = 1  # touches the block at a corner: one region of 10 pixels
    assert sam_misses((gt == 1)[None], gt, 21) == []


def test_an_envelope_is_less_than_half_inside_its_class():
    from sepl_tree.subsets import envelopes

    sample = sample_of([1, 1, 1, 1, 1, 1, 0, 0], "########", "####....")
    assert sample.sepl_keep().tolist() == [True, True] and list(sample.tree().edges) == [(0, 1)]
    half = np.array([[1, 1, 1, 1, 0, 0, 0, 0]], np.uint8)
    assert envelopes(sample, sample.tree(), half) == []  # exactly half inside: not "mostly outside"
    less = np.array([[1, 1, 1, 0, 0, 0, 0, 0]], np.uint8)
    assert [e["mask"] for e in envelopes(sample, sample.tree(), less)] == [0]


# ------------------------------------------------------------------------------------- COCO


def _instances(tmp_path: Path, segmentation) -> Path:
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "height": 4, "width": 4}],
           "categories": [{"id": 1, "name": "person"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                            "segmentation": segmentation}]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc))
    return path


def test_coco_polygons_may_reach_past_the_left_and_top_edges(tmp_path):
    from sepl_tree.coco import CocoInstances

    coco = CocoInstances.load(_instances(tmp_path, [[-1.5, -2, 2, -2, 2, 2, -1.5, 2]]))
    label = coco.label("a")
    assert label[:2, :2].all() and label[2:, :].sum() == 0 and label[:, 3].sum() == 0
    with pytest.raises(InputError, match="outside"):
        CocoInstances.load(_instances(tmp_path, [[-5, 0, 2, 0, 2, 2]]))  # beyond -width


def test_255_categories_do_not_fit_a_label_map():
    from sepl_tree.coco import check_categories

    assert len(check_categories(Path("i.json"), [{"id": i} for i in range(1, 255)])) == 254
    with pytest.raises(InputError, match="255 categories do not fit"):
        check_categories(Path("i.json"), [{"id": i} for i in range(1, 256)])


# ------------------------------------------------------------------------- made_from.jsonl


def test_an_output_made_in_the_same_tick_as_the_log_began_is_under_the_log():
    from sepl_tree.outputs import UNRECORDED, is_out_of_date

    assert is_out_of_date(100, None, ((50, 55),), 100) == UNRECORDED


def test_make_rule_wants_an_input_strictly_newer_than_the_output():
    from sepl_tree.outputs import CHANGED, is_out_of_date

    assert is_out_of_date(100, None, ((100, 100),), None) is None
    assert is_out_of_date(100, None, ((100, 101),), None) == CHANGED



def test_an_out_of_date_output_is_removed_and_recorded_anew(tmp_path):
    from sepl_tree.outputs import CHANGED, MadeFrom, refresh_made_from

    (tmp_path / "a.png").write_bytes(b"old")
    (tmp_path / "b.png").write_bytes(b"old")
    with MadeFrom(tmp_path) as log:
        log.note("a", ((1, 2),))
        log.note("b", ((1, 2),))
    assert refresh_made_from(["a", "b"], {"a": ((1, 3),), "b": ((1, 2),)}, [tmp_path]) == {"a": CHANGED}
    assert not (tmp_path / "a.png").exists() and (tmp_path / "b.png").exists()
    assert MadeFrom(tmp_path).read() == {"a": (3,), "b": (2,)}
