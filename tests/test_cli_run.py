"""`sepl-tree run` end to end: outputs, manifest, resume, workers, parameters, bad input."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from sepl_tree.cli import app
from sepl_tree.executors.record import local_cluster
from sepl_tree.files import read_png, write_label_png
from sepl_tree.strategies.threshold import threshold
from tests.helpers import make_sample, write_dataset

runner = CliRunner()


def _scene(rng, shape=(12, 16)):
    """A pseudo-label with a partial class-1 blob, masks: the object, a part, an envelope, noise."""
    gt = np.zeros(shape, np.uint8)
    gt[3:9, 4:12] = 1
    gt[2, 4:12] = 255
    pseudo = np.zeros(shape, np.uint8)
    pseudo[4:8, 5:9] = 1
    masks = np.zeros((4, *shape), bool)
    masks[0, 3:9, 4:12] = True  # the object: o_s = 16/48 ... kept through o_p (covers all of P_1)
    masks[1, 3:9, 4:8] = True
    masks[2, 1:11, 2:14] = True  # envelope
    masks[3] = rng.random(shape) < 0.1
    return pseudo, masks, gt


@pytest.fixture
def dataset(tmp_path):
    rng = np.random.default_rng(0)
    items = {f"img{i}": _scene(rng) for i in range(4)}
    pseudo, masks, gt = write_dataset(tmp_path / "rle", items, "rle")
    _, masks_png, _ = write_dataset(tmp_path / "png", items, "png")
    return {"pseudo": pseudo, "masks": masks, "masks_png": masks_png, "gt": gt, "items": items, "root": tmp_path}


def _run(*args, **kw):
    result = runner.invoke(app, ["run", *map(str, args)], **kw)
    return result


def test_run_writes_palette_pngs_matching_the_rule(dataset, tmp_path):
    out = tmp_path / "out"
    result = _run("--pseudo-labels", dataset["pseudo"], "--masks", dataset["masks"], "--out", out)
    assert result.exit_code == 0, result.output
    for image_id, (pseudo, masks, _) in dataset["items"].items():
        with Image.open(out / f"{image_id}.png") as img:
            assert img.mode == "P"
            assert img.getpalette()[3:6] == [128, 0, 0]  # VOC colour of class 1
            got = np.array(img)
        assert np.array_equal(got, threshold(make_sample(pseudo, masks)))
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["settings"]["strategy"] == "threshold" and manifest["settings"]["params"] == {"t1": 0.5, "t2": 0.85}
    assert manifest["settings"]["reader"] == "png" and manifest["counts"]["written"] == 4
    assert manifest["settings"]["inputs"]["masks"] == str(dataset["masks"])
    assert "numpy" in manifest["versions"] and manifest["seconds"] >= 0


def test_both_mask_layouts_give_the_same_output(dataset, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _run("--pseudo-labels", dataset["pseudo"], "--masks", dataset["masks"], "--out", a).exit_code == 0
    assert _run("--pseudo-labels", dataset["pseudo"], "--masks", dataset["masks_png"], "--out", b).exit_code == 0
    for image_id in dataset["items"]:
        assert np.array_equal(read_png(a / f"{image_id}.png"), read_png(b / f"{image_id}.png"))


@pytest.mark.slow  # a process pool
def test_workers_give_identical_outputs(dataset, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    assert _run("--pseudo-labels", dataset["pseudo"], "--masks", dataset["masks"], "--out", one).exit_code == 0
    result = _run("--pseudo-labels", dataset["pseudo"], "--masks", dataset["masks"], "--out", two, "--workers", 2)
    assert result.exit_code == 0, result.output
    for image_id in dataset["items"]:
        assert (one / f"{image_id}.png").read_bytes() == (two / f"{image_id}.png").read_bytes()
    for folder, workers in ((one, 1), (two, 2)):  # run.json says how it ran
        assert json.loads((folder / "run.json").read_text())["execution"] == {
            "executor": "process", "workers": {"asked": workers, "used": workers, "lost": 0}, "retried_images": 0,
            "cluster": local_cluster()}


def test_resume_skips_existing_outputs_unless_overwrite(dataset, tmp_path):
    out = tmp_path / "out"
    args = ["--pseudo-labels", dataset["pseudo"], "--masks", dataset["masks"], "--out", out]
    assert _run(*args).exit_code == 0
    marker = np.full((12, 16), 7, np.uint8)
    write_label_png(out / "img0.png", marker)  # stands for a finished output of an earlier run
    (out / "img1.png").unlink()  # as if the earlier run was killed before this one
    assert _run(*args).exit_code == 0
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["counts"] == {"images": 4, "written": 1, "skipped_existing": 3, "kept_without_masks": 0,
                                  "made_again_inputs_changed": 0}
    assert np.array_equal(read_png(out / "img0.png"), marker)
    assert (out / "img1.png").exists()
    assert _run(*args, "--overwrite").exit_code == 0
    assert not np.array_equal(read_png(out / "img0.png"), marker)
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_params_config_ids_and_gt(dataset, tmp_path):
    out = tmp_path / "out"
    ids = tmp_path / "ids.txt"
    ids.write_text("img0\nimg2\n")
    config = tmp_path / "c.toml"
    config.write_text('strategy = "official"\n[params]\nt2 = 0.9\n')
    result = _run("--pseudo-labels", dataset["pseudo"], "--masks", dataset["masks"], "--out", out, "--ids", ids,
                  "--config", config, "--param", "t2=0.95", "--gt", dataset["gt"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["settings"]["strategy"] == "official" and manifest["settings"]["params"] == {"t2": 0.95}
    assert sorted(p.name for p in out.glob("*.png")) == ["img0.png", "img2.png"]
    assert manifest["eval"]["input"]["images"] == 2
    before, after = manifest["eval"]["input"]["miou"], manifest["eval"]["output"]["miou"]
    assert f"mIoU {before:.2f} -> {after:.2f}" in result.output


@pytest.mark.parametrize("name, k", [("voc", 21), ("coco", 81)])
def test_the_dataset_presets_are_configs_of_run(dataset, tmp_path, name, k):
    preset = Path(__file__).resolve().parents[1] / "configs" / f"{name}.toml"
    out = tmp_path / "out"
    result = _run("--pseudo-labels", dataset["pseudo"], "--masks", dataset["masks"], "--out", out, "--gt", dataset["gt"],
                  "--config", preset, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["settings"]["num_classes"] == k
    assert ("aeroplane" if name == "voc" else "person") in result.output  # its class names label the scores


def test_the_dataset_presets_are_configs_of_eval_and_compare(dataset, tmp_path):
    from sepl_tree.classes import COCO_CLASSES

    coco = Path(__file__).resolve().parents[1] / "configs" / "coco.toml"
    scores = tmp_path / "scores.json"
    result = runner.invoke(app, ["eval", "--pred", str(dataset["pseudo"]), "--gt", str(dataset["gt"]),
                                 "--config", str(coco), "--json", str(scores)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert list(json.loads(scores.read_text())["per_class"]) == list(COCO_CLASSES) and "person" in result.output
    result = runner.invoke(app, ["compare", "-s", "threshold", "--pseudo-labels", str(dataset["pseudo"]), "--masks",
                                 str(dataset["masks"]), "--gt", str(dataset["gt"]), "--out", str(tmp_path / "cmp"),
                                 "--subset", "all", "--config", str(coco)])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert doc["num_classes"] == 81 and doc["class_names"] == list(COCO_CLASSES)


def test_config_keys_are_the_options_long_names_and_a_bad_value_names_the_file(dataset, tmp_path):
    """(eval's --json had the key json_out, its Python name; and a bad value in a preset was an
    error about the option, not about the file it came from.)"""
    config, scores = tmp_path / "c.toml", tmp_path / "s.json"
    config.write_text(f'json = "{scores}"\nallow_missing = true\n')
    argv = ["eval", "--pred", str(dataset["pseudo"]), "--gt", str(dataset["gt"]), "--config", str(config)]
    result = runner.invoke(app, argv, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "per_class" in json.loads(scores.read_text())
    config.write_text(f'json_out = "{scores}"\n')
    result = runner.invoke(app, argv, env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "c.toml: unknown key 'json_out'; valid keys: allow_missing, convention, gt, ids, json," in (
        " ".join(result.output.split()))
    config.write_text("num_classes = 300\n")
    result = runner.invoke(app, argv, env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "c.toml: num_classes = 300: " in " ".join(result.output.split())
    config.write_text('executor = "dask"\n')
    result = runner.invoke(app, ["run", "--config", str(config)], env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "c.toml: executor = 'dask': " in " ".join(result.output.split())


@pytest.mark.parametrize("table, expected", [
    ("[params]\nt9 = 0.3\n", "c.toml: [params] t9: no such parameter (strategy 'threshold': t1, t2;"),
    ('[params]\nt1 = "abc"\n', "c.toml: [params] strategy 'threshold': parameter 't1': expected float, got 'abc'"),
    ("[params]\nt1 = 1.5\n", "c.toml: [params] strategy 'threshold': parameter 't1': must be in [0, 1], got 1.5"),
    ("[reader_params]\nbg = 0.3\n", "c.toml: [reader_params] reader 'png' has no parameter 'bg'"),
])
def test_a_bad_parameter_in_a_config_file_names_the_file_and_table(dataset, tmp_path, table, expected):
    """(It named --param, which the command line did not have.) Checked before anything is written;
    a bad --param on the command line is still named as one."""
    config, out = tmp_path / "c.toml", tmp_path / "o"
    config.write_text(table)
    result = _run("--pseudo-labels", dataset["pseudo"], "--masks", dataset["masks"], "--out", out,
                  "--config", config, env={"COLUMNS": "300"})
    assert result.exit_code == 1 and expected in " ".join(result.output.split()), result.output
    assert not out.exists()
    config.write_text("[params]\nt1 = 0.3\n")
    result = _run("--pseudo-labels", dataset["pseudo"], "--masks", dataset["masks"], "--out", out,
                  "--config", config, "--param", "t9=1", env={"COLUMNS": "300"})
    assert result.exit_code == 1 and "error: --param t9: no such parameter" in result.output, result.output


def test_an_unknown_strategy_or_reader_from_a_config_file_names_the_file(dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # (where the demo would write its inputs)
    config = tmp_path / "c.toml"
    config.write_text('strategy = "tree-promt"\n')
    result = _run("--config", config, env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "c.toml: strategy: unknown strategy 'tree-promt'; valid choices: " in (
        " ".join(result.output.split())), result.output
    config.write_text('reader = "pngg"\n')
    result = _run("--pseudo-labels", dataset["pseudo"], "--masks", dataset["masks"], "--out", tmp_path / "o",
                  "--config", config, env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "c.toml: reader: unknown reader 'pngg'" in " ".join(result.output.split())
    result = _run("--config", config, "--reader", "nope", env={"COLUMNS": "300"})  # the command line's own
    assert result.exit_code == 2 and "error: unknown reader 'nope'" in result.output
    assert not (tmp_path / "sepl-demo-output").exists()  # refused before the demo wrote anything


def test_eval_and_compare_configs_take_dataset_keys_only(dataset, tmp_path):
    config = tmp_path / "c.toml"
    eval_args = ["eval", "--pred", str(dataset["pseudo"]), "--gt", str(dataset["gt"]), "--config", str(config)]
    config.write_text('strategy = "official"\n')
    result = runner.invoke(app, eval_args, env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "c.toml: unknown key 'strategy'; valid keys: " in result.output
    assert "class_names, name, palette, category_ids" in result.output and "params" not in result.output
    config.write_text('class_names = ["background", "thing"]\n')
    result = runner.invoke(app, eval_args, env={"COLUMNS": "300"})
    assert result.exit_code == 1 and "c.toml: 2 class names given for 21 classes (--num-classes)" in result.output
    config.write_text('num_classes = 2\nclass_names = ["background", "thing"]\n')
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    write_label_png(pred / "a.png", np.array([[0, 1]], np.uint8))
    write_label_png(gt / "a.png", np.array([[0, 1]], np.uint8))
    result = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(gt), "--config", str(config)],
                           env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "thing" in result.output and "aeroplane" not in result.output


def test_a_config_with_another_palette_is_refused(dataset, tmp_path):
    config = tmp_path / "c.toml"
    config.write_text("palette = [[0, 0, 0], [255, 0, 0]]\n")
    result = _run("--pseudo-labels", dataset["pseudo"], "--masks", dataset["masks"], "--out", tmp_path / "o",
                  "--config", config, env={"COLUMNS": "300"})
    assert result.exit_code == 2 and "c.toml: palette: outputs are written with the VOC colour map" in result.output
    assert not (tmp_path / "o").exists()


def test_bad_param_is_one_clear_line(dataset, tmp_path):
    args = ["--pseudo-labels", dataset["pseudo"], "--masks", dataset["masks"], "--out", tmp_path / "o"]
    result = _run(*args, "--param", "t3=1")
    assert result.exit_code == 1
    assert "--param t3: no such parameter (strategy 'threshold': t1, t2; reader 'png': none)" in result.output
    result = _run(*args, "--param", "official:t2=0.9")
    assert result.exit_code == 1 and "'official' is neither 'reader' nor a strategy of this run (threshold)" in result.output
    result = _run(*args, "--param", "threshold:t2=0.99")
    assert result.exit_code == 0 and json.loads((tmp_path / "o" / "run.json").read_text())["settings"]["params"]["t2"] == 0.99
    result = _run(*args, "--param", "t1=abc")
    assert result.exit_code == 1 and "parameter 't1': expected float, got 'abc'" in result.output
    result = _run(*args, "--param", "t1")
    assert result.exit_code == 2 and "not NAME=VALUE" in result.output


def test_missing_masks_error_or_keep(dataset, tmp_path):
    (dataset["masks"] / "img3.json").unlink()
    out = tmp_path / "out"
    args = ["--pseudo-labels", dataset["pseudo"], "--masks", dataset["masks"], "--out", out]
    result = _run(*args)
    assert result.exit_code == 1 and "img3.json: no masks for image 'img3'" in result.output
    assert "--missing-masks keep" in result.output
    result = _run(*args, "--missing-masks", "keep")
    assert result.exit_code == 0, result.output
    assert np.array_equal(read_png(out / "img3.png"), dataset["items"]["img3"][0])
    assert json.loads((out / "run.json").read_text())["counts"]["kept_without_masks"] == 1
    n = len(dataset["items"])
    assert f"1 of {n} images had no masks (--missing-masks keep): their pseudo-labels are kept" in (
        " ".join(result.output.split()))
    compared = runner.invoke(app, ["compare", "-s", "threshold", "--pseudo-labels", str(dataset["pseudo"]),
                                   "--masks", str(dataset["masks"]), "--gt", str(dataset["gt"]), "--out",
                                   str(tmp_path / "cmp"), "--missing-masks", "keep"], env={"COLUMNS": "300"})
    assert compared.exit_code == 0, compared.output
    assert f"1 of {n} images had no masks" in compared.output
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["counts"]["kept_without_masks"] == 1


@pytest.mark.parametrize("problem", ["corrupt", "out_of_range", "size"])
def test_bad_pseudo_label_names_the_file_and_keeps_outputs(dataset, tmp_path, problem):
    out = tmp_path / "out"
    args = ["--pseudo-labels", dataset["pseudo"], "--masks", dataset["masks"], "--out", out]
    bad = dataset["pseudo"] / "img2.png"
    if problem == "corrupt":
        bad.write_bytes(bad.read_bytes()[:60])  # a PNG cut short: its header is fine, its data is not
        expected = "img2.png: not a readable image"
    elif problem == "out_of_range":
        write_label_png(bad, np.full((12, 16), 42, np.uint8))
        expected = "img2.png: label value 42 is out of range 0..20 or 255 (more classes? set --num-classes"
    else:
        write_label_png(bad, np.zeros((5, 5), np.uint8))
        expected = "img2.json: masks are 12x16 (HxW) but the pseudo-label is 5x5"
    result = _run(*args)
    assert result.exit_code == 1
    assert expected in result.output and "Traceback" not in result.output
    written = sorted(p.name for p in out.glob("*.png"))
    assert "img2.png" not in written
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_error_lines_keep_brackets(tmp_path):
    result = _run("--pseudo-labels", tmp_path / "[x]", "--masks", tmp_path, "--out", tmp_path / "o")
    assert result.exit_code == 1 and f"{tmp_path / '[x]'}: pseudo-label folder not found" in result.output


def test_empty_or_missing_input_folder(tmp_path):
    (tmp_path / "p").mkdir()
    (tmp_path / "m").mkdir()
    result = _run("--pseudo-labels", tmp_path / "p", "--masks", tmp_path / "m", "--out", tmp_path / "o")
    assert result.exit_code == 1 and "no pseudo-labels found for reader 'png' (<id>.png)" in result.output
    np.save(tmp_path / "p" / "a.npy", {"keys": np.array([0]), "high_res": np.zeros((1, 2, 2), np.float32)})
    for command in ("run", "compare", "convert"):
        extra = {"run": [], "compare": ["--gt", tmp_path / "m", "-s", "threshold"], "convert": []}[command]
        args = ([command, "-r", "png", "-i", tmp_path / "p", "-o", tmp_path / "o"] if command == "convert" else
                [command, "--pseudo-labels", tmp_path / "p", "--masks", tmp_path / "m", "--out", tmp_path / "o", *extra])
        result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})
        assert result.exit_code == 1, (command, result.output)
        assert result.output.strip() == (f"error: {tmp_path / 'p'}: no pseudo-labels found for reader 'png' "
                                         "(<id>.png); a file there looks like an IRN/CLIMS CAM file: try --reader irn")
    result = _run("--pseudo-labels", tmp_path / "nope", "--masks", tmp_path / "m", "--out", tmp_path / "o")
    assert result.exit_code == 1 and "nope: pseudo-label folder not found" in result.output
    result = _run("--pseudo-labels", tmp_path / "p")
    assert result.exit_code == 1 and "give both --pseudo-labels and --masks" in result.output


def test_demo_runs_without_inputs_and_says_it_is_synthetic(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _run("--strategy", "threshold", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output
    out = tmp_path / "sepl-demo-output" / "threshold"
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["synthetic_demo"] is True and manifest["counts"]["written"] == 16
    before, after = manifest["eval"]["input"]["miou"], manifest["eval"]["output"]["miou"]
    assert after > before  # the demo's partial/false activations are what SEPL repairs
    assert len(list(out.glob("demo_*.png"))) == 16
    # Another strategy's demo goes beside it, not over it: the inputs are shared, the outputs are not.
    assert _run("--strategy", "official").exit_code == 0
    assert json.loads((out.parent / "official" / "run.json").read_text())["settings"]["strategy"] == "official"
    assert json.loads((out / "run.json").read_text())["settings"]["strategy"] == "threshold"
    # The demo's inputs are written once: a rerun reuses its outputs (they are not older than the inputs).
    again = _run("--strategy", "threshold", env={"COLUMNS": "200"})
    assert again.exit_code == 0 and "out of date" not in again.output
    assert json.loads((out / "run.json").read_text())["counts"]["skipped_existing"] == 16


@pytest.mark.parametrize("workers", ["1", pytest.param("2", marks=pytest.mark.slow)])
def test_gt_evaluation_matches_eval_of_the_folders(dataset, tmp_path, workers):
    """`run --gt` evaluates in the run's workers; its numbers are `eval`'s on the two folders."""
    out = tmp_path / "out"
    result = _run("--pseudo-labels", dataset["pseudo"], "--masks", dataset["masks"], "--out", out,
                  "--gt", dataset["gt"], "--workers", workers)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "run.json").read_text())["eval"]
    for folder, side in ((dataset["pseudo"], "input"), (out, "output")):
        report = tmp_path / f"{side}.json"
        assert runner.invoke(app, ["eval", "--pred", str(folder), "--gt", str(dataset["gt"]),
                                   "--json", str(report)]).exit_code == 0
        expected = json.loads(report.read_text())
        assert expected.pop("source")["pred"] == str(folder.resolve())
        assert manifest[side] == expected
    assert manifest["input"]["miou"] != manifest["output"]["miou"]


@pytest.mark.slow  # a process pool
def test_gt_of_the_wrong_size_is_one_line_naming_the_file(dataset, tmp_path):
    write_label_png(dataset["gt"] / "img1.png", np.zeros((5, 5), np.uint8))
    result = _run("--pseudo-labels", dataset["pseudo"], "--masks", dataset["masks"], "--out", tmp_path / "o",
                  "--gt", dataset["gt"], "--workers", "2")
    assert result.exit_code == 1
    assert f"{dataset['gt'] / 'img1.png'}: is 5x5 but the pseudo-label is 12x16" in result.output


@pytest.mark.parametrize("problem", ["pseudo_folder", "json_folder", "csv_header", "csv_rows", "png_gone", "mode_1"])
def test_bad_mask_folders_and_folders_named_like_files_are_one_line(dataset, tmp_path, problem):
    pseudo, masks = dataset["pseudo"], dataset["masks_png"]
    if problem == "pseudo_folder":  # was skipped: an id silently left out of the run
        (pseudo / "img1.png").unlink()
        (pseudo / "img1.png").mkdir()
        expected = "img1.png: is a folder, not a .png file"
    elif problem == "json_folder":
        masks = dataset["masks"]
        (masks / "img2.json").unlink()
        (masks / "img2.json").mkdir()
        expected = "img2.json: is a folder, not a file"
    elif problem == "csv_header":
        (masks / "img0" / "metadata.csv").write_text("garbage,,,\n")
        expected = "img0/metadata.csv: header 'garbage,,,' has none of amg.py's columns"
    elif problem == "csv_rows":
        csv = masks / "img0" / "metadata.csv"
        csv.write_text("\n".join(csv.read_text().splitlines()[:3]))
        expected = "img0/metadata.csv: no row for 2.png, 3.png"
    elif problem == "png_gone":
        (masks / "img3" / "1.png").unlink()
        expected = "img3/metadata.csv: line 3 (id 1) names 1.png, which is not in the folder"
    else:  # 1-bit PNGs read as their bits: the same output as amg.py's 0/255
        for path in (masks / "img0").glob("*.png"):
            with Image.open(path) as img:
                img.convert("1").save(path)
        result = _run("--pseudo-labels", pseudo, "--masks", masks, "--out", tmp_path / "out")
        assert result.exit_code == 0, result.output
        _, item_masks, _ = dataset["items"]["img0"]
        assert np.array_equal(read_png(tmp_path / "out" / "img0.png"),
                              threshold(make_sample(dataset["items"]["img0"][0], item_masks)))
        return
    result = _run("--pseudo-labels", pseudo, "--masks", masks, "--out", tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert expected in result.output and "Traceback" not in result.output


class _Clock:
    """A ``time`` module for ``sepl_tree.cli.run`` whose ``perf_counter`` moves one second a call."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        self.now += 1.0
        return self.now


