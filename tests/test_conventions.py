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
from tests.helpers import write_dataset

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


def _enhance_dataset(root, seed, count=12):
    """Pseudo-labels near the GT with 255 (unsure) pixels and class 3 (never in the GT), one mask per
    GT region (so the strategies change the labels); class 4 is nowhere."""
    rng = np.random.default_rng(seed)
    items = {}
    for n in range(count):
        gt = rng.choice([0, 1, 2, 255], size=(12, 14), p=[0.5, 0.25, 0.15, 0.1]).astype(np.uint8)
        pseudo = np.where(gt == 255, 0, gt).astype(np.uint8)
        noisy = rng.random(gt.shape) < 0.3
        pseudo[noisy] = rng.choice([0, 1, 3, 255], size=int(noisy.sum()))
        masks = np.stack([gt == c for c in (0, 1, 2) if (gt == c).any()])
        items[f"i{n:02d}"] = (pseudo, masks, gt)
    return write_dataset(root, items)


def _eval_folder(pred, gt, tmp_path, convention):
    out = tmp_path / f"eval-{convention}-{pred.name}.json"
    result = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(gt), "--num-classes", str(K),
                                 "--json", str(out), "--convention", convention])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def test_run_scores_its_input_and_output_under_each_convention_as_eval_does(tmp_path):
    pseudo, masks, gt = _enhance_dataset(tmp_path / "data", 0)
    out = tmp_path / "out"
    got = {}
    for name in CONVENTIONS:  # (one folder: the convention is no setting of the outputs, they are reused)
        result = runner.invoke(app, ["run", "--pseudo-labels", str(pseudo), "--masks", str(masks), "--gt", str(gt),
                                     "--out", str(out), "--num-classes", str(K), "--convention", name])
        assert result.exit_code == 0, result.output
        assert ("scored as" in result.output) == (name != "default")
        doc = json.loads((out / "run.json").read_text())
        assert doc["eval"]["convention"] == name
        assert doc["counts"]["written"] == (12 if name == "default" else 0)
        got[name] = doc["eval"]["input"]["miou"], doc["eval"]["output"]["miou"]
        assert got[name][0] == pytest.approx(_eval_folder(pseudo, gt, tmp_path, name)["miou"], abs=1e-4)
        assert got[name][1] == pytest.approx(_eval_folder(out, gt, tmp_path, name)["miou"], abs=1e-4)
    assert len({before for before, _ in got.values()}) == len(CONVENTIONS), got  # each reading parts here
    assert all(after > before for before, after in got.values())


def test_run_refuses_a_convention_without_ground_truth(tmp_path):
    pseudo, masks, _ = _enhance_dataset(tmp_path / "data", 0, count=2)
    result = runner.invoke(app, ["run", "--pseudo-labels", str(pseudo), "--masks", str(masks),
                                 "--out", str(tmp_path / "out"), "--num-classes", str(K), "--convention", "seam"])
    assert result.exit_code == 1 and "--convention seam says how the scores against --gt are taken" in result.output
    assert not (tmp_path / "out").exists()


def test_compare_scores_its_subsets_and_bootstrap_under_the_convention(tmp_path):
    pseudo, masks, gt = _enhance_dataset(tmp_path / "data", 1)
    out = tmp_path / "cmp"
    docs = {}
    for name in ("default", "seam", "irn"):
        result = runner.invoke(app, ["compare", "--strategies", "threshold,official", "--pseudo-labels", str(pseudo),
                                     "--masks", str(masks), "--gt", str(gt), "--out", str(out), "--num-classes",
                                     str(K), "--subset", "all", "--bootstrap", "200", "--strips", "0",
                                     "--convention", name])
        assert result.exit_code == 0, result.output
        doc = docs[name] = json.loads((out / "compare.json").read_text())
        assert doc["convention"] == name and f"- convention: `{name}`" in (out / "report.md").read_text()
        assert doc["counts"]["outputs_computed"] == (24 if name == "default" else 0)
        entry = doc["results"]["all"]
        assert entry["input"]["miou"] == pytest.approx(_eval_folder(pseudo, gt, tmp_path, name)["miou"], abs=1e-3)
        for strategy in ("threshold", "official"):
            scored = _eval_folder(out / strategy, gt, tmp_path, name)
            assert entry["strategies"][strategy]["miou"] == pytest.approx(scored["miou"], abs=1e-3)
        boot = entry["bootstrap"]["against_input"]["threshold"]
        assert boot["change"] == pytest.approx(entry["strategies"]["threshold"]["miou"] - entry["input"]["miou"],
                                               abs=1e-3)
        low, high = boot["interval"]
        assert low <= high
    assert docs["seam"]["results"]["all"]["input"]["miou"] < docs["default"]["results"]["all"]["input"]["miou"]
    seam, default = (docs[n]["results"]["all"]["bootstrap"]["against_input"]["threshold"]["interval"]
                     for n in ("seam", "default"))
    assert seam != default  # the draws are scored under the convention too
