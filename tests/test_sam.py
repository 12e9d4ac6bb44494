"""SAM mask generation with a tiny random-weight SAM: library, ``masks`` command, resume, Ray."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

torch = pytest.importorskip("torch", reason="SAM needs the sam extra: pip install 'sepl-tree[sam]'")
pytest.importorskip("segment_anything", reason="SAM needs the sam extra: pip install 'sepl-tree[sam]'")

from sepl_tree import sam  # noqa: E402
from sepl_tree.cli import app  # noqa: E402
from sepl_tree.errors import SeplError  # noqa: E402
from sepl_tree.executors import execute  # noqa: E402
from sepl_tree.executors.record import ExecutionRecord  # noqa: E402
from sepl_tree.files import write_label_png  # noqa: E402
from sepl_tree.masks import AMG_CSV_HEADER, read_masks  # noqa: E402
from sepl_tree.plugins import load_host  # noqa: E402
from tests.fake_ray import FakeRay, install  # noqa: E402
from tests.helpers import needs_ray  # noqa: E402
from tests.tiny_sam_helpers import (  # noqa: E402
    KEEP_ALL,
    KEEP_ALL_SETTINGS,
    TINY,
    H,
    W,
    blobs,
    load_plugin,
    masks_args,
)

tiny_sam = load_plugin(TINY)
runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_sam.save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth")


@pytest.fixture(autouse=True)
def _quiet(single_torch_thread):
    yield


def masks_cli(images: Path, checkpoint: Path, out: Path, *extra: str):
    return runner.invoke(app, masks_args(images, checkpoint, out, "tiny", TINY, *extra))


def summary_rows(output: str) -> dict[str, str]:
    """The ``name -> value`` rows of the summary table ``masks`` prints."""
    rows = [line.split("│")[1:3] for line in output.splitlines() if line.count("│") == 3]
    return {name.strip(): value.strip() for name, value in rows}


def write_pseudo_labels(images: Path, folder: Path) -> Path:
    """A pseudo-label per image, of its size: the top half is class 1, 2 or 3."""
    for n, path in enumerate(sorted(images.iterdir())):
        h, w = Image.open(path).size[::-1]
        label = np.zeros((h, w), np.uint8)
        label[: h // 2] = 1 + n % 3
        write_label_png(folder / f"{path.stem}.png", label)
    return folder


# ------------------------------------------------------------------------------- settings


def test_presets_follow_the_library_defaults() -> None:
    defaults = {n: p.default for n, p in sam.generator_params().items()}
    assert sam.generator_settings("sam-default") == defaults
    paper = sam.generator_settings("paper")
    assert {k: v for k, v in paper.items() if paper[k] != defaults[k]} == {
        "pred_iou_thresh": 0.86, "stability_score_thresh": 0.92}
    heavy = sam.generator_settings("heavy")
    assert heavy["crop_n_layers"] == 1 and heavy["crop_n_points_downscale_factor"] == 2
    assert heavy["min_mask_region_area"] > 0


def test_every_generator_parameter_can_be_overridden() -> None:
    names = set(sam.generator_params())
    assert {"points_per_side", "points_per_batch", "crop_overlap_ratio", "min_mask_region_area"} <= names
    s = sam.generator_settings("heavy", {"points_per_batch": "16", "crop_overlap_ratio": "0.5"})
    assert (s["points_per_batch"], s["crop_overlap_ratio"], s["crop_n_layers"]) == (16, 0.5, 1)


@pytest.mark.parametrize(("preset", "given", "message"), [
    ("paper", {"points_per_sid": "8"}, "no parameter 'points_per_sid'"),
    ("paper", {"points_per_side": "many"}, "expected int"),
    ("fast", {}, "unknown preset 'fast'"),
])
def test_bad_settings_are_one_line_errors(preset: str, given: dict[str, str], message: str) -> None:
    with pytest.raises(SeplError, match=message):
        sam.generator_settings(preset, given)


# ------------------------------------------------------------------------------ generator


def test_level_is_the_multimask_output_each_mask_came_from(checkpoint: Path) -> None:
    from segment_anything import SamPredictor

    model = tiny_sam.build_tiny_sam(str(checkpoint))
    image = blobs(0)
    maskset = sam.generate_maskset(sam.build_generator(model, KEEP_ALL_SETTINGS), image)
    assert maskset.shape == (H, W)
    levels = [r["level"] for r in maskset.records]
    assert np.bincount(levels).tolist() == [16, 16, 16]
    predictor = SamPredictor(model)
    predictor.set_image(image)
    discriminating = 0
    for mask, record in zip(maskset.masks, maskset.records):
        outputs, _, _ = predictor.predict(np.array(record["point_coords"]), np.array([1]), multimask_output=True)
        errors = [(np.asarray(mask) != out).mean() for out in outputs]
        assert errors[record["level"]] < 0.01
        discriminating += min(e for k, e in enumerate(errors) if k != record["level"]) > 0.05
    assert discriminating > 0, "the tiny model's three outputs should differ for some points"


def test_level_generator_matches_the_stock_generator(checkpoint: Path) -> None:
    from segment_anything import SamAutomaticMaskGenerator

    model = tiny_sam.build_tiny_sam(str(checkpoint))
    settings = {**KEEP_ALL_SETTINGS, "box_nms_thresh": 0.7, "crop_n_layers": 1}
    ours = sam.build_generator(model, settings).generate(blobs(1))
    stock = SamAutomaticMaskGenerator(model, output_mode="binary_mask", **settings).generate(blobs(1))
    assert ours and {r["level"] for r in ours} <= {0, 1, 2}

    def key(r):
        return r["predicted_iou"], r["area"], tuple(r["bbox"]), tuple(r["crop_box"])

    assert sorted(map(key, ours)) == sorted(map(key, stock))


def test_heavy_preset_without_opencv_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "cv2", None)
    with pytest.raises(SeplError, match="opencv-python-headless"):
        sam.check_settings(sam.generator_settings("heavy"))
    sam.check_settings(sam.generator_settings("heavy", {"min_mask_region_area": "0"}))


@pytest.mark.skipif(importlib.util.find_spec("cv2") is None, reason="OpenCV not installed (sepl-tree[opencv])")
def test_heavy_small_region_removal_leaves_no_small_islands(images: Path, checkpoint: Path, tmp_path: Path) -> None:
    import cv2

    out = tmp_path / "heavy"
    result = masks_cli(images, checkpoint, out, "--preset", "heavy", "--ids", str(_ids_file(tmp_path, "img1")),
                       "-p", "crop_n_layers=0", "-p", "min_mask_region_area=60")
    assert result.exit_code == 0, result.output
    maskset = read_masks(out, "img1")
    assert len(maskset) > 0
    for mask in maskset.masks:
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        areas = stats[1:, cv2.CC_STAT_AREA]
        # SAM drops islands under the minimum area, but keeps the largest when all are under it.
        assert len(areas) == 1 or areas.min() >= 60, areas


def _ids_file(folder: Path, *ids: str) -> Path:
    path = folder / "ids.txt"
    path.write_text("\n".join(ids) + "\n")
    return path


def test_builtin_model_types_are_registered() -> None:
    host = load_host([], autoload=False)
    assert {"vit_h", "vit_l", "vit_b"} <= set(host.sam_models)
    assert host.sam_models["vit_b"].source == "built-in"


def test_find_images_checks_ids(images: Path) -> None:
    assert list(sam.find_images(images)) == ["img0", "img1", "img2", "img3"]
    assert list(sam.find_images(images, ["img2", "img0"])) == ["img2", "img0"]
    with pytest.raises(SeplError, match="1 requested id"):
        sam.find_images(images, ["img0", "nope"])
    Image.fromarray(blobs(0)).save(images / "img0.jpg")
    with pytest.raises(SeplError, match="two images have the id 'img0'"):
        sam.find_images(images)


# ------------------------------------------------------------------------------ command


def test_masks_command_writes_rle_that_run_reads(images: Path, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "masks"
    result = masks_cli(images, checkpoint, out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.json")) == ["img0.json", "img1.json", "img2.json", "img3.json"]
    for image_id, shape in (("img0", (H, W)), ("img3", (32, 48))):
        maskset = read_masks(out, image_id)
        assert maskset.shape == shape and len(maskset) == 48
        assert {r["level"] for r in maskset.records} == {0, 1, 2}
        assert all(r["crop_box"] == [0, 0, shape[1], shape[0]] for r in maskset.records)
    assert "written" in result.output


def test_heavy_preset_runs_through_the_command(images: Path, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "masks"
    result = masks_cli(images, checkpoint, out, "--preset", "heavy", "-p", "min_mask_region_area=0")
    assert result.exit_code == 0, result.output
    settings = json.loads((out / "masks_run.jsonl").read_text().splitlines()[0])["settings"]
    assert (settings["crop_n_layers"], settings["crop_n_points_downscale_factor"]) == (1, 2)
    assert settings["points_per_side"] == 4 and settings["min_mask_region_area"] == 0
    maskset = read_masks(out, "img0")
    assert len(maskset) > 0 and maskset.shape == (H, W)


def test_png_layout_holds_the_same_masks(images: Path, checkpoint: Path, tmp_path: Path) -> None:
    assert masks_cli(images, checkpoint, tmp_path / "rle").exit_code == 0
    result = masks_cli(images, checkpoint, tmp_path / "png", "--format", "png")
    assert result.exit_code == 0, result.output
    folder = tmp_path / "png" / "img1"
    assert (folder / "metadata.csv").is_file() and len(list(folder.glob("*.png"))) == 48
    a, b = read_masks(tmp_path / "rle", "img1"), read_masks(tmp_path / "png", "img1")
    assert np.array_equal(a.masks, b.masks)
    assert np.allclose(a.score("predicted_iou"), b.score("predicted_iou"))
    assert np.array_equal(a.score("level"), b.score("level")) and set(b.score("level")) == {0, 1, 2}
    header = (folder / "metadata.csv").read_text().splitlines()[0]
    assert header == AMG_CSV_HEADER + ",level"
    assert not list((tmp_path / "png").glob(".*"))


@pytest.mark.parametrize("fmt", ["rle", "png"])
def test_run_reads_both_layouts(images: Path, checkpoint: Path, tmp_path: Path, fmt: str) -> None:
    masks = tmp_path / "masks"
    assert masks_cli(images, checkpoint, masks, "--format", fmt).exit_code == 0
    pseudo = write_pseudo_labels(images, tmp_path / "pseudo")
    out = tmp_path / "enhanced"
    result = runner.invoke(app, ["run", "--pseudo-labels", str(pseudo), "--masks", str(masks), "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = sorted(p.name for p in out.glob("*.png"))
    assert written == ["img0.png", "img1.png", "img2.png", "img3.png"]
    assert np.array(Image.open(out / "img3.png")).shape == (32, 48)


def test_resume_skips_finished_images(images: Path, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "masks"
    ids = tmp_path / "ids.txt"
    ids.write_text("img0\nimg1\n")
    assert masks_cli(images, checkpoint, out, "--ids", str(ids)).exit_code == 0
    assert sorted(p.name for p in out.glob("*.json")) == ["img0.json", "img1.json"]
    (out / "img0.json").write_text("[]")  # a marker: a rerun must leave finished images alone
    (out / ".img2.json.abc.tmp").write_text("half")  # what killed writes leave behind
    (out / ".img3.tmp").mkdir()
    result = masks_cli(images, checkpoint, out)
    assert result.exit_code == 0, result.output
    assert (out / "img0.json").read_text() == "[]"
    assert len(read_masks(out, "img2")) == 48
    assert not list(out.glob(".*"))
    assert summary_rows(result.output)["already done (skipped)"] == "2"


def test_corrupt_image_is_logged_and_skipped(images: Path, checkpoint: Path, tmp_path: Path) -> None:
    (images / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "masks"
    result = masks_cli(images, checkpoint, out)
    assert result.exit_code == 1
    assert "1 image(s) failed" in result.output and "Traceback" not in result.output
    log = (out / "errors.log").read_text().splitlines()
    assert len(log) == 1 and log[0].startswith("broken\t") and "broken.jpg" in log[0]
    assert sorted(p.name for p in out.glob("*.json")) == ["img0.json", "img1.json", "img2.json", "img3.json"]
    Image.fromarray(blobs(5)).save(images / "broken.jpg")  # fixed: a rerun retries it and clears the log
    result = masks_cli(images, checkpoint, out)
    assert result.exit_code == 0, result.output
    assert (out / "errors.log").read_text() == "" and (out / "broken.json").is_file()


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--model-type", "vit_q"], 2, "unknown SAM model type 'vit_q'; valid choices: sam2.1_hiera_b+, sam2.1_hiera_l, "
                                   "sam2.1_hiera_s, sam2.1_hiera_t, sam2_hiera_b+, sam2_hiera_l, sam2_hiera_s, "
                                   "sam2_hiera_t, tiny, vit_b, vit_h, vit_l"),
    (["--engine", "turbo"], 2, "'turbo' is not one of 'fast', 'stock'"),
    (["--precision", "int8"], 2, "'int8' is not one of 'fp32', 'bf16', 'fp16'"),
    (["--precision", "bf16", "--engine", "stock"], 1, "--precision bf16 runs with --engine fast only"),
    (["--format", "tiff"], 2, "'tiff' is not one of 'rle', 'png'"),
    (["--preset", "fast"], 2, "'fast' is not one of 'paper', 'sam-default', 'heavy'"),
    (["-p", "pred_iou=1"], 1, "no parameter 'pred_iou'"),
    (["--executor", "dask"], 2, "'dask' is not one of 'process', 'serial', 'ray'"),
])
def test_user_mistakes_are_one_line(images: Path, checkpoint: Path, tmp_path: Path, args: list[str], code: int,
                                    message: str) -> None:
    result = masks_cli(images, checkpoint, tmp_path / "out", *args)
    assert result.exit_code == code
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("param", "message"), [
    ("points_per_side=0", "parameter 'points_per_side': must be in [1, inf), got 0"),
    ("points_per_side=-3", "parameter 'points_per_side': must be in [1, inf), got -3"),
    ("pred_iou_thresh=2", "parameter 'pred_iou_thresh': must be in [0, 1], got 2.0"),
    ("box_nms_thresh=-1", "parameter 'box_nms_thresh': must be in [0, 1], got -1.0"),
    ("stability_score_thresh=nan", "parameter 'stability_score_thresh': expected a finite number in [0, 1], got nan"),
    ("crop_n_layers=3", "parameter 'points_per_side': 4 leaves no point in crop layer 3"),
])
def test_out_of_range_param_is_one_line_before_anything_is_written(images: Path, checkpoint: Path, tmp_path: Path,
                                                                   param: str, message: str) -> None:
    extra = ["-p", param] + (["-p", "crop_n_points_downscale_factor=2"] if param.startswith("crop_n_layers") else [])
    result = masks_cli(images, checkpoint, tmp_path / "out", *extra)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert len(lines) == 1 and lines[0].startswith(f"error: SAM mask generator: {message}"), result.output
    assert not (tmp_path / "out").exists()


class _NotATensor:
    """A pickled object that ``torch.load(weights_only=True)`` refuses."""


def _bad_checkpoint(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.pth"
    if kind == "folder":
        path.mkdir()
    elif kind == "corrupt":
        path.write_bytes(b"PK\x03\x04 not a zip archive at all")
    elif kind == "truncated":
        torch.save({"x": torch.zeros(100)}, path)
        path.write_bytes(path.read_bytes()[:200])
    elif kind == "objects":
        torch.save({"x": _NotATensor()}, path)
    elif kind == "wrong":
        torch.save({"not": torch.zeros(1)}, path)
    elif kind == "garbage":
        path.write_bytes(b"garbage")
    elif kind == "text":
        path.write_text("text\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "bare tensor":
        torch.save(torch.zeros(3), path)
    return path


@pytest.mark.parametrize(("kind", "problem"), [
    ("folder", "it is a folder, not a checkpoint file"),
    ("corrupt", "it is not a readable torch checkpoint (corrupt, truncated or another kind of file)"),
    ("truncated", "it is not a readable torch checkpoint"),
    ("objects", "it holds Python objects besides tensors, and only plain tensors are loaded"),
    ("wrong", "its tensors do not fit this architecture (136 missing, 1 unexpected, 0 of another shape; e.g. "),
    ("garbage", "it is not a torch checkpoint (corrupt or another kind of file)"),  # (not "Python objects")
    ("text", "it is not a readable torch checkpoint (corrupt, truncated or another kind of file)"),
    ("empty", "it is not a readable torch checkpoint (empty or truncated)"),
    ("bare tensor", "it holds a Tensor, not a state dict"),
])
def test_bad_checkpoint_is_one_whole_line_naming_the_file(images: Path, tmp_path: Path, kind: str,
                                                          problem: str) -> None:
    path = _bad_checkpoint(tmp_path, kind)
    result = masks_cli(images, path, tmp_path / "out")
    assert result.exit_code == 1 and "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), result.output
    assert problem in lines[0]
    assert "weights_only" not in lines[0] and not lines[0].rstrip(")'").endswith(("...", "…"))
    if kind != "folder":
        assert "cannot load as a 'tiny' SAM checkpoint: " in lines[0]
    assert not list((tmp_path / "out").glob("*.json"))


def test_missing_checkpoint_names_the_file(images: Path, tmp_path: Path) -> None:
    missing = masks_cli(images, tmp_path / "nope.pth", tmp_path / "out")
    assert missing.exit_code == 1 and "nope.pth: checkpoint not found" in missing.output
    assert not (tmp_path / "out").exists()


def test_resume_with_other_settings_is_refused(images: Path, checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "masks"
    ids = tmp_path / "ids.txt"
    ids.write_text("img0\n")
    assert masks_cli(images, checkpoint, out, "--ids", str(ids), "--threads", "2").exit_code == 0
    runs = [json.loads(line) for line in (out / "masks_run.jsonl").read_text().splitlines()]
    assert runs[0]["settings"]["points_per_side"] == 4 and runs[0]["model_type"] == "tiny"
    assert runs[0]["torch_threads"] == 2 and runs[0]["checkpoint"] == str(checkpoint)
    assert (runs[0]["device"], runs[0]["device_used"]) == ("auto", "cuda" if torch.cuda.is_available() else "cpu")
    assert (runs[0]["precision"], runs[0]["engine"], runs[0]["batch_images"]) == ("fp32", "fast", 1)
    assert runs[1]["written"] == "1" and runs[1]["images_per_s"] > 0
    assert {"read", "encoder", "decoder", "postprocess", "write"} <= set(runs[1]["stage_seconds"])
    # Same settings: another format, engine, batch size and thread count may resume the folder.
    resumed = masks_cli(images, checkpoint, out, "--threads", "1", "--format", "png", "--engine", "stock",
                        "--batch-images", "3")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((out / "masks_run.jsonl").read_text().splitlines()[2])["torch_threads"] == 1
    # ... which keeps the masks it finds in the other layout, and says so
    assert "1 image(s) in " in " ".join(resumed.output.split()) and "already have their masks as RLE" in (
        " ".join(resumed.output.split()))
    result = masks_cli(images, checkpoint, out, "-p", "points_per_side=5")
    assert result.exit_code == 1
    assert "masks_run.jsonl: this folder's masks were made with other settings (points_per_side 4 -> 5)" in (
        " ".join(result.output.split()))
    result = masks_cli(images, checkpoint, out, "--precision", "bf16")  # precision changes the masks
    assert result.exit_code == 1 and "(precision 'fp32' -> 'bf16')" in " ".join(result.output.split())
    # nothing written by the refused runs
    assert sorted(p.name for p in out.glob("*.json")) == ["img0.json"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["img1", "img2", "img3"]
    assert len((out / "masks_run.jsonl").read_text().splitlines()) == 4
    # a last line cut short by a killed run: the settings are the last whole line's, still checked
    with open(out / "masks_run.jsonl", "a") as log:
        log.write('{"started": "2026-12-01T00:00:00+00:00", "settings": {"points_per_side"')
    result = masks_cli(images, checkpoint, out, "-p", "points_per_side=5")
    assert result.exit_code == 1 and "(points_per_side 4 -> 5)" in " ".join(result.output.split())
    assert masks_cli(images, checkpoint, out, "--threads", "3").exit_code == 0  # the same settings resume
    lines = (out / "masks_run.jsonl").read_text().splitlines()
    assert lines[4].endswith('"points_per_side"')  # the cut line stays a line of its own
    assert json.loads(lines[5])["torch_threads"] == 3  # and the resumed run's start is not lost in it


def test_a_run_that_wrote_no_masks_binds_no_settings(images: Path, checkpoint: Path, tmp_path: Path) -> None:
    """(A wrong checkpoint fails every image after the run log's first line: the corrected rerun,
    with another checkpoint, must not be refused as 'other settings' over a folder with no masks.)"""
    wrong = tmp_path / "wrong.pth"
    torch.save({"not": torch.zeros(1)}, wrong)
    out = tmp_path / "out"
    failed = masks_cli(images, wrong, out)
    assert failed.exit_code == 1 and "wrong.pth: cannot load" in failed.output
    assert (out / "masks_run.jsonl").is_file() and not list(out.glob("*.json"))
    fixed = masks_cli(images, checkpoint, out, "-p", "points_per_side=5")
    assert fixed.exit_code == 0, fixed.output
    assert len(list(out.glob("img*.json"))) == 4
    refused = masks_cli(images, checkpoint, out, "-p", "points_per_side=4")  # now the folder holds masks
    assert refused.exit_code == 1 and "(points_per_side 5 -> 4)" in " ".join(refused.output.split())


def test_without_batch_images_each_worker_takes_its_own_devices_batch(checkpoint: Path, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """On Ray with --device auto the GPU is the worker's, not this machine's: the batch is decided there."""
    import sepl_tree.sam.job as job_module

    settings = sam.generator_settings("paper", KEEP_ALL_SETTINGS, "sam")
    job = sam.MaskJob({}, tmp_path, "tiny", checkpoint, settings, device="auto", batch_images=None,
                      plugins=(str(TINY),))
    assert job.ids_per_task == 4 * job_module.BATCHES_PER_TASK  # tasks sized for a GPU's batch
    model = job.load_model()
    assert job.make_worker(model, "sam").batch_images == 1  # this machine: no GPU -> 1
    monkeypatch.setattr(job_module, "resolve_device", lambda device: "cuda")  # a worker that has one
    worker = job.make_worker(model, "sam")
    assert worker.batch_images == job_module.GPU_BATCH_IMAGES and worker.generator.batch_images == 4
    assert sam.MaskJob({}, tmp_path, "tiny", checkpoint, device="auto", batch_images=2).batch_on("cuda") == 2


@pytest.mark.slow
def test_bad_checkpoint_in_a_process_pool_is_one_line(images: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.pth"
    torch.save({"not": torch.zeros(1)}, wrong)
    result = masks_cli(images, wrong, tmp_path / "out", "--workers", "2")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "wrong.pth: cannot load as a 'tiny' SAM checkpoint" in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_gpu_is_refused(images: Path, checkpoint: Path, tmp_path: Path) -> None:
    result = masks_cli(images, checkpoint, tmp_path / "out", "--device", "cuda")
    assert result.exit_code == 1 and "no CUDA GPU" in result.output


@pytest.mark.slow
def test_process_pool_gives_the_same_files(images: Path, checkpoint: Path, tmp_path: Path) -> None:
    assert masks_cli(images, checkpoint, tmp_path / "serial", "--executor", "serial").exit_code == 0
    result = masks_cli(images, checkpoint, tmp_path / "pool", "--workers", "2")
    assert result.exit_code == 0, result.output
    for path in sorted((tmp_path / "serial").glob("*.json")):
        a, b = read_masks(path.parent, path.stem), read_masks(tmp_path / "pool", path.stem)
        assert np.array_equal(a.masks, b.masks) and [r["level"] for r in a.records] == [r["level"] for r in b.records]


# ------------------------------------------------------------------------------------ Ray

class _Square:
    """A tiny picklable job spec."""

    def __init__(self, fail_setup: bool = False) -> None:
        self.fail_setup = fail_setup

    def setup(self):
        if self.fail_setup:
            raise SeplError("model.pth: cannot load")
        return lambda image_id: (image_id, int(image_id) ** 2)


@needs_ray
def test_ray_executor_pulls_every_id(local_ray) -> None:
    results = list(execute(_Square(), [str(i) for i in range(7)], executor="ray", workers=2))
    assert sorted(results) == sorted((str(i), i * i) for i in range(7))


@needs_ray
def test_ray_setup_error_stays_one_line(local_ray) -> None:
    with pytest.raises(SeplError, match=r"^model.pth: cannot load$"):
        list(execute(_Square(fail_setup=True), ["1", "2"], executor="ray", workers=2))


@needs_ray
def test_ray_gives_the_same_files_as_serial(local_ray, images: Path, checkpoint: Path, tmp_path: Path) -> None:
    (images / "broken.png").write_bytes(b"garbage")
    serial = masks_cli(images, checkpoint, tmp_path / "serial", "--executor", "serial")
    result = masks_cli(images, checkpoint, tmp_path / "ray", "--executor", "ray", "--workers", "2")
    assert serial.exit_code == result.exit_code == 1, result.output
    names = sorted(p.name for p in (tmp_path / "serial").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "ray").iterdir())
    assert names == ["errors.log", "img0.json", "img1.json", "img2.json", "img3.json", "masks_made_from.jsonl",
                     "masks_run.jsonl"]
    for name in names[:-2]:
        assert (tmp_path / "serial" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes(), name
    from sepl_tree.sam.images_log import ImagesLog

    made_from = [ImagesLog(tmp_path / run).read() for run in ("serial", "ray")]  # (lines in the order images finished)
    assert made_from[0] == made_from[1] and len(made_from[0]) == 4
    execution = json.loads((tmp_path / "ray" / "masks_run.jsonl").read_text().splitlines()[-1])["execution"]
    assert execution["executor"] == "ray" and execution["cluster"] == {"nodes": 1, "cpus": 2, "gpus": 0}
    workers = execution["workers"]  # a worker still loading its model when the other has done every image is not used
    assert workers["asked"] == 2 and workers["lost"] == 0 and workers["used"] in (1, 2)


def test_tasks_hold_a_few_encoder_batches_where_there_is_something_to_batch(tmp_path: Path) -> None:
    def job(**options):
        return sam.MaskJob({}, tmp_path, "tiny", tmp_path / "tiny.pth", **options)

    assert job(device="cpu").ids_per_task == 1  # one image at a time on the CPU: tasks of one keep workers even
    assert job(device="cpu", batch_images=2).ids_per_task == 8
    assert job(device="cuda").ids_per_task == 4  # a GPU waits for nothing: images read and prepared ahead
    assert job(device="auto", batch_images=4).ids_per_task == 16  # (Ray: the workers' devices are not known)
    assert job(device="cuda", engine="stock", batch_images=4).ids_per_task == 1


def test_on_ray_the_fast_engine_batches_across_images(images: Path, checkpoint: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ray worker is handed tasks of several ids (``MaskJob.ids_per_task``), so it fills its
    encoder batches as with one process, and writes the same files (Ray faked in this process)."""
    from sepl_tree.sam.fast import FastMaskGenerator

    batches: list[int] = []
    generate = FastMaskGenerator.generate
    monkeypatch.setattr(FastMaskGenerator, "generate", lambda self, inputs: batches.append(len(inputs))
                        or generate(self, inputs))
    serial = masks_cli(images, checkpoint, tmp_path / "serial", "--executor", "serial", "--batch-images", "2")
    assert serial.exit_code == 0, serial.output
    assert batches == [2, 2]
    batches.clear()
    ray = install(monkeypatch, FakeRay(capacity=2))
    result = masks_cli(images, checkpoint, tmp_path / "ray", "--executor", "ray", "--batch-images", "2")
    assert result.exit_code == 0, result.output
    assert batches == [2, 2]  # one task of all four images (one id per task would give [1, 1, 1, 1])
    assert [len(event[2]) for event in ray.events if event[0] == "task"] == [4]
    for path in sorted((tmp_path / "serial").glob("img*.json")):
        assert path.read_bytes() == (tmp_path / "ray" / path.name).read_bytes(), path.name
    # without --batch-images, the worker decides on its own device: here a CPU, one at a time
    batches.clear()
    before = len(ray.events)
    auto = masks_cli(images, checkpoint, tmp_path / "auto", "--executor", "ray")
    assert auto.exit_code == 0, auto.output
    assert batches == [1, 1, 1, 1]
    started = json.loads((tmp_path / "auto" / "masks_run.jsonl").read_text().splitlines()[0])
    assert started["batch_images"] is None and started["torch_threads"] == 1  # on Ray: one CPU reserved, one thread
    tasks = [len(event[2]) for event in ray.events[before:] if event[0] == "task"]
    # a cluster without GPUs: a first task of one image, not a GPU's 16 (later tasks are sized by
    # the time the first ones took, about 50 ms each, so how many follow depends on the machine)
    assert tasks[0] == 1 and sum(tasks) == 4


