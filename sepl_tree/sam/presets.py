"""Generator settings: presets over each model family's automatic mask generator defaults.

A *family* is the library whose automatic mask generator runs the model: ``"sam"``
(segment-anything's ``SamAutomaticMaskGenerator``) or ``"sam2"`` (the ``sam2`` package's
``SAM2AutomaticMaskGenerator``). Settings are that generator's keyword arguments; a preset
names only what it changes, everything else keeps the family's library default.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from sepl_tree.errors import SeplError
from sepl_tree.registry import Param, Range, coerce_params

__all__ = ["FAMILIES", "MAX_CROP_LAYERS", "OUTPUT_MODES", "PRESETS", "check_settings", "generator_class",
           "generator_params", "generator_settings"]

#: Model families: the library that runs each, its PyPI name, and the sepl-tree extra installing it.
FAMILIES: dict[str, tuple[str, str, str]] = {
    "sam": ("segment_anything", "segment-anything", "sam"),
    "sam2": ("sam2", "sam2", "sam2"),
}

#: Generator settings on top of the family's own defaults.
PRESETS: dict[str, dict[str, Any]] = {
    # The paper's setting: the library defaults with looser quality thresholds (the values our
    # SAM issue gives for SEPL; its released code, cskyl/SAM_WSSS, makes no masks to check them).
    "paper": {"pred_iou_thresh": 0.86, "stability_score_thresh": 0.92},
    # The library's defaults, unchanged.
    "sam-default": {},
    # The denser setting of segment-anything's example notebook: a second crop layer with
    # half as many points per side, and small holes and islands removed.
    "heavy": {
        "points_per_side": 32,
        "pred_iou_thresh": 0.86,
        "stability_score_thresh": 0.92,
        "crop_n_layers": 1,
        "crop_n_points_downscale_factor": 2,
        "min_mask_region_area": 100,
    },
}

_NOT_PARAMS = ("self", "model", "point_grids", "output_mode")

_UNIT = Range(0, 1)
#: The most crop layers a run may ask for (``crop_n_layers``; the presets use 0 or 1).
MAX_CROP_LAYERS = 5
#: The type and range of each generator argument, checked before any work. The libraries check
#: none of them: a 0 where they divide (``points_per_side``, ``points_per_batch``,
#: ``crop_n_points_downscale_factor``) is a ZeroDivisionError deep in the first image, a threshold
#: outside [0, 1] silently keeps no mask or suppresses none.
_RULES: dict[str, tuple[type, Range | None]] = {
    "points_per_side": (int, Range(1)),
    "points_per_batch": (int, Range(1)),
    # Documented as in [0, 1]; the filter is skipped at 0 (the keep-all setting). SAM's IoU head
    # ends without a sigmoid, so a prediction may pass 1 a little, but a threshold above 1 would keep
    # only such outliers: no use, and 2 was a typo's silent empty output.
    "pred_iou_thresh": (float, _UNIT),
    "stability_score_thresh": (float, _UNIT),  # an IoU of two thresholded masks, in [0, 1]
    # The shift of the logit cutoff; at 0 every stability score is 1, below it they exceed 1.
    "stability_score_offset": (float, Range(0, low_open=True)),
    "mask_threshold": (float, None),  # SAM 2: the logit cutoff, any finite value
    # An IoU cutoff: 1 keeps every mask (no suppression, the keep-all setting), 0 any overlap.
    "box_nms_thresh": (float, _UNIT),
    # Layer i cuts the image into 4**i crops, each encoded and prompted like a whole image: 5 layers
    # are 1365 encoder passes an image, and 10, a typo's, a million (a run that never shows progress).
    "crop_n_layers": (int, Range(0, MAX_CROP_LAYERS)),
    "crop_nms_thresh": (float, _UNIT),
    # The share of the short image side by which neighbouring crops overlap: at 1 a square image's
    # crops are all the whole image, above 1 they start before it.
    "crop_overlap_ratio": (float, Range(0, 1, high_open=True)),
    "crop_n_points_downscale_factor": (int, Range(1)),
    "min_mask_region_area": (int, Range(0)),  # pixels; 0 removes nothing
    "use_m2m": (bool, None),  # SAM 2
    "multimask_output": (bool, None),  # SAM 2
}
#: ``output_mode``: not a setting (the writers choose it), checked when code passes one.
OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
_SAM2_ONLY = ("mask_threshold", "use_m2m", "multimask_output")


def _what(family: str) -> str:
    return "SAM 2 mask generator" if family == "sam2" else "SAM mask generator"


def generator_class(family: str = "sam") -> type:
    """The family's automatic mask generator class (imports its library)."""
    from sepl_tree.sam.models import require_family

    require_family(family)
    if family == "sam2":
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

        return SAM2AutomaticMaskGenerator
    from segment_anything import SamAutomaticMaskGenerator

    return SamAutomaticMaskGenerator


