"""`sepl-tree compare` end to end on the synthetic demo set, checked against `sepl-tree eval`."""

import csv
import json
import re

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from sepl_tree.classes import VOC_CLASSES
from sepl_tree.cli import app
from sepl_tree.compare import CompareConfig, CompareJob, disagreement
from sepl_tree.demo import write_demo
from sepl_tree.errors import SeplError
from sepl_tree.files import read_png
from sepl_tree.inputs import InputConfig
from sepl_tree.selection import route_params
from sepl_tree.plugins import load_host
from sepl_tree.subsets import SUBSETS
from tests.helpers import needs_ray

runner = CliRunner()
STRATEGIES = "threshold,official"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    ids = write_demo(root, n_images=8, seed=3)
    return root, ids


def _compare(demo, out, *extra):
    root, _ = demo
    args = ["compare", "--strategies", STRATEGIES, "--pseudo-labels", root / "pseudo", "--masks", root / "masks",
            "--gt", root / "gt", "--out", out, "--images", root / "images", *extra]
    return runner.invoke(app, [str(a) for a in args])


def _eval(pred, gt, tmp_path, ids=None):
    json_out = tmp_path / f"eval-{abs(hash((str(pred), tuple(ids or ()))))}.json"
    args = ["eval", "--pred", str(pred), "--gt", str(gt), "--json", str(json_out)]
    if ids is not None:
        (tmp_path / "ids.txt").write_text("\n".join(ids))
        args += ["--ids", str(tmp_path / "ids.txt")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return json.loads(json_out.read_text())


@pytest.fixture(scope="module")
def compared(demo, tmp_path_factory):
    out = tmp_path_factory.mktemp("cmp") / "out"
    result = _compare(demo, out)
    assert result.exit_code == 0, result.output
    return out, result.output


def _decodable_png(path):
    assert path.is_file() and path.stat().st_size > 0
    with Image.open(path) as img:
        img.load()
        assert img.format == "PNG" and img.width > 10 and img.height > 10


def test_compare_writes_every_output_and_matches_eval(demo, compared, tmp_path):
    root, ids = demo
    out, _ = compared
    doc = json.loads((out / "compare.json").read_text())
    assert doc["strategies"] == ["threshold", "official"] and doc["subsets"] == list(SUBSETS)
    assert doc["class_names"] == list(VOC_CLASSES)  # what the evidence's class indices name
    assert list(doc["results"]["all"]["input"]["per_class"]) == list(VOC_CLASSES)
    every = doc["results"]["all"]
    assert every["images"] == len(ids)
    for name in ("threshold", "official"):
        assert sorted(p.stem for p in (out / name).glob("*.png")) == ids
        ev = _eval(out / name, root / "gt", tmp_path)
        for metric in ("miou", "precision", "recall"):
            assert every["strategies"][name][metric] == pytest.approx(ev[metric], abs=1e-3)
            delta = every["strategies"][name][metric] - every["input"][metric]
            assert every["strategies"][name]["delta"][metric] == pytest.approx(delta, abs=1e-3)
    ev_input = _eval(root / "pseudo", root / "gt", tmp_path)
    assert every["input"]["miou"] == pytest.approx(ev_input["miou"], abs=1e-3)


def test_compare_subset_scores_are_eval_on_the_subset_images(demo, compared, tmp_path):
    root, ids = demo
    out, _ = compared
    doc = json.loads((out / "compare.json").read_text())
    with open(out / "compare.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["id"] for r in rows] == ids
    checked = 0
    for subset in SUBSETS:
        members = [r["id"] for r in rows if r[subset] == "1"]
        assert doc["results"][subset]["images"] == len(members)
        assert sorted(i for i, v in doc["images"].items() if subset in v["subsets"]) == members
        if members and subset != "all":
            ev = _eval(out / "threshold", root / "gt", tmp_path, members)
            assert doc["results"][subset]["strategies"]["threshold"]["miou"] == pytest.approx(ev["miou"], abs=1e-3)
            checked += 1
    assert checked >= 1  # the demo has at least one non-trivial subset


def test_compare_pictures_and_report(compared):
    out, output = compared
    for metric in ("miou", "precision", "recall"):
        _decodable_png(out / "figures" / f"{metric}.png")
    report = (out / "report.md").read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    strips = [p for p in linked if "strip_" in p]
    assert len(linked) == 3 + len(strips) and strips
    for rel in linked:
        _decodable_png(out / rel)
    assert "| all | 8 |" in report
    assert "threshold" in output and "official" in output  # the terminal table


def test_a_rerun_with_fewer_strips_leaves_no_old_strip_behind(demo, compared, tmp_path):
    out = tmp_path / "again"
    assert _compare(demo, out).exit_code == 0
    assert len(list((out / "figures").glob("strip_*.png"))) > 1
    result = _compare(demo, out, "--strips", "1")
    assert result.exit_code == 0, result.output
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (out / "report.md").read_text())
    assert sorted(f"figures/{p.name}" for p in (out / "figures").iterdir()) == sorted(linked)
    assert len([rel for rel in linked if "strip_" in rel]) == 1
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.slow  # a process pool
def test_compare_same_results_with_workers_and_on_resume(demo, compared, tmp_path):
    out, _ = compared
    first = json.loads((out / "compare.json").read_text())
    other = tmp_path / "w2"
    result = _compare(demo, other, "--workers", "2")
    assert result.exit_code == 0, result.output
    second = json.loads((other / "compare.json").read_text())
    assert second["results"] == first["results"] and second["images"] == first["images"]
    assert (other / "compare.csv").read_bytes() == (out / "compare.csv").read_bytes()
    # resume: nothing recomputed, the same numbers
    (other / "official" / "demo_002.png").unlink()
    result = _compare(demo, other)
    assert result.exit_code == 0, result.output
    resumed = json.loads((other / "compare.json").read_text())
    assert resumed["counts"]["outputs_computed"] == 1
    assert resumed["results"] == first["results"]


def test_compare_params_per_strategy(demo, tmp_path):
    root, ids = demo
    result = _compare(demo, tmp_path / "p", "--param", "threshold:t2=1.0", "--param", "t1=0.99", "--subset", "nested")
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "p" / "compare.json").read_text())
    assert doc["params"]["threshold"] == {"t1": 0.99, "t2": 1.0}
    assert doc["params"]["official"] == {"t2": 0.85}  # official has no t1
    assert doc["subsets"] == ["all", "nested"] and set(doc["results"]) == {"all", "nested"}


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--strategies", "threshold,nope"], 2, "valid choices"),
    (["--subset", "bogus"], 2, "valid choices"),
    (["--param", "nobody:t1=1"], 1, "neither 'reader'"),
    (["--param", "zzz=1"], 1, "--param zzz: no such parameter"),
])
def test_compare_user_errors(demo, tmp_path, args, code, message):
    root, _ = demo
    base = {"--strategies": STRATEGIES, "--pseudo-labels": root / "pseudo", "--masks": root / "masks",
            "--gt": root / "gt", "--out": tmp_path / "e"}
    if args[0] in base:
        base[args[0]] = args[1]
        args = []
    cli = ["compare", *[str(x) for kv in base.items() for x in kv], *args]
    result = runner.invoke(app, cli)
    assert result.exit_code == code, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_compare_missing_gt_names_the_file(demo, tmp_path):
    root, ids = demo
    gt = tmp_path / "gt"
    gt.mkdir()
    for i in ids[1:]:
        (gt / f"{i}.png").write_bytes((root / "gt" / f"{i}.png").read_bytes())
    result = runner.invoke(app, ["compare", "--strategies", "threshold", "--pseudo-labels", str(root / "pseudo"),
                                 "--masks", str(root / "masks"), "--gt", str(gt), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert f"{ids[0]}.png" in result.output


def test_compare_job_matches_plain_strategy_runs(demo, tmp_path):
    """The job's shared Sample gives the same label maps as running each strategy alone."""
    from sepl_tree.masks import read_masks
    from sepl_tree.selection import Selector

    root, ids = demo
    host = load_host(autoload=False)
    config = CompareConfig(InputConfig(root / "pseudo", root / "masks", root / "gt"), tmp_path / "j",
                           ("threshold", "official"))
    result = CompareJob(config).setup()(ids[0])
    pseudo = read_png(root / "pseudo" / f"{ids[0]}.png")
    masks = read_masks(root / "masks", ids[0], pseudo.shape)
    for name in config.strategies:
        alone = Selector(host.strategy(name), {})(pseudo, masks)
        assert np.array_equal(read_png(config.output_path(name, ids[0])), alone)
    assert result.flags["all"] is True and result.cms["threshold"].shape == (21, 22)


def test_route_params_prefers_reader_and_rejects_unknown_owner():
    host = load_host(autoload=False)
    strategies = {"threshold": host.strategy("threshold")}
    with pytest.raises(SeplError):
        route_params({"official:t2": "1"}, strategies, host.reader("png"))
    assert route_params({"reader:x": "1"}, strategies, host.reader("png")) == ({"threshold": {}}, {"x": "1"})


def test_disagreement_counts_pixels_where_any_map_differs():
    a = np.zeros((2, 2), np.uint8)
    b, c = a.copy(), a.copy()
    b[0, 0], c[1, 1] = 1, 2
    assert disagreement([a, b, c]) == 0.5
    assert disagreement([a]) == 0.0


@pytest.mark.parametrize("synthetic", [True, False])
def test_compare_flags_synthetic_masks_in_the_report(demo, tmp_path, synthetic):
    from sepl_tree.masks import MaskSet, read_masks, write_masks_rle

    root, ids = demo
    masks_dir = tmp_path / "masks"
    for image_id in ids[:2]:
        ms = read_masks(root / "masks", image_id)
        records = [{**{k: v for k, v in r.items() if k != "synthetic"}, **({"synthetic": True} if synthetic else {})}
                   for r in ms.records]
        write_masks_rle(masks_dir / f"{image_id}.json", MaskSet(ms.masks, records))
    (tmp_path / "ids.txt").write_text("\n".join(ids[:2]))
    out = tmp_path / "o"
    result = runner.invoke(app, ["compare", "--strategies", "threshold", "--pseudo-labels", str(root / "pseudo"),
                                 "--masks", str(masks_dir), "--gt", str(root / "gt"), "--out", str(out),
                                 "--ids", str(tmp_path / "ids.txt")])
    assert result.exit_code == 0, result.output
    assert ("SYNTHETIC" in result.output) == synthetic
    assert ("SYNTHETIC masks" in (out / "report.md").read_text()) == synthetic
    assert json.loads((out / "compare.json").read_text())["counts"]["synthetic_masks"] == (2 if synthetic else 0)


@needs_ray
def test_compare_on_ray_gives_the_same_results(demo, compared, tmp_path, local_ray):
    out, _ = compared
    result = _compare(demo, tmp_path / "ray", "--executor", "ray", "--workers", "2")
    assert result.exit_code == 0, result.output
    on_ray = json.loads((tmp_path / "ray" / "compare.json").read_text())
    first = json.loads((out / "compare.json").read_text())
    assert on_ray["results"] == first["results"] and on_ray["images"] == first["images"]
    assert on_ray["execution"]["executor"] == "ray" and on_ray["execution"]["workers"]["asked"] == 2
    assert on_ray["execution"]["cluster"] == {"nodes": 1, "cpus": 2, "gpus": 0}
    assert (tmp_path / "ray" / "compare.csv").read_bytes() == (out / "compare.csv").read_bytes()


def test_compare_unknown_executor_is_one_line(demo, tmp_path):
    result = _compare(demo, tmp_path / "x", "--executor", "dask")
    assert result.exit_code == 2  # a usage error, listing the choices
    assert "'dask' is not one of 'process', 'serial', 'ray'" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "x").exists()


def test_each_strategy_folder_says_finished_or_stopped(demo, tmp_path):
    """(Each OUT/<strategy>/run.json stayed "running" after compare, finished or not.)"""
    root, ids = demo
    out = tmp_path / "out"
    assert _compare(demo, out).exit_code == 0
    for name in STRATEGIES.split(","):
        doc = json.loads((out / name / "run.json").read_text())
        assert doc["status"] == "finished" and doc["settings"]["strategy"] == name
        assert doc["counts"] == {"images": len(ids), "written": len(ids), "skipped_existing": 0}
    (out / "official" / f"{ids[2]}.png").unlink()
    (root / "gt" / f"{ids[3]}.png").rename(tmp_path / "gt3.png")  # the rerun fails on reading ids[3]'s GT
    (root / "gt" / f"{ids[3]}.png").write_bytes(b"not a png")
    try:
        failed = _compare(demo, out)
    finally:
        (tmp_path / "gt3.png").replace(root / "gt" / f"{ids[3]}.png")
    assert failed.exit_code == 1 and "not a PNG file" in failed.output
    assert (out / "official" / f"{ids[2]}.png").is_file()  # made again before the stop, and kept
    for name in STRATEGIES.split(","):
        doc = json.loads((out / name / "run.json").read_text())
        assert doc["status"] == "stopped" and "not a PNG file" in doc["error"]
        written = 1 if name == "official" else 0  # up to the stop: the 3 images before ids[3], ids[2] made again
        assert doc["counts"] == {"images": len(ids), "written": written, "skipped_existing": 3 - written}
    assert _compare(demo, out).exit_code == 0
    doc = json.loads((out / "official" / "run.json").read_text())
    assert doc["status"] == "finished" and doc["counts"]["written"] == 0  # (the stopped run's output is reused)


def test_an_image_missing_from_images_costs_its_photo_not_the_report(demo, tmp_path):
    import shutil

    root, ids = demo
    images = tmp_path / "images"
    shutil.copytree(root / "images", images)
    for path in images.iterdir():
        path.unlink()  # none of the photos: every strip drawn misses its photo
    args = ["compare", "--strategies", STRATEGIES, "--pseudo-labels", root / "pseudo", "--masks", root / "masks",
            "--gt", root / "gt", "--out", tmp_path / "out", "--images", images, "--strips", "2"]
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert result.output.count(": its strip has no photo") == 2 and f"{images}: no image for " in result.output
    assert (tmp_path / "out" / "compare.json").is_file() and (tmp_path / "out" / "report.md").is_file()


def test_every_demo_image_counts_as_synthetic_its_png_folders_too(demo, tmp_path):
    """(Every fourth demo image is an amg.py PNG folder, whose metadata.csv held none of the
    records' tags: compare said "SYNTHETIC masks in 6 of 8 images" of masks that are all synthetic.)"""
    from sepl_tree.masks import read_masks
    from sepl_tree.synth import KINDS

    root, ids = demo
    folder = read_masks(root / "masks", ids[3])
    assert {r["synthetic"] for r in folder.records} == {True} and {type(r["level"]) for r in folder.records} == {int}
    assert {r["kind"] for r in folder.records} <= set(KINDS)
    out = tmp_path / "cmp"
    assert _compare(demo, out, "--bootstrap", "0").exit_code == 0
    assert json.loads((out / "compare.json").read_text())["counts"]["synthetic_masks"] == len(ids)