@needs_ray
def test_ray_says_when_the_cluster_cannot_place_every_worker(local_ray) -> None:
    record, lines = ExecutionRecord("ray"), []
    results = list(execute(_Square(), [str(i) for i in range(6)], executor="ray", workers=3, record=record,
                           notify=lines.append))
    assert sorted(results) == sorted((str(i), i * i) for i in range(6))
    assert lines == ["asked for 3 Ray workers, the cluster can place 2 now (1 CPU each, 2 CPUs free); "
                     "using 2, more if nodes join"]
    assert record.asked == 3 and record.used in (1, 2) and record.lost == 0


class _Threads:
    """A job spec whose workers reserve two CPUs each and report their OpenMP threads."""

    cpus_per_worker = 2

    def setup(self):
        return lambda image_id: (image_id, os.environ.get("OMP_NUM_THREADS"))


@needs_ray
def test_a_ray_worker_reserves_its_specs_cpus_and_ray_sets_its_threads(local_ray) -> None:
    lines: list[str] = []
    results = list(execute(_Threads(), ["1", "2", "3"], executor="ray", workers=2, notify=lines.append))
    assert sorted(results) == [("1", "2"), ("2", "2"), ("3", "2")]
    assert lines == ["asked for 2 Ray workers, the cluster can place 1 now (2 CPUs each, 2 CPUs free); "
                     "using 1, more if nodes join"]  # the two-CPU cluster holds one such worker


