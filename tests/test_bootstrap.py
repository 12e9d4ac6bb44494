"""The paired bootstrap of mIoU changes (``sepl_tree.bootstrap``) and its place in ``compare``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import sepl_tree.bootstrap as bootstrap
from sepl_tree.bootstrap import bootstrap_miou, draw_indices, interval, mean_iou, sparse_cells
from sepl_tree.cli import app
from sepl_tree.metrics import scores

K = 5


def random_confusions(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    """Per image a (K, K+1) matrix over two or three classes, some pixels predicted as no label."""
    out = []
    for _ in range(n):
        cm = np.zeros((K, K + 1), np.int64)
        present = rng.choice(K, rng.integers(2, 4), replace=False)
        for a in present:
            for b in present:
                cm[a, b] = rng.integers(0, 400)
        cm[present[0], K] = rng.integers(0, 30)
        out.append(cm)
    return out


def test_mean_iou_is_the_miou_of_scores_with_absent_classes_left_out():
    rng = np.random.default_rng(3)
    cms = random_confusions(rng, 40) + [np.zeros((K, K + 1), np.int64)]
    got = mean_iou(np.stack(cms))
    for cm, value in zip(cms[:-1], got[:-1], strict=True):
        assert value == pytest.approx(scores(cm).miou, abs=1e-12)
    assert np.isnan(got[-1]) and np.isnan(scores(cms[-1]).miou)  # no class anywhere: no mIoU


@pytest.mark.parametrize("average", ["defined", "all", "gt"])
def test_mean_iou_follows_each_class_average_of_scores(average):
    rng = np.random.default_rng(5)
    cms = random_confusions(rng, 40)
    for cm in cms[::4]:  # a class only predicted (in no GT row): "gt" leaves it out, the others count its 0
        cm[0, K - 1] += 7
        cm[K - 1, :] = 0
    got = mean_iou(np.stack(cms), average)
    for cm, value in zip(cms, got, strict=True):
        assert value == pytest.approx(scores(cm, average).miou, abs=1e-12)
    assert len({round(float(v), 9) for v in (mean_iou(cms[0], a) for a in ("defined", "all", "gt"))}) > 1
    empty = np.zeros((K, K + 1), np.int64)  # (an empty subset under "all" read as 0.0 mIoU)
    assert np.isnan(mean_iou(empty, average)) and np.isnan(scores(empty, average).miou)
    with pytest.raises(ValueError, match="unknown class average"):
        mean_iou(cms[0], "present")


def test_each_draw_scores_the_summed_matrices_of_the_images_it_drew():
    rng = np.random.default_rng(4)
    columns = [random_confusions(rng, 30), random_confusions(rng, 30)]
    cells = [[sparse_cells(columns[0][i]), sparse_cells(columns[1][i])] for i in range(30)]
    got = bootstrap_miou(cells, K, 50)
    expected = [[scores(sum(column[i] for i in drawn)).miou for column in columns]
                for chunk in draw_indices(30, 50) for drawn in chunk]
    assert got.shape == (2, 50)
    assert np.allclose(got.T, np.array(expected), rtol=0, atol=1e-12)


def test_the_draws_do_not_depend_on_how_many_are_held_at_once(monkeypatch):
    rng = np.random.default_rng(5)
    cells = [[sparse_cells(cm)] for cm in random_confusions(rng, 25)]
    whole = bootstrap_miou(cells, K, 40)
    monkeypatch.setattr(bootstrap, "_DRAWN_AT_ONCE", 100)  # 100 // K(K+1) = 3 draws at a time, the last alone
    assert [len(chunk) for chunk in draw_indices(25, 40, cells=K * (K + 1))] == [3] * 13 + [1]
    assert np.array_equal(bootstrap_miou(cells, K, 40), whole)
    assert not np.array_equal(bootstrap_miou(cells, K, 40, seed=1), whole)


def test_a_column_against_itself_changes_by_nothing_on_every_draw():
    rng = np.random.default_rng(6)
    cells = [[sparse_cells(cm), sparse_cells(cm)] for cm in random_confusions(rng, 20)]
    drawn = bootstrap_miou(cells, K, 30)
    assert interval(drawn[1] - drawn[0]) == (0.0, 0.0)
    assert interval(np.array([np.nan])) is None


@pytest.fixture
def compared(tmp_path):
    from sepl_tree.demo import write_demo

    root = tmp_path / "demo"
    write_demo(root)  # 16 images
    args = ["compare", "-s", "threshold,official", "--pseudo-labels", str(root / "pseudo"), "--masks",
            str(root / "masks"), "--gt", str(root / "gt"), "--strips", "0", "--subset", "envelope"]
    return args, tmp_path


def test_compare_gives_each_change_its_interval_and_none_to_small_subsets(compared):
    args, tmp_path = compared
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "a" / "compare.json").read_text())
    assert doc["bootstrap"] == 1000
    every, few = doc["results"]["all"], doc["results"]["envelope"]
    boot = every["bootstrap"]
    assert (boot["draws"], boot["level"], boot["seed"], boot["against"]) == (1000, 0.95, 0, "threshold")
    for name in ("threshold", "official"):
        change = boot["against_input"][name]
        assert change["change"] == every["strategies"][name]["delta"]["miou"]
        low, high = change["interval"]
        assert low <= high and low < change["change"] + 1e-9 and change["change"] - 1e-9 < high
    versus = boot["against_first"]["official"]
    assert versus["change"] == pytest.approx(every["strategies"]["official"]["miou"]
                                             - every["strategies"]["threshold"]["miou"], abs=1e-3)
    assert list(boot["against_first"]) == ["official"]
    assert few["images"] < bootstrap.BOOTSTRAP_MIN_IMAGES
    assert few["bootstrap"]["against_input"]["official"]["interval"] is None and few["bootstrap"]["draws"] == 0
    said = " ".join(result.output.split())
    assert "mIoU change, 95% interval over 1000 bootstrap draws of the images" in said
    assert f"{every['strategies']['official']['delta']['miou']:+.2f} [{low:+.2f}, {high:+.2f}]" in said
    report = (tmp_path / "a" / "report.md").read_text()
    assert "## mIoU changes, with bootstrap intervals" in report and "| all | official |" in report


def test_with_one_strategy_there_is_no_column_against_the_first(compared):
    args, tmp_path = compared
    args = [a if a != "threshold,official" else "official" for a in args]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "c")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "vs input" in result.output and "vs official" not in result.output
    report = (tmp_path / "c" / "report.md").read_text()
    assert "| subset | strategy | vs input |\n" in report and "| all | official | " in report


def test_compare_without_draws_has_no_intervals(compared):
    args, tmp_path = compared
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b"), "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "b" / "compare.json").read_text())
    assert doc["bootstrap"] == 0 and all("bootstrap" not in entry for entry in doc["results"].values())
    assert "bootstrap" not in result.output
    assert "bootstrap intervals" not in (tmp_path / "b" / "report.md").read_text()


def test_when_every_subset_is_too_small_it_says_so_not_over_0_draws(tmp_path):
    from sepl_tree.demo import write_demo

    root = tmp_path / "demo"
    write_demo(root, n_images=6)
    out = tmp_path / "small"
    result = CliRunner().invoke(app, ["compare", "-s", "threshold,official", "--pseudo-labels", str(root / "pseudo"),
                                      "--masks", str(root / "masks"), "--gt", str(root / "gt"), "--strips", "0",
                                      "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "no mIoU change has an interval: every subset has fewer than 10 images" in said and "0 bootstrap" not in said
    report = (out / "report.md").read_text()
    assert "None: every subset has fewer than 10 images." in report and "over 0 draws" not in report
