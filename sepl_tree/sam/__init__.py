"""SAM automatic mask generation: model families, presets, the stock and fast generators, the job.

Conventions
-----------
- Images are read as ``uint8 (H, W, 3)`` RGB; an image's id is its file name without suffix.
- Masks are written as segment-anything's ``scripts/amg.py`` writes them (``area``, ``bbox``
  XYWH, ``predicted_iou``, ``point_coords``, ``stability_score``, ``crop_box`` XYWH, COCO RLE
  ``segmentation``) plus ``level``: which of SAM's three multimask outputs the mask came
  from (0 sub-part, 1 part, 2 whole, by SAM's training order of its outputs).
- Output folders hold exactly what ``sepl-tree run --masks`` reads (``<id>.json`` or ``<id>/``),
  plus ``errors.log`` and ``masks_run.jsonl``.

Modules, one concern each: :mod:`~sepl_tree.sam.presets` (settings per family),
:mod:`~sepl_tree.sam.models` (the built-in model types, a plugin), :mod:`~sepl_tree.sam.generator`
(the libraries' generators, and with ``level``), :mod:`~sepl_tree.sam.adapters` (each family's
model calls, batched), :mod:`~sepl_tree.sam.fast` (the fast path), :mod:`~sepl_tree.sam.rle`
(RLE from tensors), :mod:`~sepl_tree.sam.timing` (seconds per device stage),
:mod:`~sepl_tree.sam.writing` (image files are read by :mod:`sepl_tree.images`), :mod:`~sepl_tree.sam.workers` (per-worker pipelines),
:mod:`~sepl_tree.sam.job` (the picklable job spec) and :mod:`~sepl_tree.sam.run` (a run over a
folder: checks, resume, logs, summary).

The names below are imported from their modules on first use, so that importing this package
(which the plugin host does for the built-in model types) imports neither torch nor the SAM
libraries.
"""

from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "presets": ("FAMILIES", "PRESETS", "check_settings", "generator_class", "generator_params", "generator_settings"),
    "models": ("CheckpointError", "SAM2_CONFIGS", "SamBuilder", "family_of", "require_family"),
    "generator": ("build_generator", "generate_maskset", "levelled_generator_class", "stock_generator"),
    "fast": ("FastMaskGenerator", "ImageMasks"),
    "sepl_tree.images": ("IMAGE_SUFFIXES", "find_images", "load_image"),
    "writing": ("FORMATS", "records_to_maskset", "write_png_folder_with_levels", "write_records"),
    "workers": ("FastWorker", "MaskResult", "StockWorker"),
    "job": ("DEVICES", "ENGINES", "PRECISIONS", "MaskJob", "available_cores", "check_checkpoint",
            "default_torch_threads", "resolve_device"),
    "run": ("ERROR_LOG", "RUN_LOG", "MaskRequest", "MaskRun", "MaskRunSummary", "append_error", "append_run_log",
            "check_same_settings", "plan_masks_run", "start_error_log"),
    "sepl_tree.files": ("remove_stale_temporaries",),
}
_WHERE = {name: module for module, names in _NAMES.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module if "." in module else f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
