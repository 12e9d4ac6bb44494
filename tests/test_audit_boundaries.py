"""Boundary cases a mutation audit found untested (round 2): each test fails with one small bug
in the code (named in its docstring by the audit's id) and passes without it.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from PIL import Image

from sepl_tree.errors import InputError
from sepl_tree.plugins import load_host
from sepl_tree.registry import ReadContext
from tests.test_readers import AERO, SCORES, save_npy, write_clip_es

VOC = ReadContext(num_classes=21)
DOG_ONLY = ReadContext(num_classes=21, image_labels={"2007_000032": frozenset({12})})


@pytest.fixture(scope="module")
def host():
    return load_host(autoload=False)


def read(host, name, folder, image_id="2007_000032", ctx=VOC, **params):
    return host.reader(name).read(folder, image_id, ctx, **params)


# --- readers ------------------------------------------------------------------------------------

def test_class_dict_readers_default_backgrounds_at_their_boundaries(host, tmp_path):
    """r03 (seam 0.26 -> 0.25), r04 (transcam 0.42 -> 0.35): the fixtures' scores leave a gap of
    0.15..0.29 and 0.3..1, so any default inside a gap passed. One aeroplane map with scores just
    around each default: 0.21 > eps 0.20; 0.255 < seam 0.26 < 0.27 (0.25 would tie a 0.25 default, and ties go to
    the background); 0.40 < transcam 0.42 < 0.45."""
    save_npy(tmp_path / "2007_000032.npy", {0: np.array([[0.21, 0.255, 0.27, 0.40, 0.45]], np.float32)})
    assert read(host, "psa", tmp_path).tolist() == [[1, 1, 1, 1, 1]]  # 0.2
    assert read(host, "eps", tmp_path).tolist() == [[1, 1, 1, 1, 1]]  # 0.20
    assert read(host, "seam", tmp_path).tolist() == [[0, 0, 1, 1, 1]]  # 0.26
    assert read(host, "transcam", tmp_path).tolist() == [[0, 0, 0, 0, 1]]  # 0.42


def test_clip_es_default_power_and_image_labels(host, tmp_path):
    """r07 (default cam_eval_thres 2 -> 1) and r08 (--labels ignored). Dog only, background
    (1 - dog)^2 = [[.64,.04,.81],[.16,1,.7056]]: (0,0) 0.2 < 0.64 is background, where the power 1
    (0.8) and the unrestricted maps (aeroplane 0.9 wins) both differ."""
    write_clip_es(tmp_path)
    assert read(host, "clip-es", tmp_path, ctx=DOG_ONLY).tolist() == [[0, 12, 0], [12, 0, 0]]
    # one map, one pixel, 0.4: (1 - 0.4)^2 = 0.36 < 0.4 is the class; (1 - 0.4)^1 = 0.6 is not
    save_npy(tmp_path / "x.npy", {"keys": np.array([11]), "attn_highres": np.full((1, 1, 1), 0.4, np.float16)})
    assert read(host, "clip-es", tmp_path, "x").tolist() == [[12]]


def test_puzzlecam_bg_low_zero_is_a_band_not_off(host, tmp_path):
    """r10: bg_low = 0 read as 'off'. 'If 0 or more' it is on: every pixel with a class score
    above 0 but under bg becomes 255."""
    save_npy(tmp_path / "2007_000032.npy", {"keys": np.array([0, 1, 12]), "hr_cam": SCORES.copy()})
    assert read(host, "puzzlecam", tmp_path, bg=0.55, bg_low=0.0).tolist() == [[1, 12, 255], [12, 255, 255]]


def test_a_palette_png_named_like_a_per_class_map_is_a_label_map(tmp_path):
    """r13: without the palette test, a palette <id>_<n>.png holding a value of 81..254 was
    taken for a per-class score map."""
    from sepl_tree.label_maps import voc_palette
    from sepl_tree.readers.sniff import identify

    img = Image.fromarray(np.array([[0, 100], [255, 100]], np.uint8), mode="P")
    img.putpalette(voc_palette().reshape(-1).tolist())  # (without one, PIL renumbers the indices)
    img.save(tmp_path / "2007_000032_5.png")
    assert identify(tmp_path / "2007_000032_5.png") == "png"


def test_no_inputs_does_not_suggest_the_reader_in_use(host, tmp_path):
    """r14: an IRN file under the wrong suffix (x.pkl for irn's .npy): no ids, and the hint must
    not say 'try --reader irn' to someone using irn."""
    from sepl_tree.readers.sniff import no_inputs

    (tmp_path / "x.pkl").write_bytes(pickle.dumps({"keys": np.array([0]), "high_res": AERO[None].copy()}))
    message = str(no_inputs(tmp_path, host.reader("irn")))
    assert "no pseudo-labels found for reader 'irn' (<id>.npy)" in message
    assert "try --reader" not in message
    assert "try --reader irn" in str(no_inputs(tmp_path, host.reader("sipe")))


# --- image-level labels ---------------------------------------------------------------------------

def test_only_ten_digit_irn_ids_get_an_underscore():
    """i01: len(text) >= 10 would split any longer integer id too."""
    from sepl_tree.image_labels import decode_irn_id

    assert decode_irn_id(12345678901) == "12345678901"
    assert decode_irn_id(2007000032) == "2007_000032"


def _coco(tmp_path, categories, images, annotations):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def test_coco_numeric_alias_never_replaces_a_file_stem(tmp_path):
    """i05: image 9 is file 25.jpg, image 25 is b.jpg: id '25' is the stem of image 9, and the
    numeric alias of image 25 must not replace it."""
    from sepl_tree.image_labels import load_image_labels

    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    images = [{"id": 9, "file_name": "25.jpg", "height": 2, "width": 2},
              {"id": 25, "file_name": "b.jpg", "height": 2, "width": 2}]
    anns = [{"id": 1, "image_id": 9, "category_id": 1}, {"id": 2, "image_id": 25, "category_id": 2}]
    labels = load_image_labels(_coco(tmp_path, cats, images, anns), 3)
    assert labels == {"25": frozenset({1}), "b": frozenset({2}), "9": frozenset({1})}


# --- mask layouts and MaskSet -------------------------------------------------------------------

def test_png_mask_of_at_most_127_is_an_error_not_an_empty_mask(tmp_path):
    """l04: at the boundary, max 127 = half of the 8-bit range, nothing is above half."""
    from sepl_tree.masks import read_masks

    (tmp_path / "img").mkdir()
    Image.fromarray(np.array([[0, 127]], np.uint8)).save(tmp_path / "img" / "0.png")
    with pytest.raises(InputError, match=r"mask values are 0\.\.127: none is above 127"):
        read_masks(tmp_path, "img")



# --- output folders, files ------------------------------------------------------------------------

def test_a_failed_atomic_write_leaves_no_temporary(tmp_path, monkeypatch):
    """f02: the temporary was left behind when the rename (or the write) failed."""
    import os

    from sepl_tree.errors import SeplError
    from sepl_tree.files import atomic_write_bytes

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(SeplError, match="a.bin: cannot write the file"):
        atomic_write_bytes(tmp_path / "a.bin", b"data")
    assert list(tmp_path.iterdir()) == []


# --- the CLI ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "problem"), [
    ("a\nsub/../../x\n", "would name a file outside the folders"),
    ("a\nb\na\n", "id 'a' is listed twice"),
])
def test_read_ids_refuses_ids_that_escape_or_repeat(tmp_path, text, problem):
    """c01 (only a leading ../ refused) and c02 (duplicates accepted)."""
    from sepl_tree.cli.common import read_ids
    from sepl_tree.errors import SeplError

    (tmp_path / "ids.txt").write_text(text)
    with pytest.raises(SeplError, match=problem):
        read_ids(tmp_path / "ids.txt")


def test_read_ids_skips_comments_and_blank_lines(tmp_path):
    """c03: '# ...' comments were kept as part of the id."""
    from sepl_tree.cli.common import read_ids

    (tmp_path / "ids.txt").write_text("# val ids\nimg0  # the first\n\nimg1\n")
    assert read_ids(tmp_path / "ids.txt") == ["img0", "img1"]


def test_coco_gt_rerun_with_other_name_by_is_refused(tmp_path):
    """cg1: name_by left out of coco-gt.json: a rerun with --name-by id wrote <id>.png beside
    the <stem>.png of the first run, in a folder whose manifest says nothing of it."""
    from typer.testing import CliRunner

    from sepl_tree.cli import app
    from tests.test_coco import tiny_instances

    path, out = tiny_instances(tmp_path / "inst.json"), tmp_path / "gt"
    runner = CliRunner()
    assert runner.invoke(app, ["coco-gt", "--instances", str(path), "--out", str(out)]).exit_code == 0
    result = runner.invoke(app, ["coco-gt", "--instances", str(path), "--out", str(out), "--name-by", "id"],
                           env={"COLUMNS": "300"})
    assert result.exit_code == 1 and "(name_by 'stem' -> 'id')" in result.output
    assert sorted(p.name for p in out.glob("*.png")) == ["im1.png", "im2.png"]


def test_convert_rerun_with_labels_is_refused(tmp_path):
    """cv1: --labels left out of convert.json: a rerun restricted by image-level labels resumed
    the unrestricted outputs."""
    from typer.testing import CliRunner

    from sepl_tree.cli import app
    from tests.test_readers_cli import blob_cams, irn_cam

    cams, out = tmp_path / "cams", tmp_path / "labels"
    irn_cam(cams, "2007_000033", [0], blob_cams())
    labels = tmp_path / "cls_labels.npy"
    vector = np.zeros(20, np.float32)
    vector[0] = 1
    np.save(labels, {2007000033: vector})
    runner = CliRunner()
    assert runner.invoke(app, ["convert", "-r", "irn", "-i", str(cams), "-o", str(out)]).exit_code == 0
    result = runner.invoke(app, ["convert", "-r", "irn", "-i", str(cams), "-o", str(out), "--labels", str(labels)],
                           env={"COLUMNS": "300"})
    assert result.exit_code == 1 and f"inputs.labels None -> '{labels}'" in " ".join(result.output.split())


# --- compare, subsets, executors ----------------------------------------------------------------

def test_an_absent_class_at_exactly_the_floor_counts_and_one_below_does_not():
    """sb1 (> floor) and sb2 (floor rounded down): 40x40 = 1600 px, floor ceil(1.6) = 2 px."""
    from sepl_tree.subsets import pseudo_failures

    gt = np.zeros((40, 40), np.uint8)
    pseudo = gt.copy()
    pseudo[0, :2] = 2  # 2 px of a class the GT does not hold
    assert pseudo_failures(pseudo, gt, 21)["absent"] == [2]
    pseudo[0, 1] = 0  # 1 px: under the floor
    assert pseudo_failures(pseudo, gt, 21)["absent"] == []


def test_task_size_never_goes_below_the_fewest_ids():
    """x01 (the fewest ignored after the first task) and x02 (first task 1, not the fewest)."""
    from sepl_tree.executors import MAX_BATCH, task_size

    assert task_size(3, 0, 0.0) == 3  # first task
    assert task_size(4, 10, 10.0) == 4  # 1 s an image: 0.05 s is not one image, but the spec asks for 4
    assert task_size(1, 10, 10.0) == 1
    assert task_size(1, 100, 0.01) == MAX_BATCH


# --- parameters ---------------------------------------------------------------------------------

def test_tau_excludes_zero_and_share_takes_both_ends():
    """g01: the open low end of Tau was inclusive, so tau = 0 (every mask contains every other)
    was accepted."""
    from sepl_tree.registry import Param, Share, Tau

    params = {"tau": Param("tau", 0.9, float, range=Tau.__metadata__[0]),
              "share": Param("share", 0.5, float, range=Share.__metadata__[0])}
    with pytest.raises(ValueError, match=r"must be in \(0, 1\], got 0\.0"):
        params["tau"].coerce("0")
    assert params["tau"].coerce("1e-9") == 1e-9 and params["tau"].coerce("1") == 1.0
    assert params["share"].coerce("0") == 0.0 and params["share"].coerce("1") == 1.0


def _comparison(image_id, pseudo, outputs, gt, disagreement):
    from sepl_tree.compare import ImageComparison
    from sepl_tree.metrics import confusion_matrix

    return ImageComparison(image_id=image_id, input_cm=confusion_matrix(pseudo, gt, 3),
                           cms={name: confusion_matrix(out, gt, 3) for name, out in outputs.items()},
                           flags={"all": True}, details={}, disagreement=disagreement, masks=1)


def test_compare_rows_hold_every_strategys_scores_and_strips_only_disagreements():
    """cp2 (per-image scores of the first strategy only: the second's CSV columns missing) and
    cp3 (images where the strategies agree offered as strips)."""
    from sepl_tree.compare import CompareTotals

    gt = np.array([[0, 1, 1, 2]], np.uint8)
    totals = CompareTotals(("threshold", "official"), ("all",), 3)
    totals.add(_comparison("a", gt, {"threshold": gt, "official": np.array([[0, 1, 1, 0]], np.uint8)}, gt, 0.25))
    totals.add(_comparison("b", gt, {"threshold": gt, "official": gt}, gt, 0.0))
    row = totals.table()[0]
    assert row["threshold_miou"] == 100.0
    # official misses class 2: IoU 1/2, 1, 0 -> 50; precision 1/2, 1 (class 2 predicted nowhere: n/a) -> 75;
    # recall 1, 1, 0 -> 66.67
    assert (row["official_miou"], row["official_precision"], row["official_recall"]) == (50.0, 75.0, pytest.approx(66.6667))
    assert totals.most_disagreeing(5) == ["a"]
