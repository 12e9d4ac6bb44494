"""``eval --convention``: each baseline's reading, by hand and against that script's formula.

The reference functions below restate, in a few lines each, what the baselines' evaluation
scripts compute (read from their code: IRN ``step/eval_sem_seg.py``, SEAM ``evaluation.py``,
EPS ``evaluate_png.py``, CLIP-ES ``eval_cam.py``); ``eval --convention`` must give their number.
"""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from sepl_tree.cli import app
from sepl_tree.files import write_label_png
from sepl_tree.metrics import CONVENTIONS, apply_pixel_rule, confusion_matrix, scores

runner = CliRunner()
K = 5


def _counts(preds, gts, k, keep):
    """Per-class (TP, predicted, GT) pixel counts over the pixels ``keep(pred, gt)`` selects."""
    tp, p, t = np.zeros(k), np.zeros(k), np.zeros(k)
    for pred, gt in zip(preds, gts):
        sel = keep(pred, gt)
        for c in range(k):
            tp[c] += np.sum((pred == c) & (gt == c) & sel)
            p[c] += np.sum((pred == c) & sel)
            t[c] += np.sum((gt == c) & sel)
    return tp, p, t


def seam_miou(preds, gts, k):
    """SEAM: pixels with GT < 255; every class's IoU (an empty one 0, by its 1e-10) averaged."""
    tp, p, t = _counts(preds, gts, k, lambda pred, gt: gt < 255)
    return float(np.mean(tp / (t + p - tp + 1e-10))) * 100


def irn_miou(preds, gts, k):
    """IRN: a predicted 255 set to 0; chainercv's confusion cut to K x K (other non-labels fall
    out of both sums); nanmean of the IoUs."""
    preds = [np.where(pred == 255, 0, pred) for pred in preds]
    tp, p, t = _counts(preds, gts, k, lambda pred, gt: (gt < 255) & (pred < k))
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.nanmean(tp / (t + p - tp))) * 100


def eps_scores(preds, gts, k):
    """EPS: only pixels with GT < K and prediction < K; nanmean of IoU, precision, recall."""
    tp, p, t = _counts(preds, gts, k, lambda pred, gt: (gt < k) & (pred < k))
    with np.errstate(invalid="ignore", divide="ignore"):
        return tuple(float(np.nanmean(x)) * 100 for x in (tp / (t + p - tp), tp / p, tp / t))


def clip_es_miou(preds, gts, k):
    """CLIP-ES: pixels with GT < K; nanmean of the IoUs of the classes with GT pixels."""
    tp, p, t = _counts(preds, gts, k, lambda pred, gt: gt < k)
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (t + p - tp)
    return float(np.nanmean(iou[t > 0])) * 100


def _dataset(tmp_path, seed, non_labels=True):
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for n in range(6):
        gt = rng.choice([0, 1, 2, 255], size=(9, 11), p=[0.5, 0.25, 0.15, 0.1]).astype(np.uint8)
        pred = rng.choice([0, 1, 2, 3], size=gt.shape, p=[0.45, 0.25, 0.2, 0.1]).astype(np.uint8)  # 3: never in GT
        if non_labels:
            pred[rng.random(gt.shape) < 0.1] = 255
            pred[rng.random(gt.shape) < 0.05] = 7
        write_label_png(tmp_path / "pred" / f"i{n}.png", pred)
        write_label_png(tmp_path / "gt" / f"i{n}.png", gt)
        preds.append(pred)
        gts.append(gt)
    return preds, gts


