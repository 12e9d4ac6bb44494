"""SAM 2 / 2.1 model families: the built-in types, a tiny random SAM 2 through ``masks``, missing extras."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

torch = pytest.importorskip("torch", reason="SAM 2 needs the sam2 extra: pip install 'sepl-tree[sam2]'")
pytest.importorskip("sam2", reason="SAM 2 needs the sam2 extra: pip install 'sepl-tree[sam2]'")

from sepl_tree.cli import app  # noqa: E402
from sepl_tree.masks import read_masks  # noqa: E402
from sepl_tree.plugins import load_host  # noqa: E402
from sepl_tree.sam.models import SAM2_CONFIGS, CheckpointError, build_sam2_family, family_of  # noqa: E402
from sepl_tree.sam.presets import generator_params, generator_settings  # noqa: E402
from tests.helpers import needs_ray  # noqa: E402
from tests.tiny_sam_helpers import TINY_SAM2, H, W, blobs, load_plugin, masks_args  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
tiny_sam2 = load_plugin(TINY_SAM2)
runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_sam2.save_tiny_sam2_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny_sam2.pt")


@pytest.fixture(autouse=True)
def _quiet(single_torch_thread):
    yield


def masks_cli(images: Path, checkpoint: Path, out: Path, *extra: str):
    return runner.invoke(app, masks_args(images, checkpoint, out, "tiny-sam2", TINY_SAM2, *extra))


def _records(out: Path, image_id: str) -> list[dict]:
    return json.loads((out / f"{image_id}.json").read_text())


# ----------------------------------------------------------------------- families and presets


def test_sam2_presets_map_to_its_own_generator() -> None:
    defaults = {n: p.default for n, p in generator_params("sam2").items()}
    assert (defaults["pred_iou_thresh"], defaults["stability_score_thresh"]) == (0.8, 0.95)
    assert {"use_m2m", "multimask_output", "mask_threshold"} <= set(defaults)
    assert generator_settings("sam-default", family="sam2") == defaults
    paper = generator_settings("paper", family="sam2")
    assert {k: v for k, v in paper.items() if v != defaults[k]} == {"pred_iou_thresh": 0.86, "stability_score_thresh": 0.92}


def test_builtin_sam2_types_name_the_packages_configs() -> None:
    from hydra import compose

    host = load_host([], autoload=False)
    expected = {f"{v}_hiera_{s}" for v in ("sam2", "sam2.1") for s in ("t", "s", "b+", "l")}
    assert set(SAM2_CONFIGS) == expected and expected <= set(host.sam_models)
    for model_type, config in SAM2_CONFIGS.items():
        assert family_of(host.sam_model(model_type)) == "sam2" and host.sam_models[model_type].source == "built-in"
        assert compose(config_name=config).model._target_ == "sam2.modeling.sam2_base.SAM2Base", config
    assert family_of(host.sam_model("vit_h")) == "sam"


@pytest.mark.slow
def test_a_builtin_family_builds_its_architecture_and_loads_a_users_checkpoint(tmp_path: Path) -> None:
    model = build_sam2_family(SAM2_CONFIGS["sam2.1_hiera_t"])  # random weights
    assert type(model).__name__ == "SAM2Base" and model.image_size == 1024
    assert model.image_encoder.trunk.channel_list == [768, 384, 192, 96]  # Hiera-T
    state = model.state_dict()
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}}, path)
    loaded = load_host([], autoload=False).sam_model("sam2.1_hiera_t")(str(path))
    key = "image_encoder.trunk.pos_embed"
    assert torch.equal(loaded.state_dict()[key], state[key] + 1)


def test_tiny_sam2_checkpoint_loads_as_sam2_checkpoints_do(checkpoint: Path, tmp_path: Path) -> None:
    saved = torch.load(checkpoint, weights_only=True)
    assert set(saved) == {"model"}
    model = tiny_sam2.build_tiny_sam2(str(checkpoint))
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved["model"].items())
    plain = tmp_path / "plain.pt"
    torch.save(saved["model"], plain)  # a state dict without the {"model": ...} wrapper
    with pytest.raises(CheckpointError, match=r"it has no 'model' entry \(checkpoints of this family store"):
        tiny_sam2.build_tiny_sam2(str(plain))


# ------------------------------------------------------------------------------ the command


@pytest.mark.parametrize("engine", ["fast", "stock"])
def test_sam2_masks_in_both_layouts(images: Path, checkpoint: Path, tmp_path: Path, engine: str) -> None:
    rle = masks_cli(images, checkpoint, tmp_path / "rle", "--engine", engine)
    png = masks_cli(images, checkpoint, tmp_path / "png", "--engine", engine, "--format", "png")
    assert rle.exit_code == png.exit_code == 0, rle.output + png.output
    for image_id, shape in (("img0", (H, W)), ("img3", (32, 48))):
        a, b = read_masks(tmp_path / "rle", image_id), read_masks(tmp_path / "png", image_id)
        assert a.shape == shape and len(a) == 48 and np.array_equal(a.masks, b.masks)
        assert sorted(a.score("level")) == sorted(b.score("level")) == [0] * 16 + [1] * 16 + [2] * 16
    log = [json.loads(line) for line in (tmp_path / "rle" / "masks_run.jsonl").read_text().splitlines()]
    assert log[0]["family"] == "sam2" and log[0]["settings"]["use_m2m"] is False and log[1]["written"] == "4"


def test_sam2_fast_and_stock_engines_write_the_same_masks(images: Path, checkpoint: Path, tmp_path: Path) -> None:
    settings = ["-p", "box_nms_thresh=0.8", "-p", "crop_n_layers=1"]
    fast = masks_cli(images, checkpoint, tmp_path / "fast", *settings, "--batch-images", "3")
    stock = masks_cli(images, checkpoint, tmp_path / "stock", *settings, "--engine", "stock")
    assert fast.exit_code == stock.exit_code == 0, fast.output + stock.output
    for image_id in ("img0", "img1", "img2", "img3"):
        a, b = _records(tmp_path / "fast", image_id), _records(tmp_path / "stock", image_id)
        assert a and sorted(map(json.dumps, a)) == sorted(map(json.dumps, b)), image_id


def test_sam2_resume_and_error_log(images: Path, checkpoint: Path, tmp_path: Path) -> None:
    (images / "broken.png").write_bytes(b"\x89PNG but not really")
    out = tmp_path / "out"
    first = masks_cli(images, checkpoint, out)
    assert first.exit_code == 1 and "1 image(s) failed" in first.output
    assert (out / "errors.log").read_text().startswith("broken\t")
    Image.fromarray(blobs(7)).save(images / "broken.png")
    (out / "img0.json").write_text("[]")  # a finished image is left alone
    again = masks_cli(images, checkpoint, out, "--batch-images", "2")
    assert again.exit_code == 0, again.output
    assert (out / "img0.json").read_text() == "[]" and len(_records(out, "broken")) == 48
    assert (out / "errors.log").read_text() == ""
    refused = masks_cli(images, checkpoint, out, "--precision", "bf16")
    assert refused.exit_code == 1 and "precision 'fp32' -> 'bf16'" in " ".join(refused.output.split())


def test_sam2_small_region_removal_without_its_extension_is_explained(images: Path, checkpoint: Path,
                                                                      tmp_path: Path) -> None:
    pytest.importorskip("cv2")
    if __import__("importlib").util.find_spec("sam2._C") is not None:
        pytest.skip("sam2 was built with its CUDA extension")
    result = masks_cli(images, checkpoint, tmp_path / "out", "--preset", "heavy")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "SAM 2 removes small regions with the sam2 package's CUDA extension" in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("param", "message"), [
    ("mask_threshold=nan", "parameter 'mask_threshold': expected a finite number, got nan"),
    ("use_m2m=2", "parameter 'use_m2m': expected true or false, got '2'"),
    ("crop_overlap_ratio=1", "parameter 'crop_overlap_ratio': must be in [0, 1), got 1.0"),
])
def test_sam2_out_of_range_param_is_one_line(images: Path, checkpoint: Path, tmp_path: Path, param: str,
                                             message: str) -> None:
    result = masks_cli(images, checkpoint, tmp_path / "out", "-p", param)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip() == f"error: SAM 2 mask generator: {message}"
    assert not (tmp_path / "out").exists()


def test_m2m_with_the_fast_engine_is_one_line(images: Path, checkpoint: Path, tmp_path: Path) -> None:
    result = masks_cli(images, checkpoint, tmp_path / "out", "-p", "use_m2m=true")
    assert result.exit_code == 1 and "use_m2m (SAM 2's mask-to-mask refinement) runs with --engine stock only" in (
        " ".join(result.output.split()))
    assert not (tmp_path / "out").exists()  # refused before the folder is opened: the plain rerun is free
    assert masks_cli(images, checkpoint, tmp_path / "out").exit_code == 0


@pytest.mark.parametrize(("model_type", "hidden", "extra"), [
    ("vit_h", "segment_anything", "sam"),
    ("sam2.1_hiera_l", "sam2", "sam2"),
    ("sam2_hiera_t", "torch", "sam2"),
])
def test_a_missing_extra_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch, images: Path, tmp_path: Path,
                                               model_type: str, hidden: str, extra: str) -> None:
    monkeypatch.setitem(sys.modules, hidden, None)  # import fails as if not installed
    (tmp_path / "ck.pt").write_bytes(b"")
    result = runner.invoke(app, ["masks", "--images", str(images), "--checkpoint", str(tmp_path / "ck.pt"),
                                 "--out", str(tmp_path / "out"), "--model-type", model_type])
    assert result.exit_code == 1
    package = {"segment_anything": "segment-anything"}.get(hidden, hidden)
    install = {"sam": "pip install -e '.[sam]' -c constraints.txt in the checkout (docs/sam.md, Installing)",
               "sam2": "SAM2_BUILD_CUDA=0 pip install --no-build-isolation -e '.[sam2]' -c constraints.txt in the "
                       "checkout, torch first (docs/sam.md, Installing)"}[extra]
    assert " ".join(result.output.split()) == (f"error: sepl-tree masks --model-type {model_type} needs {package}, "
                                               f"which is not installed: {install}")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_sam2_process_pool_gives_the_same_files(images: Path, checkpoint: Path, tmp_path: Path) -> None:
    assert masks_cli(images, checkpoint, tmp_path / "serial", "--executor", "serial").exit_code == 0
    result = masks_cli(images, checkpoint, tmp_path / "pool", "--workers", "2")
    assert result.exit_code == 0, result.output
    for path in sorted((tmp_path / "serial").glob("*.json")):
        assert path.read_bytes() == (tmp_path / "pool" / path.name).read_bytes(), path.name


@needs_ray
def test_sam2_on_ray_gives_the_same_files_as_serial(local_ray, images: Path, checkpoint: Path, tmp_path: Path) -> None:
    serial = masks_cli(images, checkpoint, tmp_path / "serial", "--executor", "serial")
    result = masks_cli(images, checkpoint, tmp_path / "ray", "--executor", "ray", "--workers", "2")
    assert serial.exit_code == result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "serial").glob("*.json"))
    assert names == ["img0.json", "img1.json", "img2.json", "img3.json"]
    for name in names:
        assert (tmp_path / "serial" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes(), name
