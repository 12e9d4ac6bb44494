"""``benchmarks/sam_gpu.py`` runs on the CPU with the tiny models (a smoke test of the GPU benchmark)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="SAM needs the sam extra: pip install 'sepl-tree[sam]'")
pytest.importorskip("segment_anything", reason="SAM needs the sam extra: pip install 'sepl-tree[sam]'")

from tests.tiny_sam_helpers import TINY, TINY_SAM2  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
BENCH = Path(__file__).parents[1] / "benchmarks" / "sam_gpu.py"


def _bench():
    spec = importlib.util.spec_from_file_location("sam_gpu_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_runs_stock_and_fast_on_the_cpu(tmp_path: Path) -> None:
    models, plugins = ["tiny"], ["--plugin", str(TINY)]
    if importlib.util.find_spec("sam2") is not None:
        models, plugins = [*models, "tiny-sam2"], [*plugins, "--plugin", str(TINY_SAM2)]
    out, table = tmp_path / "bench.json", tmp_path / "bench.md"
    code = _bench().main(["--models", ",".join(models), *plugins, "--device", "cpu", "--images", "2", "--size", "40x56",
                          "--param", "points_per_side=4", "--batch-images", "1,2", "--threads", "1",
                          "--json", str(out), "--markdown", str(table)])
    assert code == 0
    result = json.loads(out.read_text())
    rows = result["rows"]
    kinds = [(r["model"], r["preset"], r["engine"], r["precision"], r["batch_images"]) for r in rows]
    expected = [(m, p, e, q, b) for m in models for p in ("paper", "keep-all")
                for e, q, b in (("stock", "fp32", 1), ("fast", "fp32", 1), ("fast", "fp32", 2), ("fast", "bf16", 2))]
    assert kinds == expected
    assert all(r["images"] == 2 and r["images_per_s"] > 0 for r in rows)
    for r in rows:
        assert {"encoder", "decoder", "postprocess", "read", "write"} <= set(r["stage_seconds"]), r
        if r["preset"] == "keep-all":
            assert r["masks_per_image"] == 48
        if r["engine"] == "fast" and r["precision"] == "fp32" and r["preset"] == "keep-all":
            agreement = r["agreement"]  # fp32 fast == stock, record for record
            assert agreement["exact_records"] == agreement["reference_masks"] == 96
        if r["precision"] == "bf16" and r["preset"] == "keep-all":
            assert 0 < r["agreement"]["match_share"] <= 1
    assert result["meta"]["weights"] == "random" and result["meta"]["images"] == 2
    text = table.read_text()
    assert text.count("\n| tiny") == len(rows)
    assert "96/96 records exact" in text and "nan" not in text  # (no peak GPU memory on the CPU: left empty)
    empty = [r for r in rows if r.get("agreement") and not r["agreement"]["masks"] and not r["agreement"]["reference_masks"]]
    assert text.count("no masks to compare") == len(empty)  # not "0.0% at IoU >= 0.98" where nothing was compared
