"""``benchmarks/quality.py``: its numbers are ``sepl-tree run --gt``'s, and its verdicts follow its rows."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from sepl_tree.cli import app
from sepl_tree.masks import MaskSet
from sepl_tree.sample import Sample
from tests.helpers import masks_from_strings

BENCH = Path(__file__).parents[1] / "benchmarks" / "quality.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("quality_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_demo_bed_scores_as_the_demo_run_does(bench, tmp_path, monkeypatch):
    monkeypatch.setenv("SEPL_TREE_NO_PROGRESS", "1")
    report = tmp_path / "q.json"
    assert bench.main(["--beds", "demo", "--workers", "1", "--no-structure", "--json", str(report)]) == 0
    rows = {r["row"]: r for r in json.loads(report.read_text())["rows"]}
    assert {"input", "threshold", "official", "tree-prompt", "tree-smallest-cover", "tree-residual",
            "GT-guided"} <= set(rows)
    assert rows["threshold"]["delta"] == 0
    assert rows["tree-prompt"]["delta"] == pytest.approx(rows["tree-prompt"]["miou"] - rows["threshold"]["miou"])
    monkeypatch.chdir(tmp_path)
    for strategy in ("threshold", "tree-prompt"):
        result = CliRunner().invoke(app, ["run", "--strategy", strategy])
        assert result.exit_code == 0, result.output
        ran = json.loads((tmp_path / "sepl-demo-output" / strategy / "run.json").read_text())["eval"]
        assert rows[strategy]["miou"] == pytest.approx(ran["output"]["miou"], abs=5e-5)  # run.json keeps 4 decimals
        assert rows["input"]["miou"] == pytest.approx(ran["input"]["miou"], abs=5e-5)  # run.json keeps 4 decimals


def test_gt_guided_keeps_masks_mostly_inside_their_class(bench):
    # Class 4 pseudo-label on pixels 1..4; mask 0 (1..3) lies in the GT boat, mask 1 (0..7) mostly not.
    pseudo = np.array([[0, 4, 4, 4, 4, 0, 0, 0]], np.uint8)
    gt = np.array([[0, 4, 4, 4, 0, 0, 0, 0]], np.uint8)
    sample = Sample(pseudo, MaskSet(masks_from_strings([".###...."], ["########"])), 21)
    assert bench.gt_guided(sample, gt).tolist() == [[0, 4, 4, 4, 0, 0, 0, 0]]


def test_summary_verdicts_follow_the_rows(bench):
    def row(bed, name, delta, rec=None, other=None):
        r = {"bed": bed, "row": name, "miou": 50 + delta, "precision": 0, "recall": 0, "delta": delta,
             "delta_halves": [delta, delta]}
        if rec is not None:
            r.update(rec=rec, delta_other=other)
        return r

    rows = [row("real SAM 2.1", "threshold", 0), row("real SAM 2.1", "a", 1.2), row("real SAM 2.1", "b", 0.5),
            row("synth r0.3 s0", "threshold", 0, 0, 0), row("synth r0.3 s0", "a", 3, 0.8, -0.1),
            row("synth r0.3 s0", "b", 2, 0.9, -0.4), row("real SAM 2.1", "c", -0.5),
            row("synth r0.3 s0", "c", 1, 0.6, 0.0)]
    table = bench.render(rows, [], ["threshold", "a", "b", "c"])
    line = {ln.split("|")[1].strip(): ln.rstrip() for ln in table.splitlines() if ln[:4] in ("| a ", "| b ", "| c ")}
    assert line["a"].endswith("| yes | yes |") and "+1.20" in line["a"]
    assert line["b"].endswith("| no | yes |")  # Δ other -0.4 misses the envelope target
    assert line["c"].endswith("| yes | no |")  # -0.5 on the real bed is below threshold by more than 0.3
