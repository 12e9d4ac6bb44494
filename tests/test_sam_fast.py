"""The fast engine against the stock generators, with the tiny SAM and SAM 2, on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="SAM needs the sam extra: pip install 'sepl-tree[sam]'")
pytest.importorskip("segment_anything", reason="SAM needs the sam extra: pip install 'sepl-tree[sam]'")

from pycocotools import mask as mask_utils  # noqa: E402

from sepl_tree.sam.agreement import exact_records, match_counts  # noqa: E402
from sepl_tree.sam.fast import FastMaskGenerator  # noqa: E402
from sepl_tree.sam.generator import build_generator, stock_generator  # noqa: E402
from sepl_tree.sam.job import default_torch_threads  # noqa: E402
from sepl_tree.sam.presets import generator_settings  # noqa: E402
from sepl_tree.sam.rle import encode_counts, mask_runs, split_runs  # noqa: E402
from sepl_tree.sam.timing import StageTimer  # noqa: E402
from sepl_tree.sam.workers import FastWorker  # noqa: E402
from sepl_tree.sam.writing import amg_record  # noqa: E402
from tests.tiny_sam_helpers import KEEP_ALL_SETTINGS, TINY, TINY_SAM2, blobs, load_plugin  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
HAS_SAM2 = __import__("importlib").util.find_spec("sam2") is not None
FAMILIES = ["sam", pytest.param("sam2", marks=pytest.mark.skipif(not HAS_SAM2, reason="sam2 not installed"))]
IMAGES = [blobs(0), blobs(1), blobs(2, 32, 48), blobs(3)]
#: Settings that exercise every step: all masks; duplicates removed; crops merged; filters on
#: (the random models' logits are small, so the stability offset is too).
SETTINGS = {
    "keep-all": KEEP_ALL_SETTINGS,
    "nms": {**KEEP_ALL_SETTINGS, "box_nms_thresh": 0.7},
    "crops": {**KEEP_ALL_SETTINGS, "box_nms_thresh": 0.7, "crop_n_layers": 1},
    "filters": {"points_per_side": 6, "stability_score_offset": 0.002, "stability_score_thresh": 0.3,
                "pred_iou_thresh": 0.0, "box_nms_thresh": 0.9},
    # segment-anything's small-region clean-up (OpenCV); SAM 2's needs its CUDA extension.
    "small-regions": {**KEEP_ALL_SETTINGS, "min_mask_region_area": 30},
}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models() -> dict[str, object]:
    torch.manual_seed(0)
    built = {"sam": load_plugin(TINY).build_tiny_sam()}
    if HAS_SAM2:
        torch.manual_seed(0)
        built["sam2"] = load_plugin(TINY_SAM2).build_tiny_sam2()
    return built


def _settings(family: str, name: str) -> dict:
    over = dict(SETTINGS[name])
    if name == "filters" and family == "sam2":
        over["pred_iou_thresh"] = 0.52  # SAM 2's IoU head ends in a sigmoid: ~0.5 for random weights
    return generator_settings("sam-default", over, family)


def _fast(model, family: str, settings: dict, **options) -> list[list[dict]]:
    generator = FastMaskGenerator(model, family, settings, **options)
    return [masks.records() for masks in generator.generate([generator.prepare(image) for image in IMAGES])]


def _without_level(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "level"} for r in records]


# -------------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", list(SETTINGS))
def test_fast_writes_the_stock_generators_records(models, family: str, name: str) -> None:
    if name == "small-regions" and (family == "sam2" or __import__("importlib").util.find_spec("cv2") is None):
        pytest.skip("small regions are removed with OpenCV for SAM, with sam2's CUDA extension for SAM 2")
    model, settings = models[family], _settings(family, name)
    stock = stock_generator(model, settings, family, output_mode="coco_rle")
    expected = [[amg_record(r) for r in stock.generate(image)] for image in IMAGES]
    assert sum(map(len, expected)) > 0
    if name == "filters":  # some masks pass the filters, some do not
        assert 0 < sum(map(len, expected)) < len(IMAGES) * 36 * 3
    levelled = build_generator(model, settings, family, output_mode="coco_rle")
    with_levels = [levelled.generate(image) for image in IMAGES]
    for batch_images in (1, 2, 3):
        found = _fast(model, family, settings, batch_images=batch_images)
        # Every field of every record, in the same order (same NMS ties broken the same way), to the
        # last bit (json writes floats in full), typed as sepl-tree writes the stock records.
        assert json.dumps([_without_level(r) for r in found]) == json.dumps(expected), batch_images
        for ours, theirs in zip(found, with_levels, strict=True):
            key = [(r["segmentation"]["counts"], r["point_coords"][0], r["predicted_iou"], r["level"]) for r in ours]
            assert sorted(key) == sorted((r["segmentation"]["counts"], r["point_coords"][0], r["predicted_iou"],
                                          r["level"]) for r in theirs)


def _tied_scores_model(family: str):
    """A fresh tiny model whose predicted IoUs are rounded to tenths: many masks tie on their score."""
    torch.manual_seed(0)
    model = load_plugin(TINY).build_tiny_sam() if family == "sam" else load_plugin(TINY_SAM2).build_tiny_sam2()
    decoder = model.mask_decoder if family == "sam" else model.sam_mask_decoder
    forward = decoder.forward

    def rounded(*args, **kwargs):
        masks, iou, *rest = forward(*args, **kwargs)
        return (masks, torch.round(iou * 10) / 10, *rest)

    decoder.forward = rounded
    return model


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", ["keep-all", "crops"])
def test_tied_scores_keep_the_stock_order(family: str, name: str) -> None:
    # NMS sorts by score and breaks ties by position: the stock engine (the levelled generator)
    # and the fast engine must hand it the stock generator's masks in the stock order, point by
    # point, or tied masks come out in another order (or another tied duplicate survives).
    model, settings = _tied_scores_model(family), _settings(family, name)
    stock = [[amg_record(r) for r in stock_generator(model, settings, family, output_mode="coco_rle").generate(image)]
             for image in IMAGES]
    levelled = build_generator(model, settings, family, output_mode="coco_rle")
    with_levels = [[amg_record(r) for r in levelled.generate(image)] for image in IMAGES]
    assert any(len({r["predicted_iou"] for r in records}) < len(records) for records in stock)  # ties
    assert json.dumps([_without_level(r) for r in with_levels]) == json.dumps(stock)
    generator = FastMaskGenerator(model, family, settings, batch_images=2)
    found = [masks.records() for masks in generator.generate([generator.prepare(image) for image in IMAGES])]
    assert json.dumps(found) == json.dumps(with_levels)  # the same records, levels too, in the same order


@pytest.mark.parametrize("family", FAMILIES)
def test_point_batch_is_a_speed_knob(models, family: str) -> None:
    # On the CPU, decoding 16, 32 or 64 prompts at once gives bit-identical logits.
    settings = generator_settings("sam-default", {**KEEP_ALL_SETTINGS, "points_per_side": 8, "points_per_batch": 16},
                                  family)
    reference = _fast(models[family], family, settings)
    for point_batch in (32, 64):
        assert json.dumps(_fast(models[family], family, settings, point_batch=point_batch)) == json.dumps(reference)


@pytest.mark.parametrize("family", FAMILIES)
def test_low_precision_masks_mostly_match_fp32(models, family: str) -> None:
    settings = generator_settings("sam-default", KEEP_ALL_SETTINGS, family)
    reference = _fast(models[family], family, settings)
    for precision in ("bf16", "fp16"):
        found = _fast(models[family], family, settings, precision=precision)
        counts = [match_counts(a, b, *image.shape[:2]) for a, b, image in zip(reference, found, IMAGES, strict=True)]
        matched, total = map(sum, zip(*counts, strict=True))
        assert total == sum(map(len, reference))  # keep-all: one mask per prompt and output either way
        # The tiny random models' logits are all near 0, where bf16's 8 bits flip pixels; trained
        # models are far less sensitive (the GPU benchmark measures ViT-H and Hiera-L).
        assert matched / total > (0.5 if precision == "bf16" else 0.9), (precision, matched, total)
        assert exact_records(reference[0], found[0]) < len(found[0])  # it did run at another precision


def test_use_m2m_needs_the_stock_engine(models) -> None:
    pytest.importorskip("sam2")
    settings = generator_settings("sam-default", {**KEEP_ALL_SETTINGS, "use_m2m": True}, "sam2")
    with pytest.raises(Exception, match="use_m2m .* runs with --engine stock only"):
        FastMaskGenerator(models["sam2"], "sam2", settings)
    records = build_generator(models["sam2"], settings, "sam2", output_mode="coco_rle").generate(IMAGES[0])
    assert {r["level"] for r in records} == {0, 1, 2}


# ------------------------------------------------------------------------------------ RLE


def _masks(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n, h, w = rng.integers(0, 6), rng.integers(1, 30), rng.integers(1, 30)
    kind = seed % 4
    if kind == 0:
        return rng.random((n, h, w)) < 0.5
    masks = np.full((n, h, w), kind == 2)
    if kind == 3:
        for m in masks:
            y0, x0 = rng.integers(0, h), rng.integers(0, w)
            m[y0:y0 + rng.integers(1, h + 1), x0:x0 + rng.integers(1, w + 1)] = True
    return masks


@pytest.mark.parametrize("seed", range(40))
def test_rle_from_tensors_is_pycocotools(seed: int) -> None:
    from segment_anything.utils.amg import mask_to_rle_pytorch

    masks = _masks(seed)
    runs, per_mask = (t.numpy() for t in mask_runs(torch.as_tensor(masks)))
    assert split_runs(runs, per_mask) == [r["counts"] for r in mask_to_rle_pytorch(torch.as_tensor(masks))]
    expected = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode() for m in masks]
    assert encode_counts(runs, per_mask) == expected


def test_rle_of_long_runs() -> None:
    mask = np.zeros((1, 3000, 2000), bool)
    mask[0, 1500:, 700:] = True
    runs, per_mask = (t.numpy() for t in mask_runs(torch.as_tensor(mask)))
    assert encode_counts(runs, per_mask) == [mask_utils.encode(np.asfortranarray(mask[0].astype(np.uint8)))
                                             ["counts"].decode()]


# --------------------------------------------------------------------------- the pipeline


class _Flaky:
    """A generator that fails every batch holding a given image, and counts the batches it saw."""

    def __init__(self, inner: FastMaskGenerator, bad_height: int) -> None:
        self.inner, self.bad_height, self.batches = inner, bad_height, []
        self.timer = inner.timer

    def prepare(self, image):
        return self.inner.prepare(image)

    def generate(self, prepared):
        self.batches.append(len(prepared))
        if any(p.height == self.bad_height for p in prepared):
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return self.inner.generate(prepared)


def test_pipeline_reports_every_image_once(models, tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    paths = {}
    for n in range(7):
        paths[f"im{n}"] = folder / f"im{n}.png"
        Image.fromarray(blobs(n, 40 + (n == 4) * 8, 56)).save(paths[f"im{n}"])
    paths["broken"] = folder / "broken.png"
    paths["broken"].write_bytes(b"not a png")
    settings = generator_settings("sam-default", KEEP_ALL_SETTINGS, "sam")
    generator = _Flaky(FastMaskGenerator(models["sam"], "sam", settings), bad_height=48)
    worker = FastWorker(generator, paths, tmp_path / "out", "rle", batch_images=3)
    results = {r.image_id: r for r in worker.map(sorted(paths))}
    assert sorted(results) == sorted(paths)
    assert "not a readable image" in results["broken"].error
    assert results["im4"].error == "RuntimeError: CUDA error: an illegal memory access was encountered"
    assert all(results[i].error is None and results[i].n_masks == 48 for i in paths if i not in ("broken", "im4"))
    assert max(generator.batches) == 3 and 1 in generator.batches  # batches; the failing one again image by image
    assert sorted(p.stem for p in (tmp_path / "out").glob("*.json")) == sorted(set(paths) - {"broken", "im4"})
    stages = results["im0"].stages
    assert {"read", "wait", "encoder", "decoder", "postprocess", "write"} <= set(stages)
    assert all(v >= 0 for v in stages.values())


def test_stage_timer_adds_up() -> None:
    timer = StageTimer("cpu")
    for _ in range(2):
        with timer.stage("encoder"):
            sum(range(10_000))
    totals = timer.take()
    assert set(totals) == {"encoder"} and totals["encoder"] > 0 and timer.take() == {}


def test_cpu_threads_follow_the_affinity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    assert (default_torch_threads(1), default_torch_threads(2), default_torch_threads(4), default_torch_threads(9)) == (
        6, 3, 1, 1)


def test_importing_the_package_imports_no_torch() -> None:
    code = ("import sys; import sepl_tree.sam as s; from sepl_tree.sam import fast, adapters, generator, job, run, "
            "workers, models, presets, rle, agreement; s.MaskJob; s.generator_settings; "
            "from sepl_tree.plugins import load_host; load_host([]); "
            "bad = [m for m in ('torch', 'segment_anything', 'sam2') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert done.returncode == 0, done.stdout + done.stderr