class _Bar:
    """A progress bar that keeps the rate text of every update."""

    def __init__(self):
        self.rates = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *args, **kwargs):
        return 0

    def update(self, task, advance=0, rate=""):
        self.rates.append(rate)


def test_a_resumed_scoring_run_counts_every_image_in_its_rate_and_its_checks_apart(dataset, tmp_path, monkeypatch):
    # A resumed --gt run writes nothing but reads back and scores every id: its bar moves over all
    # of them, and so must its rate (it said "0.0 img/s" at 100k ids). The seconds before the first
    # image (listing, checks, what is done) are counted apart, not left out.
    import sepl_tree.cli.common as common
    import sepl_tree.cli.run as run_module

    out = tmp_path / "out"
    args = ("--pseudo-labels", dataset["pseudo"], "--masks", dataset["masks"], "--gt", dataset["gt"], "--out", out,
            "--executor", "serial")
    assert _run(*args).exit_code == 0
    bar, clock = _Bar(), _Clock()
    monkeypatch.setattr(common, "progress_bar", lambda: bar)
    for module in (common, run_module):  # one clock for the bar and the run's seconds
        monkeypatch.setattr(module, "time", clock)
    result = _run(*args)
    assert result.exit_code == 0, result.output
    # the clock ticks once as the bar starts, then once per image: n images in n seconds
    assert bar.rates == [f"{n / n:.1f} img/s" for n in range(1, 5)]
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["counts"]["written"] == 0 and manifest["counts"]["skipped_existing"] == 4
    # begin -> checks, then images start -> bar starts -> 4 images -> end
    assert manifest["checks_seconds"] == 1.0 and manifest["seconds"] == 6.0


@pytest.mark.parametrize("command", ["run", "compare", "convert"])
def test_a_command_on_many_ids_says_it_is_checking_them(dataset, tmp_path, monkeypatch, command):
    import sepl_tree.cli.common as common

    d = dataset
    args = {"run": ["run", "--pseudo-labels", d["pseudo"], "--masks", d["masks"], "--executor", "serial"],
            "compare": ["compare", "--strategies", "threshold", "--pseudo-labels", d["pseudo"], "--masks", d["masks"],
                        "--gt", d["gt"], "--executor", "serial", "--strips", "0"],
            "convert": ["convert", "--reader", "png", "--input", d["pseudo"]]}[command]
    quiet = runner.invoke(app, [*map(str, args), "--out", str(tmp_path / "a")])
    assert quiet.exit_code == 0 and "checking" not in quiet.stderr
    monkeypatch.setattr(common, "CHECKING_NOTE_IDS", 4)
    said = runner.invoke(app, [*map(str, args), "--out", str(tmp_path / "b")])
    assert said.exit_code == 0, said.output
    what = "outputs already in" if command == "convert" else "inputs, and outputs already in"
    assert f"checking 4 ids ({what}" in " ".join(said.stderr.split())  # then --out, wrapped