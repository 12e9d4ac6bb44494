"""Evaluation against hand-computed confusion matrices, and the eval command."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from sepl_tree.cli import app
from sepl_tree.files import write_label_png
from sepl_tree.metrics import confusion_matrix, scores

runner = CliRunner()


def test_confusion_matrix_by_hand():
    gt = np.array([[0, 0, 1, 1, 2, 255]])
    pred = np.array([[0, 1, 1, 255, 0, 2]])
    cm = confusion_matrix(pred, gt, 3)
    # rows: GT 0, 1, 2; columns: predicted 0, 1, 2, out-of-range. The GT-255 pixel is ignored.
    assert cm.tolist() == [[1, 1, 0, 0], [0, 1, 0, 1], [1, 0, 0, 0]]


def test_scores_by_hand():
    cm = np.array([[1, 1, 0, 0], [0, 1, 0, 1], [1, 0, 0, 0]])
    s = scores(cm)
    # class 0: TP 1, FP 1 (GT 2 predicted 0), FN 1 -> IoU 1/3, precision 1/2, recall 1/2
    # class 1: TP 1, FP 1, FN 1 (the out-of-range prediction) -> same
    # class 2: TP 0, FP 0, FN 1 -> IoU 0, precision undefined (excluded), recall 0
    assert s.iou == pytest.approx([100 / 3, 100 / 3, 0.0])
    assert np.isnan(s.precision[2])
    assert s.miou == pytest.approx(200 / 9)
    assert s.mean_precision == pytest.approx(50.0)
    assert s.mean_recall == pytest.approx(100 / 3)


def test_absent_class_is_left_out_of_the_mean():
    gt = np.array([[0, 1]])
    s = scores(confusion_matrix(np.array([[0, 1]]), gt, 4))
    assert s.miou == 100.0 and np.isnan(s.iou[2]) and np.isnan(s.iou[3])


def test_gt_out_of_range_is_an_error():
    with pytest.raises(ValueError, match="out of range"):
        confusion_matrix(np.zeros((1, 2)), np.array([[0, 7]]), 3)


def test_dataset_level_pooling_differs_from_image_mean(tmp_path):
    # Image a: class 1 perfect on 1 pixel; image b: class 1 wrong on 3 pixels. Pooled IoU for
    # class 1 is 1/4 (not the mean of per-image IoUs, 1/2).
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    write_label_png(pred / "a.png", np.array([[1, 0, 0, 0]], np.uint8))
    write_label_png(gt / "a.png", np.array([[1, 0, 0, 0]], np.uint8))
    write_label_png(pred / "b.png", np.array([[0, 0, 0, 0]], np.uint8))
    write_label_png(gt / "b.png", np.array([[1, 1, 1, 0]], np.uint8))
    out = tmp_path / "s.json"
    result = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(gt), "--num-classes", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["images"] == 2
    assert doc["per_class"]["class1"]["iou"] == pytest.approx(25.0)
    assert doc["per_class"]["background"]["iou"] == pytest.approx(400 / 7)  # TP 4, FP 3
    assert doc["miou"] == pytest.approx((25.0 + 400 / 7) / 2, abs=1e-3)
    assert doc["precision"] == pytest.approx((100.0 + 400 / 7) / 2, abs=1e-3)
    assert doc["recall"] == pytest.approx((25.0 + 100.0) / 2, abs=1e-3)


def test_eval_uses_voc_class_names_and_ids_file(tmp_path):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    for name in ("a", "b"):
        write_label_png(pred / f"{name}.png", np.array([[15, 0]], np.uint8))
        write_label_png(gt / f"{name}.png", np.array([[15, 15 if name == "b" else 0]], np.uint8))
    ids = tmp_path / "ids.txt"
    ids.write_text("a\n")
    out = tmp_path / "s.json"
    result = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(gt), "--ids", str(ids), "--json", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["images"] == 1 and doc["miou"] == 100.0
    assert doc["per_class"]["person"]["iou"] == 100.0
    assert doc["per_class"]["dog"]["iou"] is None


def test_eval_missing_gt_names_the_file(tmp_path):
    pred = tmp_path / "pred"
    write_label_png(pred / "a.png", np.zeros((2, 2), np.uint8))
    (tmp_path / "gt").mkdir()
    result = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(tmp_path / "gt")])
    assert result.exit_code == 1
    assert "a.png: file not found" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("k", [2, 21, 81, 255])
def test_stored_label_maps_count_as_any_integers_do(k, monkeypatch):
    # uint8 maps (as read from PNGs) take a faster path; it must count exactly as the general one
    import sepl_tree.metrics as metrics

    fast_calls = []
    fast_path = metrics._uint8_confusion
    monkeypatch.setattr(metrics, "_uint8_confusion", lambda *a: fast_calls.append(1) or fast_path(*a))
    rng = np.random.default_rng(k)
    gt = rng.integers(0, k, (37, 53)).astype(np.uint8)
    gt[rng.random(gt.shape) < 0.1] = 255
    pred = rng.integers(0, 256, (37, 53)).astype(np.uint8)  # values >= K are misses
    pred[: 10] = rng.integers(0, k, (10, 53))
    fast = confusion_matrix(pred, gt, k)
    general = confusion_matrix(pred.astype(np.int64), gt.astype(np.int64), k)
    assert fast.dtype == np.int64 and fast.shape == (k, k + 1)
    assert np.array_equal(fast, general)
    assert fast.sum() == np.count_nonzero(gt != 255)
    assert len(fast_calls) == 1  # the uint8 pair took the fast path, the int64 pair the general one


def test_stored_gt_out_of_range_names_the_largest_value():
    gt = np.array([[0, 7, 5, 255]], np.uint8)
    with pytest.raises(ValueError, match=r"value 7 is out of range 0\.\.2 or 255"):
        confusion_matrix(np.zeros((1, 4), np.uint8), gt, 3)
    with pytest.raises(ValueError, match=r"value 7 is out of range 0\.\.2 or 255"):
        confusion_matrix(np.zeros((1, 4), np.int64), gt.astype(np.int64), 3)


def _random_folders(tmp_path, n=40, k=21):
    rng = np.random.default_rng(3)
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    for i in range(n):
        shape = tuple(rng.integers(5, 40, 2))
        g = rng.integers(0, k, shape).astype(np.uint8)
        g[rng.random(shape) < 0.1] = 255
        p = np.where(rng.random(shape) < 0.7, g, rng.integers(0, k, shape)).astype(np.uint8)
        write_label_png(pred / f"im{i:03d}.png", p)
        write_label_png(gt / f"im{i:03d}.png", g)
    return pred, gt


@pytest.mark.slow
def test_eval_scores_the_same_with_any_number_of_workers(tmp_path):
    pred, gt = _random_folders(tmp_path)
    docs = []
    for workers in ("1", "2"):
        out = tmp_path / f"s{workers}.json"
        result = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(gt), "-j", workers, "--json", str(out)])
        assert result.exit_code == 0, result.output
        docs.append(json.loads(out.read_text()))
    assert docs[0] == docs[1]
    assert docs[0]["images"] == 40 and 0 < docs[0]["miou"] < 100


@pytest.mark.slow
def test_eval_workers_name_a_bad_file_in_one_line(tmp_path):
    pred, gt = _random_folders(tmp_path)
    (gt / "im017.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    result = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(gt), "-j", "2"])
    assert result.exit_code == 1
    assert "im017.png" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(("gt", "message"), [
    (np.array([[0, -1]]), "value -1 is out of range"),
    (np.array([[np.nan, 1.0]]), "ground truth of float64 values"),
])
def test_ground_truth_that_is_no_label_map_is_an_error_not_a_count(gt, message):
    # (a NaN became int64's minimum and was counted as a right background pixel)
    with pytest.raises(ValueError, match=message):
        confusion_matrix(np.zeros((1, 2)), gt, 3)


def test_a_one_bit_ground_truth_png_is_scored(tmp_path):
    """(A mode "1" PNG reads as bool: 0 and 1 are classes; refusing non-integer GT must not refuse it.)"""
    from PIL import Image

    (tmp_path / "gt").mkdir()
    Image.fromarray(np.array([[True, False, True, True]])).save(tmp_path / "gt" / "a.png")
    write_label_png(tmp_path / "pred" / "a.png", np.array([[1, 0, 0, 1]], np.uint8))
    out = tmp_path / "s.json"
    result = runner.invoke(app, ["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                                 "--num-classes", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["per_class"]["class1"]["iou"] == pytest.approx(200 / 3)


def test_integer_gt_holding_exactly_k_is_named_out_of_range():
    # (int64 takes the general path, not the uint8 one; K itself is the first value out of range)
    with pytest.raises(ValueError, match=r"ground-truth value 3 is out of range 0\.\.2 or 255"):
        confusion_matrix(np.zeros((1, 2), np.int64), np.array([[0, 3]]), 3)