class _Greedy(_Threads):
    cpus_per_worker = 3


@needs_ray
def test_workers_no_node_can_hold_are_refused_at_once(local_ray) -> None:
    with pytest.raises(SeplError, match=r"^each Ray worker reserves 3 CPUs \(one per --threads\), and the largest "
                                        r"node of the cluster has 2; give --threads 2 or fewer$"):
        list(execute(_Greedy(), ["1"], executor="ray", workers=1))


def test_a_sam_ray_worker_reserves_a_cpu_per_torch_thread(tmp_path: Path) -> None:
    assert sam.MaskJob({}, tmp_path, "tiny", tmp_path / "tiny.pth", torch_threads=3).cpus_per_worker == 3
    assert sam.MaskJob({}, tmp_path, "tiny", tmp_path / "tiny.pth").cpus_per_worker == 1


@needs_ray
def test_run_on_ray_gives_the_same_labels(local_ray, images: Path, checkpoint: Path, tmp_path: Path) -> None:
    masks = tmp_path / "masks"
    assert masks_cli(images, checkpoint, masks).exit_code == 0
    pseudo = write_pseudo_labels(images, tmp_path / "pseudo")
    outs = {}
    for executor in ("process", "ray"):
        outs[executor] = tmp_path / executor
        result = runner.invoke(app, ["run", "--pseudo-labels", str(pseudo), "--masks", str(masks), "--out",
                                     str(outs[executor]), "--executor", executor, "--workers", "2"])
        assert result.exit_code == 0, result.output
    labels = sorted(p.name for p in outs["process"].glob("*.png"))
    assert labels == ["img0.png", "img1.png", "img2.png", "img3.png"]
    for name in labels:
        assert (outs["process"] / name).read_bytes() == (outs["ray"] / name).read_bytes()