def generator_params(family: str = "sam") -> dict[str, Param]:
    """The family generator's tunable parameters, with their library defaults."""
    params = {}
    for p in inspect.signature(generator_class(family).__init__).parameters.values():
        if p.name in _NOT_PARAMS or p.default is p.empty or p.kind is p.VAR_KEYWORD:
            continue
        rule = _RULES.get(p.name)
        params[p.name] = Param(p.name, p.default, type(p.default), range=rule[1] if rule else None)
    return params


def generator_settings(preset: str = "paper", overrides: Mapping[str, Any] | None = None,
                       family: str = "sam") -> dict[str, Any]:
    """The generator's keyword arguments for ``preset``, with ``overrides`` (e.g. ``--param``) on top.

    Every parameter of the family's generator is there: the preset's values over the library's
    defaults, then the overrides, each coerced to the type of its default
    (``generator_settings("paper", {"points_per_side": "8"})["points_per_side"] == 8``).
    """
    if preset not in PRESETS:
        raise SeplError(f"unknown preset {preset!r}; valid choices: {', '.join(PRESETS)}")
    declared = generator_params(family)
    what = _what(family)
    settings = coerce_params(what, declared, PRESETS[preset])
    return coerce_params(what, {n: replace(declared[n], default=v) for n, v in settings.items()}, dict(overrides or {}))


def check_settings(settings: Mapping[str, Any], family: str = "sam") -> None:
    """Fail early, in one line, for settings the generator cannot honour here.

    Each argument must have its type (a bool is not a number, nor a number a bool; a float
    argument takes an int) and lie in its range (``_RULES``; floats finite)::

        SAM mask generator: parameter 'points_per_side': must be in [1, inf), got 0

    ``points_per_side`` and ``point_grids`` are exclusive, as the libraries require, and every crop
    layer must keep a point per side (``points_per_side >= crop_n_points_downscale_factor **
    crop_n_layers``). Arguments without a rule are left to the library. Small-region removal
    (``min_mask_region_area > 0``, preset ``heavy``) needs OpenCV with SAM and the ``sam2``
    package's compiled extension with SAM 2 (which silently skips it otherwise).
    """
    what = _what(family)

    def refuse(name: str, problem: str) -> None:
        raise SeplError(f"{what}: parameter {name!r}: {problem}")

    grids = settings.get("point_grids") is not None
    for name, value in settings.items():
        if name == "output_mode" and value not in OUTPUT_MODES:
            refuse(name, f"must be one of {', '.join(OUTPUT_MODES)}, got {value!r}")
        if name == "points_per_side" and grids:
            if value is None:
                continue
            refuse(name, f"points_per_side and point_grids are exclusive (give exactly one), got {value!r} "
                         "and point_grids")
        if name not in _RULES or (name in _SAM2_ONLY and family != "sam2"):
            continue  # the library's (which refuses a name it does not take)
        kind, valid = _RULES[name]
        if isinstance(value, bool) != (kind is bool) or not isinstance(value, int if kind is int else (int, float)):
            expected = {bool: "true or false", int: "an integer", float: "a number"}[kind]
            refuse(name, f"expected {expected}{'' if valid is None else f' in {valid}'}, got {value!r}")
        try:
            Param(name, value, kind, range=valid).coerce(value)  # finite, in range
        except ValueError as exc:
            refuse(name, str(exc))
    side, layers = settings.get("points_per_side", 32), settings.get("crop_n_layers", 0)
    factor = settings.get("crop_n_points_downscale_factor", 1)
    # Crop layer i has int(points_per_side / factor**i) points per side (a ZeroDivisionError at 0);
    # the exponent is capped so that a huge crop_n_layers costs nothing here.
    if side is not None and side < factor ** min(layers, side.bit_length()):
        refuse("points_per_side", f"{side} leaves no point in crop layer {layers} ({side} / "
                                  f"crop_n_points_downscale_factor**{layers} = {side} / {factor}**{layers} < 1); "
                                  f"give more points_per_side or fewer crop_n_layers")
    _check_small_region_removal(settings, family)


def _check_small_region_removal(settings: Mapping[str, Any], family: str) -> None:
    if settings.get("min_mask_region_area", 0) <= 0:
        return
    if family == "sam2":
        try:
            from sam2 import _C  # noqa: F401
        except ImportError:
            raise SeplError(
                "min_mask_region_area > 0 (preset heavy): SAM 2 removes small regions with the sam2 package's "
                "CUDA extension, which this install does not have (built with SAM2_BUILD_CUDA=0); "
                "pass --param min_mask_region_area=0"
            ) from None
        return
    try:
        import cv2  # noqa: F401
    except ImportError:
        raise SeplError(
            "min_mask_region_area > 0 (preset heavy) removes small regions with OpenCV, which is not "
            "installed: pip install 'sepl-tree[opencv]' (opencv-python-headless), "
            "or pass --param min_mask_region_area=0"
        ) from None
