"""Generator settings: presets over each model family's automatic mask generator defaults.

A *family* is the library whose automatic mask generator runs the model: ``"sam"``
(segment-anything's ``SamAutomaticMaskGenerator``) or ``"sam2"`` (the ``sam2`` package's
``SAM2AutomaticMaskGenerator``). Settings are that generator's keyword arguments; a preset
names only what it changes, everything else keeps the family's library default.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from sepl_tree.errors import SeplError
from sepl_tree.registry import Param, coerce_params

__all__ = ["FAMILIES", "PRESETS", "check_settings", "generator_class", "generator_params", "generator_settings"]

#: Model families: the library that runs each, its PyPI name, and the sepl-tree extra installing it.
FAMILIES: dict[str, tuple[str, str, str]] = {
    "sam": ("segment_anything", "segment-anything", "sam"),
    "sam2": ("sam2", "sam2", "sam2"),
}

#: Generator settings on top of the family's own defaults.
PRESETS: dict[str, dict[str, Any]] = {
    # The paper's setting: the library defaults with looser quality thresholds.
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
        params[p.name] = Param(p.name, p.default, type(p.default))
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
    what = "SAM 2 mask generator" if family == "sam2" else "SAM mask generator"
    settings = coerce_params(what, declared, PRESETS[preset])
    return coerce_params(what, {n: Param(n, v, declared[n].type) for n, v in settings.items()}, dict(overrides or {}))


def check_settings(settings: Mapping[str, Any], family: str = "sam") -> None:
    """Fail early for settings the generator cannot honour here.

    Small-region removal (``min_mask_region_area > 0``, preset ``heavy``) needs OpenCV with
    SAM and the ``sam2`` package's compiled extension with SAM 2 (which silently skips it
    otherwise).
    """
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