def test_ray_missing_is_one_line(monkeypatch: pytest.MonkeyPatch, images: Path, checkpoint: Path,
                                 tmp_path: Path) -> None:
    monkeypatch.setitem(__import__("sys").modules, "ray", None)
    result = masks_cli(images, checkpoint, tmp_path / "out", "--executor", "ray")
    assert result.exit_code == 1 and "--executor ray needs Ray, which is not installed" in result.output
    assert not (tmp_path / "out").exists()
    with pytest.raises(SeplError, match=r"sepl-tree\[ray\]"):
        list(execute(_Square(), ["1"], executor="ray"))


# --------------------------------------------------------------------------- kill and resume


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["rle", "png"])
def test_killed_masks_run_resumes_without_half_written_output(tmp_path: Path, checkpoint: Path, fmt: str) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "images"
    folder.mkdir()
    for n in range(40):
        Image.fromarray(blobs(n, 24, 32)).save(folder / f"im{n:03d}.png")
    out = tmp_path / "out"
    args = [sys.executable, "-m", "sepl_tree", "masks", "--images", str(folder), "--checkpoint", str(checkpoint),
            "--model-type", "tiny", "--plugin", str(TINY), "--out", str(out), "--format", fmt, *KEEP_ALL]
    env = {**os.environ, "SEPL_TREE_NO_PROGRESS": "1"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("im*"))) < 3:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    done = sorted(p.name.removesuffix(".json") for p in out.glob("im*"))
    assert 3 <= len(done) < 40, "the run should have been killed part-way"
    for image_id in done:  # every visible output is complete
        assert len(read_masks(out, image_id)) == 48
    from sepl_tree.sam.images_log import ImagesLog

    recorded = set(ImagesLog(out).read())  # (masks written but not yet recorded when it was killed are made again)
    assert recorded <= set(done)
    rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert len(list(out.glob("im*"))) == 40 and not list(out.glob(".*"))
    assert summary_rows(rerun.stdout)["already done (skipped)"] == str(len(recorded))