def _eval(tmp_path, convention, *extra):
    out = tmp_path / f"{convention}.json"
    result = runner.invoke(app, ["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                                 "--num-classes", str(K), "--json", str(out), "--convention", convention, *extra])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text()), result.output


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_convention_gives_its_scripts_number(tmp_path, seed):
    preds, gts = _dataset(tmp_path, seed)
    assert _eval(tmp_path, "seam")[0]["miou"] == pytest.approx(seam_miou(preds, gts, K), abs=1e-4)
    assert _eval(tmp_path, "irn")[0]["miou"] == pytest.approx(irn_miou(preds, gts, K), abs=1e-4)
    doc = _eval(tmp_path, "eps")[0]
    assert (doc["miou"], doc["precision"], doc["recall"]) == pytest.approx(eps_scores(preds, gts, K), abs=1e-4)
    # the four readings part on this data: each option changes the number it should
    numbers = {name: _eval(tmp_path, name)[0]["miou"] for name in CONVENTIONS}
    assert len(set(numbers.values())) == len(numbers), numbers


@pytest.mark.parametrize("seed", [0, 1])
def test_clip_es_averages_over_the_classes_the_ground_truth_holds(tmp_path, seed):
    # (no non-label predictions: CLIP-ES's _fast_hist counts a predicted v >= K in cell K * gt + v, another
    # class's, or raises when that index passes K * K)
    preds, gts = _dataset(tmp_path, seed, non_labels=False)
    doc, output = _eval(tmp_path, "clip-es")
    assert doc["miou"] == pytest.approx(clip_es_miou(preds, gts, K), abs=1e-4)
    assert doc["miou"] > _eval(tmp_path, "default")[0]["miou"]  # class 3 (IoU 0, predicted only) is left out
    assert "mIoU over 3 of 5 classes (only the classes the ground truth holds count" in " ".join(output.split())


def test_the_pixel_rules_by_hand():
    pred = np.array([[0, 1, 255, 9, 1, 2]], np.uint8)
    gt = np.array([[0, 1, 1, 1, 255, 2]], np.uint8)
    miss = confusion_matrix(*apply_pixel_rule(pred, gt, 3, "miss"), 3)
    assert miss.tolist() == [[1, 0, 0, 0], [0, 1, 0, 2], [0, 0, 1, 0]]
    drop = confusion_matrix(*apply_pixel_rule(pred, gt, 3, "drop"), 3)
    assert drop.tolist() == [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]]
    background = confusion_matrix(*apply_pixel_rule(pred, gt, 3, "background"), 3)
    assert background.tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0]]  # 255 -> 0, 9 left out
    assert apply_pixel_rule(pred, gt, 3, "miss")[0] is pred  # no copy where nothing changes
    with pytest.raises(ValueError, match="unknown rule"):
        apply_pixel_rule(pred, gt, 3, "ignore")


def test_a_1_bit_ground_truth_keeps_a_dropped_pixel_dropped():
    """(A bool GT, as a 1-bit PNG reads, turned the dropped pixels' 255 into True: class 1.)"""
    pred, gt = np.array([[1, 1, 255]], np.uint8), np.array([[True, True, False]])
    for rule in ("drop", "background"):
        cm = confusion_matrix(*apply_pixel_rule(pred, gt, 2, rule), 2)
        assert cm.tolist() == ([[0, 0, 0], [0, 2, 0]] if rule == "drop" else [[1, 0, 0], [0, 2, 0]])


def test_the_class_averages_by_hand():
    # class 0: IoU 50 (TP 1, FN 1); class 1: predicted only (IoU 0); class 2: nowhere (undefined)
    cm = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    assert scores(cm, "defined").miou == pytest.approx(25.0)  # (50 + 0) / 2
    assert scores(cm, "all").miou == pytest.approx(50 / 3)  # (50 + 0 + 0) / 3
    assert scores(cm, "gt").miou == pytest.approx(50.0)  # class 0 only
    assert scores(cm, "gt").miou_classes == 1 and scores(cm, "all").miou_classes == 3
    assert scores(cm, "all").mean_precision == pytest.approx(100 / 3)  # precision 100, 0 (0/1), 0 (empty)
    with pytest.raises(ValueError, match="unknown class average"):
        scores(cm, "present")


def test_the_convention_is_named_in_the_table_and_the_json(tmp_path):
    _dataset(tmp_path, 0)
    doc, output = _eval(tmp_path, "eps")
    assert doc["source"]["convention"] == "eps"
    flat = " ".join(output.split())
    assert "scored as EPS's evaluate_png.py (also SIPE's eval_sem_seg.py): pixels predicted" in flat
    assert "those pixels are left out (README, Conventions)" in flat  # the non-label warning says what happened
    doc, output = _eval(tmp_path, "default")
    assert doc["source"]["convention"] == "default" and "scored as" not in output
    assert "count as misses of the GT class" in " ".join(output.split())


def test_an_unknown_convention_is_refused(tmp_path):
    _dataset(tmp_path, 0)
    result = runner.invoke(app, ["eval", "--pred", str(tmp_path / "pred"), "--gt", str(tmp_path / "gt"),
                                 "--convention", "mmseg"])
    assert result.exit_code == 2 and "mmseg" in result.output
