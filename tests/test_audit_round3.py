"""Tests from the third mutation round, each checked to fail with a small bug the suite missed:
the bootstrap intervals of ``compare`` (drawing, their place in ``compare.json``, the terminal and
``report.md``), SAM mask generation, the resume settings and provenance of mask folders, mask jobs
on clusters without GPUs, and a few label-map, prompt and class-name edges."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from sepl_tree.bootstrap import (
    BOOTSTRAP_MIN_IMAGES,
    change_text,
    draw_indices,
)
from sepl_tree.classes import default_class_names
from sepl_tree.compare import CompareTotals, ImageComparison

K = 4


def confusions(seed: int, n: int) -> list[np.ndarray]:
    """``n`` random ``(K, K+1)`` confusion matrices."""
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 50, (K, K + 1)) for _ in range(n)]


def compared(inputs, firsts, seconds, *, subsets=("all",), order=None, bootstrap=200):
    """The summary of a two-strategy comparison (``a`` then ``b``) of these per-image matrices,
    every image in ``all`` only, added in ``order`` (default: by id)."""
    totals = CompareTotals(("a", "b"), subsets, K, bootstrap)
    for i in order if order is not None else range(len(inputs)):
        totals.add(ImageComparison(f"img{i:02d}", inputs[i], {"a": firsts[i], "b": seconds[i]},
                                   {"all": True}, {}, 0.0, 1))
    return totals.summary(default_class_names(K))


# ------------------------------------------------------------------------------- bootstrap


def test_every_image_can_be_drawn():
    drawn = np.concatenate(list(draw_indices(4, 500)))
    assert drawn.shape == (500, 4)
    assert np.unique(drawn).tolist() == [0, 1, 2, 3]  # the last image too


def test_a_change_without_a_value_prints_as_not_available():
    # A subset whose images hold no class at all has a NaN mIoU: its change is None.
    assert change_text({"change": None, "interval": None}) == "n/a"
    assert change_text(None) == "n/a"
    assert change_text({"change": -0.5, "interval": None}) == "-0.50"


def test_exactly_the_minimum_number_of_images_gets_an_interval():
    inputs, firsts, seconds = confusions(1, 10), confusions(2, 10), confusions(3, 10)
    enough = compared(inputs, firsts, seconds)["all"]["bootstrap"]
    assert BOOTSTRAP_MIN_IMAGES == 10 and enough["against_input"]["a"]["interval"] is not None
    fewer = compared(inputs[:9], firsts[:9], seconds[:9])["all"]["bootstrap"]
    assert fewer["against_input"]["a"]["interval"] is None
    assert fewer["against_input"]["a"]["change"] is not None  # the change itself is still there


def test_against_the_first_strategy_is_drawn_against_the_first_strategy():
    # b makes exactly a's outputs: on every draw it changes nothing against a, but it does change
    # things against the input.
    inputs, firsts = confusions(4, 12), confusions(5, 12)
    boot = compared(inputs, firsts, firsts)["all"]["bootstrap"]
    assert boot["against_first"]["b"] == {"change": 0.0, "interval": [0.0, 0.0]}
    against_input = boot["against_input"]["b"]
    assert against_input == boot["against_input"]["a"] and against_input["interval"] != [0.0, 0.0]


def test_an_interval_holds_its_change_and_keeps_its_sign():
    # b is a's outputs with the input's errors everywhere: a clear loss against the input... and a gain of a.
    inputs = confusions(6, 15)
    perfect = [np.diag(cm.sum(axis=1)).astype(np.int64) for cm in inputs]
    perfect = [np.concatenate([p, np.zeros((K, 1), np.int64)], axis=1) for p in perfect]
    boot = compared(inputs, perfect, inputs)["all"]["bootstrap"]
    gain = boot["against_input"]["a"]
    assert gain["change"] > 0 and 0 < gain["interval"][0] <= gain["change"] <= gain["interval"][1]
    loss = boot["against_first"]["b"]
    assert loss["change"] < 0 and loss["interval"][0] <= loss["change"] <= loss["interval"][1] < 0


def test_intervals_do_not_depend_on_the_order_images_complete_in():
    inputs, firsts, seconds = confusions(7, 14), confusions(8, 14), confusions(9, 14)
    by_id = compared(inputs, firsts, seconds)["all"]["bootstrap"]
    shuffled = compared(inputs, firsts, seconds, order=[5, 13, 0, 2, 11, 7, 1, 9, 3, 12, 4, 8, 6, 10])
    assert shuffled["all"]["bootstrap"] == by_id


def test_a_subset_without_images_has_no_bootstrap():
    inputs, firsts, seconds = confusions(10, 12), confusions(11, 12), confusions(12, 12)
    summary = compared(inputs, firsts, seconds, subsets=("all", "envelope"))
    assert summary["envelope"]["images"] == 0 and "bootstrap" not in summary["envelope"]
    assert "bootstrap" in summary["all"]


# ------------------------------------------------------------------- terminal and report.md


def _summary_with_distinct_columns():
    """b equals a image by image: its change against a is +0.00 [+0.00, +0.00], unlike its change
    against the input."""
    inputs, firsts = confusions(13, 12), confusions(14, 12)
    return compared(inputs, firsts, firsts)


def test_report_has_the_column_against_the_first_strategy_with_its_own_numbers():
    from sepl_tree.report import report_markdown

    summary = _summary_with_distinct_columns()
    boot = summary["all"]["bootstrap"]
    text = report_markdown(summary, ["a", "b"], {}, {}, {})
    assert "| subset | strategy | vs input | vs a |" in text
    assert f"| all | b | {change_text(boot['against_input']['b'])} | +0.00 [+0.00, +0.00] |" in text
    assert f"| all | a | {change_text(boot['against_input']['a'])} |  |" in text


def _printed(monkeypatch, summary, strategies) -> str:
    from rich.console import Console

    import sepl_tree.cli.compare as cli_compare

    buffer = io.StringIO()
    monkeypatch.setattr(cli_compare, "console", Console(file=buffer, width=200, force_terminal=True,
                                                        color_system="standard"))
    cli_compare.print_intervals(summary, strategies)
    return buffer.getvalue()


def test_terminal_column_against_the_first_strategy_has_its_own_numbers(monkeypatch):
    summary = _summary_with_distinct_columns()
    boot = summary["all"]["bootstrap"]
    lines = [line for line in _printed(monkeypatch, summary, ["a", "b"]).splitlines() if " b " in line]
    assert len(lines) == 1 and "+0.00 [+0.00, +0.00]" in lines[0]
    assert change_text(boot["against_input"]["b"]) in lines[0]


@pytest.mark.parametrize(("low", "high", "colour"), [
    (0.5, 1.5, "\x1b[32m"),  # all above 0: green
    (-1.5, -0.5, "\x1b[31m"),  # all below 0: red
    (0.0, 1.5, None),  # holds 0: no colour
    (-1.5, 0.0, None),
    (-0.5, 0.5, None),
])
def test_terminal_colours_only_an_interval_that_leaves_out_zero(monkeypatch, low, high, colour):
    change = {"change": (low + high) / 2, "interval": [low, high]}
    boot = {"draws": 100, "level": 0.95, "seed": 0, "against": "a", "against_input": {"a": change},
            "against_first": {}}
    out = _printed(monkeypatch, {"all": {"images": 12, "bootstrap": boot}}, ["a"])
    row = next(line for line in out.splitlines() if f"{low:+.2f}" in line)
    if colour is None:
        assert "\x1b[32m" not in row and "\x1b[31m" not in row
    else:
        assert colour in row


# ------------------------------------------------------------------------ SAM mask generation


def _tiny_sam():
    torch = pytest.importorskip("torch", reason="SAM needs the sam extra: pip install 'sepl-tree[sam]'")
    pytest.importorskip("segment_anything", reason="SAM needs the sam extra: pip install 'sepl-tree[sam]'")
    from tests.tiny_sam_helpers import TINY, load_plugin

    torch.manual_seed(0)
    return load_plugin(TINY).build_tiny_sam()


def _fast_equals_stock(model, settings, images):
    """The fast engine's records (without ``level``) and the stock generator's, per image."""
    from sepl_tree.sam.fast import FastMaskGenerator
    from sepl_tree.sam.generator import stock_generator
    from sepl_tree.sam.writing import amg_record

    stock = stock_generator(model, settings, "sam", output_mode="coco_rle")
    expected = [[amg_record(r) for r in stock.generate(image)] for image in images]
    generator = FastMaskGenerator(model, "sam", settings)
    found = [[{k: v for k, v in r.items() if k != "level"} for r in masks.records()]
             for masks in generator.generate([generator.prepare(image) for image in images])]
    return found, expected


def test_fast_small_region_removal_suppresses_at_the_larger_nms_threshold(single_torch_thread):
    # segment-anything's clean-up suppresses duplicates at max(box_nms_thresh, crop_nms_thresh):
    # with crops that overlap much, masks of different crops overlap up to crop_nms_thresh (here no
    # suppression across crops), above box_nms_thresh, and all of them stay.
    pytest.importorskip("cv2", reason="small regions are removed with OpenCV")
    from sepl_tree.sam.presets import generator_settings
    from tests.tiny_sam_helpers import KEEP_ALL_SETTINGS, blobs

    settings = generator_settings("sam-default", {**KEEP_ALL_SETTINGS, "crop_n_layers": 1, "crop_overlap_ratio": 0.9,
                                                  "box_nms_thresh": 0.5, "crop_nms_thresh": 1.0,
                                                  "min_mask_region_area": 30}, "sam")
    found, expected = _fast_equals_stock(_tiny_sam(), settings, [blobs(0), blobs(1)])
    assert all(len(records) > 1 for records in expected)
    assert json.dumps(found) == json.dumps(expected)


def test_fast_removes_small_regions_from_an_image_of_one_mask(single_torch_thread):
    # One point and no overlap allowed: one mask an image; a large min_mask_region_area changes it.
    pytest.importorskip("cv2", reason="small regions are removed with OpenCV")
    from sepl_tree.sam.presets import generator_settings
    from tests.tiny_sam_helpers import KEEP_ALL_SETTINGS, blobs

    settings = generator_settings("sam-default", {**KEEP_ALL_SETTINGS, "points_per_side": 1, "box_nms_thresh": 0.0,
                                                  "min_mask_region_area": 400}, "sam")
    found, expected = _fast_equals_stock(_tiny_sam(), settings, [blobs(0), blobs(1)])
    assert [len(r) for r in expected] == [1, 1]
    assert json.dumps(found) == json.dumps(expected)


def test_bf16_and_fp16_autocast_to_their_own_dtypes():
    torch = pytest.importorskip("torch")
    from sepl_tree.sam.adapters import autocast

    assert autocast("cpu", "bf16").fast_dtype == torch.bfloat16
    assert autocast("cpu", "fp16").fast_dtype == torch.float16
    with autocast("cpu", "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_png_folder_has_a_level_column_only_when_every_mask_has_one(tmp_path):
    from sepl_tree.masks import MaskSet
    from sepl_tree.sam.writing import write_png_folder_with_levels

    masks = np.zeros((2, 4, 5), bool)
    masks[0, :2], masks[1, 2:] = True, True
    write_png_folder_with_levels(tmp_path / "all", MaskSet(masks, [{"level": 0}, {"level": 2}]))
    header = (tmp_path / "all" / "metadata.csv").read_text().splitlines()[0]
    assert header.endswith(",level")
    write_png_folder_with_levels(tmp_path / "some", MaskSet(masks, [{"level": 0}, {}]))
    assert "level" not in (tmp_path / "some" / "metadata.csv").read_text()


# ------------------------------------------------------------------- masks: resume settings


@pytest.fixture
def tiny_checkpoint(tmp_path):
    pytest.importorskip("torch", reason="SAM needs the sam extra: pip install 'sepl-tree[sam]'")
    pytest.importorskip("segment_anything", reason="SAM needs the sam extra: pip install 'sepl-tree[sam]'")
    from tests.tiny_sam_helpers import TINY, load_plugin

    return load_plugin(TINY).save_tiny_checkpoint(tmp_path / "tiny.pth")


def _masks(images, checkpoint, out, *extra):
    from typer.testing import CliRunner

    from sepl_tree.cli import app
    from tests.tiny_sam_helpers import TINY, masks_args

    ids = out.parent / "ids.txt"
    ids.write_text("img0\n")
    return CliRunner().invoke(app, masks_args(images, checkpoint, out, "tiny", TINY, "--ids", str(ids), *extra))


def test_resume_with_another_checkpoint_is_refused(images, tiny_checkpoint, tmp_path, single_torch_thread):
    out = tmp_path / "masks"
    assert _masks(images, tiny_checkpoint, out).exit_code == 0
    other = tmp_path / "other.pth"
    other.write_bytes(tiny_checkpoint.read_bytes())
    result = _masks(images, other, out)
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and f"(checkpoint '{tiny_checkpoint}' -> '{other}')" in said
    assert _masks(images, tiny_checkpoint, out).exit_code == 0  # the same one resumes


def test_a_folder_of_png_masks_binds_its_settings(images, tiny_checkpoint, tmp_path, single_torch_thread):
    out = tmp_path / "masks"
    assert _masks(images, tiny_checkpoint, out, "--format", "png").exit_code == 0
    assert (out / "img0").is_dir() and not list(out.glob("*.json"))
    result = _masks(images, tiny_checkpoint, out, "--format", "png", "-p", "points_per_side=5")
    assert result.exit_code == 1 and "(points_per_side 4 -> 5)" in " ".join(result.output.split())


def test_a_setting_the_folders_log_does_not_hold_is_a_change(tmp_path):
    from sepl_tree.errors import InputError
    from sepl_tree.sam.run import append_run_log, check_same_settings

    append_run_log(tmp_path, {"model_type": "vit_b", "settings": {"points_per_side": 32}})  # an older version's log
    check_same_settings(tmp_path, "vit_b", {"points_per_side": 32})
    with pytest.raises(InputError, match=r"points_per_batch None -> 64"):
        check_same_settings(tmp_path, "vit_b", {"points_per_side": 32, "points_per_batch": 64})


# ---------------------------------------------------------------------------- provenance

START = {"started": "2026-01-01T00:00:00+00:00", "model_type": "vit_b", "family": "sam",
         "checkpoint": "/models/sam_vit_b.pth", "preset": "paper", "settings": {"points_per_side": 32},
         "precision": "fp32", "engine": "fast", "batch_images": 4, "device": "cuda", "workers": 1}


def _provenance(folder, *lines):
    from sepl_tree.provenance import MASKS_RUN_LOG, masks_provenance

    folder.mkdir()
    (folder / MASKS_RUN_LOG).write_text("".join(json.dumps(line) + "\n" for line in lines))
    return masks_provenance(folder)


def test_provenance_holds_what_decides_the_masks_and_nothing_else(tmp_path):
    base = _provenance(tmp_path / "base", START)
    assert base == {"masks": {k: START[k] for k in ("model_type", "family", "checkpoint", "preset", "settings",
                                                    "precision")}}
    for n, change in enumerate([{"precision": "bf16"}, {"checkpoint": "/models/other.pth"}, {"preset": "heavy"},
                                {"model_type": "vit_h"}, {"settings": {"points_per_side": 16}}]):
        assert _provenance(tmp_path / f"changed{n}", {**START, **change}) != base, change
    for n, same in enumerate([{"engine": "stock"}, {"batch_images": 1}, {"device": "cpu"}, {"workers": 4}]):
        assert _provenance(tmp_path / f"same{n}", {**START, **same}) == base, same


def test_provenance_is_the_last_run_start(tmp_path):
    finished = {"finished": "2026-01-01T01:00:00+00:00", "written": "3"}
    later = {**START, "precision": "bf16"}
    got = _provenance(tmp_path / "log", START, finished, later, finished)
    assert got["masks"]["precision"] == "bf16"


def test_a_synth_manifest_without_settings_is_no_provenance(tmp_path):
    from sepl_tree.provenance import SYNTH_MANIFEST, masks_provenance

    (tmp_path / SYNTH_MANIFEST).write_text(json.dumps({"synthetic": True}))
    assert masks_provenance(tmp_path) is None
    (tmp_path / SYNTH_MANIFEST).write_text(json.dumps({"settings": {"seed": 1}}))
    assert masks_provenance(tmp_path) == {"synth": {"seed": 1}}


# ------------------------------------------------------------------------------- mask jobs


def test_a_cluster_without_gpus_moves_only_auto_jobs_to_the_cpu(tmp_path):
    from sepl_tree.sam.job import MaskJob

    def job(device):
        return MaskJob({}, tmp_path, "tiny", tmp_path / "tiny.pth", device=device, batch_images=None)

    assert job("auto").without_gpus().device == "cpu" and job("auto").without_gpus().ids_per_task == 1
    assert job("cuda").without_gpus().device == "cuda"  # its workers then refuse: no CUDA GPU, not a silent CPU run
    assert job("cpu").without_gpus().device == "cpu"
    assert [job(d).uses_gpu for d in ("auto", "cuda", "cpu")] == [True, True, False]


# ----------------------------------------------------------- label maps, prompts, classes


def test_at_coco_k_a_label_beyond_its_ids_asks_for_more_classes_without_suggesting_coco():
    from sepl_tree.label_maps import more_classes_hint

    assert more_classes_hint(120, 81) == " (more classes? set --num-classes)"
    assert more_classes_hint(120, 100) == " (more classes? set --num-classes)"
    assert more_classes_hint(30, 21).endswith(", e.g. 81 for COCO)")


def test_a_point_that_is_not_finite_is_no_prompt():
    from sepl_tree.prompts import prompt_ids

    nan, inf = float("nan"), float("inf")
    records = [{"point_coords": [[nan, 1.0]]}, {"point_coords": [[inf, 2.0]]}, {"point_coords": [[inf, 2.0]]},
               {"point_coords": [[1.0, -inf]]}, {"point_coords": [[3.0, 4.0]]}]
    assert prompt_ids(records).tolist() == [-1, -1, -1, -1, 0]


@pytest.mark.parametrize("k", [2, 5, 21, 81, 100])
def test_default_class_names_name_exactly_k_classes(k):
    names = default_class_names(k)
    assert len(names) == k and names[0] == "background"
    if k not in (21, 81):
        assert names[1:] == [f"class{i}" for i in range(1, k)]