def test_an_image_named_like_the_folders_log_is_refused_in_the_png_layout(images: Path, checkpoint: Path,
                                                                           tmp_path: Path) -> None:
    first = sorted(images.iterdir())[0]
    first.rename(images / f"errors.log{first.suffix}")
    result = masks_cli(images, checkpoint, tmp_path / "out", "--format", "png")
    assert result.exit_code == 1 and "which is this folder's errors.log" in " ".join(result.output.split())
    assert not (tmp_path / "out" / "errors.log").is_dir()
    assert masks_cli(images, checkpoint, tmp_path / "rle").exit_code == 0  # errors.log.json: no clash


def test_masks_on_many_images_says_it_is_checking_them(images: Path, checkpoint: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import sepl_tree.cli.common as common

    quiet = masks_cli(images, checkpoint, tmp_path / "a")
    assert quiet.exit_code == 0 and "checking" not in quiet.stderr
    n = len(list(images.iterdir()))
    monkeypatch.setattr(common, "CHECKING_NOTE_IDS", n)
    said = masks_cli(images, checkpoint, tmp_path / "b")
    assert said.exit_code == 0, said.output
    assert f"checking {n} ids (masks already in" in " ".join(said.stderr.split())


def test_log_lines_never_join_a_line_cut_short(tmp_path: Path) -> None:
    from sepl_tree.files import append_line

    log = tmp_path / "errors.log"
    append_line(log, "img0\tcorrupt")  # a new file
    log.write_bytes(log.read_bytes() + b"img1\tcut sho")  # a killed run's last write
    append_line(log, "img2\tbad size")
    assert log.read_text().splitlines() == ["img0\tcorrupt", "img1\tcut sho", "img2\tbad size"]
    assert log.read_text().endswith("\n")
