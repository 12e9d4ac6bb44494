"""Generator settings are checked for type and range before any work (no torch needed but where said)."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest

from sepl_tree.errors import SeplError
from sepl_tree.sam import presets
from sepl_tree.sam.presets import PRESETS, check_settings
from tests.tiny_sam_helpers import KEEP_ALL_SETTINGS

BENCHMARK = Path(__file__).parents[1] / "benchmarks" / "sam_gpu.py"
SAM = "SAM mask generator: parameter"
SAM2 = "SAM 2 mask generator: parameter"


def _benchmark_keep_all() -> dict:
    spec = importlib.util.spec_from_file_location("sam_gpu_for_tests", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.KEEP_ALL


@pytest.mark.parametrize(("family", "settings", "message"), [
    ("sam", {"points_per_side": 0}, f"{SAM} 'points_per_side': must be in [1, inf), got 0"),
    ("sam", {"points_per_side": -3}, f"{SAM} 'points_per_side': must be in [1, inf), got -3"),
    ("sam", {"points_per_side": None}, f"{SAM} 'points_per_side': expected an integer in [1, inf), got None"),
    ("sam", {"points_per_side": 4.0}, "'points_per_side': expected an integer in [1, inf), got 4.0"),
    ("sam", {"points_per_side": True}, "'points_per_side': expected an integer in [1, inf), got True"),
    ("sam", {"points_per_side": "8"}, "'points_per_side': expected an integer in [1, inf), got '8'"),
    ("sam", {"points_per_side": 8, "point_grids": [[[0.5, 0.5]]]}, "'points_per_side': points_per_side and "
                                                                   "point_grids are exclusive"),
    ("sam", {"points_per_batch": 0}, "'points_per_batch': must be in [1, inf), got 0"),
    ("sam", {"pred_iou_thresh": 2.0}, f"{SAM} 'pred_iou_thresh': must be in [0, 1], got 2.0"),
    ("sam", {"pred_iou_thresh": -0.1}, "'pred_iou_thresh': must be in [0, 1], got -0.1"),
    ("sam", {"pred_iou_thresh": math.nan}, "'pred_iou_thresh': expected a finite number in [0, 1], got nan"),
    ("sam", {"stability_score_thresh": 1.5}, "'stability_score_thresh': must be in [0, 1], got 1.5"),
    ("sam", {"stability_score_offset": 0.0}, "'stability_score_offset': must be in (0, inf), got 0.0"),
    ("sam", {"stability_score_offset": math.inf}, "'stability_score_offset': expected a finite number in (0, inf)"),
    ("sam", {"box_nms_thresh": -1.0}, "'box_nms_thresh': must be in [0, 1], got -1.0"),
    ("sam", {"box_nms_thresh": True}, "'box_nms_thresh': expected a number in [0, 1], got True"),
    ("sam", {"crop_nms_thresh": 1.2}, "'crop_nms_thresh': must be in [0, 1], got 1.2"),
    ("sam", {"crop_n_layers": -1}, "'crop_n_layers': must be in [0, 5], got -1"),
    ("sam", {"crop_n_layers": 1.5}, "'crop_n_layers': expected an integer in [0, 5], got 1.5"),
    ("sam", {"crop_n_layers": 6}, "'crop_n_layers': must be in [0, 5], got 6"),  # 5461 crops an image
    ("sam", {"points_per_side": 1, "crop_n_layers": 40}, "'crop_n_layers': must be in [0, 5], got 40"),
    ("sam", {"crop_overlap_ratio": 1.0}, "'crop_overlap_ratio': must be in [0, 1), got 1.0"),
    ("sam", {"crop_n_points_downscale_factor": 0}, "'crop_n_points_downscale_factor': must be in [1, inf), got 0"),
    ("sam", {"min_mask_region_area": -5}, "'min_mask_region_area': must be in [0, inf), got -5"),
    ("sam", {"points_per_side": 4, "crop_n_layers": 3, "crop_n_points_downscale_factor": 2},
     "'points_per_side': 4 leaves no point in crop layer 3 (4 / crop_n_points_downscale_factor**3 = 4 / 2**3 < 1)"),
    ("sam", {"points_per_side": 16, "crop_n_layers": 5, "crop_n_points_downscale_factor": 2},
     "leaves no point in crop layer 5 (16 / crop_n_points_downscale_factor**5 = 16 / 2**5 < 1)"),
    ("sam", {"output_mode": "png"}, "'output_mode': must be one of binary_mask, uncompressed_rle, coco_rle"),
    ("sam2", {"pred_iou_thresh": 2.0}, f"{SAM2} 'pred_iou_thresh': must be in [0, 1], got 2.0"),
    ("sam2", {"mask_threshold": math.nan}, f"{SAM2} 'mask_threshold': expected a finite number, got nan"),
    ("sam2", {"mask_threshold": True}, "'mask_threshold': expected a number, got True"),
    ("sam2", {"use_m2m": 1}, f"{SAM2} 'use_m2m': expected true or false, got 1"),
    ("sam2", {"multimask_output": "yes"}, "'multimask_output': expected true or false, got 'yes'"),
])
def test_a_bad_setting_is_one_line_naming_it_its_value_and_its_range(family: str, settings: dict,
                                                                     message: str) -> None:
    with pytest.raises(SeplError) as caught:
        check_settings(settings, family)
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("settings", [
    KEEP_ALL_SETTINGS,
    {"pred_iou_thresh": 0, "stability_score_thresh": 1, "box_nms_thresh": 0.0, "crop_nms_thresh": 1},  # ints ok
    {"stability_score_offset": 0.002, "crop_overlap_ratio": 0.0, "min_mask_region_area": 0},
    {"points_per_side": 8, "crop_n_layers": 3, "crop_n_points_downscale_factor": 2},  # 1 point per side at layer 3
    {"points_per_side": 1, "crop_n_layers": 5},  # factor 1: every layer keeps its point
    {"points_per_side": None, "point_grids": [[[0.5, 0.5]]]},  # the libraries' alternative
    {"output_mode": "coco_rle"},
])
def test_edge_values_are_valid(settings: dict) -> None:
    check_settings(settings, "sam")
    check_settings(settings, "sam2")


def test_presets_and_keep_all_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presets, "_check_small_region_removal", lambda settings, family: None)  # heavy's OpenCV
    for family in ("sam", "sam2"):
        for settings in (*PRESETS.values(), _benchmark_keep_all(), {**PRESETS["paper"], **_benchmark_keep_all()}):
            check_settings(settings, family)
        check_settings({"mask_threshold": -2.5, "use_m2m": True, "multimask_output": False}, "sam2")


def test_checking_settings_loads_no_torch() -> None:
    code = ("import sys; from sepl_tree.sam.presets import check_settings; check_settings({'points_per_side': 4}); "
            "print(','.join(m for m in ('torch', 'segment_anything', 'sam2') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == ""


# ------------------------------------------------------------------- against the libraries


@pytest.mark.parametrize(("family", "library"), [("sam", "segment_anything"), ("sam2", "sam2")])
def test_every_generator_parameter_has_a_rule_of_its_type(family: str, library: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    pytest.importorskip(library)
    declared = presets.generator_params(family)
    assert {n: p.type for n, p in declared.items()} == {n: presets._RULES[n][0] for n in declared}
    assert set(presets._SAM2_ONLY) == set(presets.generator_params("sam2")) - set(presets.generator_params("sam"))
    monkeypatch.setattr(presets, "_check_small_region_removal", lambda settings, family: None)
    for name in PRESETS:
        check_settings(presets.generator_settings(name, family=family), family)
    # --param is checked as it is read, with the same line
    with pytest.raises(SeplError, match=r"parameter 'points_per_side': must be in \[1, inf\), got 0$"):
        presets.generator_settings("paper", {"points_per_side": "0"}, family)
    with pytest.raises(SeplError, match=r"'box_nms_thresh': expected a finite number in \[0, 1\], got nan$"):
        presets.generator_settings("paper", {"box_nms_thresh": "nan"}, family)
