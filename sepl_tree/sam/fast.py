"""The fast path: the stock generator's masks, with images batched and post-processing on the device.

:class:`FastMaskGenerator` computes what segment-anything's ``SamAutomaticMaskGenerator`` (or
sam2's ``SAM2AutomaticMaskGenerator``) computes, step for step and with the library's own
helpers (``utils.amg``), so that at fp32 its records are the stock generator's, in the same
order, plus ``level``. What changes is where and how often the work is done:

- :meth:`~FastMaskGenerator.prepare` (image -> crops -> model inputs) runs on the CPU and is
  thread-safe, so a loader thread can prepare images while the device works;
- the image encoder runs on ``batch_images`` inputs (images or crops) at once;
- point prompts are decoded in batches of ``point_batch`` (by default the generator's
  ``points_per_batch`` on the CPU, and as many as fit in a share of the free memory on a GPU);
- every mask stays on the device, as a boolean tensor, until non-maximum suppression has
  decided which survive; only those are run-length encoded, all at once, and one transfer
  brings the run lengths, boxes and scores to the host (:class:`ImageMasks`). The stock
  generator encodes every candidate, one device synchronisation per mask.

Conventions: boxes XYXY internally, XYWH in records (as segment-anything writes them); masks
``bool (N, H, W)``; ``level`` is the index of the multimask output a mask came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sepl_tree.errors import SeplError
from sepl_tree.sam.adapters import make_adapter
from sepl_tree.sam.rle import encode_counts, mask_runs, split_runs
from sepl_tree.sam.timing import StageTimer

__all__ = ["Crop", "FastMaskGenerator", "ImageMasks", "Prepared"]

#: Share of the free GPU memory one point batch may take when ``point_batch`` is automatic.
POINT_BATCH_MEMORY_SHARE = 0.4


@dataclass
class Crop:
    """One crop of an image, ready for the encoder: ``box`` XYXY in image pixels."""

    box: list[int]
    layer: int
    input: Any
    hw: tuple[int, int]
    input_hw: tuple[int, int]


@dataclass
class Prepared:
    """An image as model inputs: its size and its crops (the whole image first)."""

    height: int
    width: int
    crops: list[Crop]


@dataclass
class ImageMasks:
    """One image's masks on the host, as run lengths with the stock generator's fields.

    ``boxes`` and ``crop_boxes`` are XYXY; every array has the dtype the family's stock
    generator's ``MaskData.to_numpy`` leaves it with (so records hold the same numbers).
    """

    height: int
    width: int
    runs: np.ndarray
    per_mask: np.ndarray
    boxes: np.ndarray
    iou: np.ndarray
    points: np.ndarray
    stability: np.ndarray
    crop_boxes: np.ndarray
    levels: np.ndarray

    def __len__(self) -> int:
        return len(self.per_mask)

    def areas(self) -> np.ndarray:
        """Pixels per mask: the runs of ones are every second run, from the second."""
        if not len(self):
            return np.zeros(0, np.int64)
        start = np.cumsum(self.per_mask) - self.per_mask
        odd = (np.arange(self.runs.size) - np.repeat(start, self.per_mask)) % 2 == 1
        return np.add.reduceat(np.where(odd, self.runs, 0), start)

    def records(self) -> list[dict[str, Any]]:
        """amg.py's records (COCO RLE ``segmentation`` with ``str`` counts) plus ``level``.

        Typed as :func:`~sepl_tree.sam.writing.amg_record` types the stock generator's records.
        """
        size = [self.height, self.width]
        xywh, crops = self.boxes.copy(), self.crop_boxes.copy()
        xywh[:, 2:] -= xywh[:, :2]  # in the stored dtype, as the library's box_xyxy_to_xywh
        crops[:, 2:] -= crops[:, :2]
        xywh, crops = xywh.astype(np.float64), crops.astype(np.float64)  # typed as amg_record writes them
        fields = zip(encode_counts(self.runs, self.per_mask), self.areas().tolist(), xywh.tolist(),
                     self.iou.tolist(), self.points.tolist(), self.stability.tolist(), crops.tolist(),
                     self.levels.tolist(), strict=True)
        return [{"segmentation": {"size": size, "counts": counts}, "area": area, "bbox": box, "predicted_iou": iou,
                 "point_coords": [point], "stability_score": stab, "crop_box": crop, "level": level}
                for counts, area, box, iou, point, stab, crop, level in fields]


def _select(part: dict[str, Any], keep: Any) -> dict[str, Any]:
    """Every tensor of ``part`` indexed by ``keep`` (moved to each tensor's device, like ``MaskData.filter``)."""
    import torch

    return {k: v[torch.as_tensor(keep, device=v.device)] for k, v in part.items()}


def _cat(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    import torch

    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


class FastMaskGenerator:
    """Masks of several images at once, as the family's stock generator would make them.

    Parameters
    ----------
    model
        A segment-anything ``Sam`` or a sam2 ``SAM2Base``, on its device, in eval mode.
    family
        ``"sam"`` or ``"sam2"``.
    settings
        The stock generator's keyword arguments (see :func:`sepl_tree.sam.presets.generator_settings`).
    precision
        ``fp32``, ``bf16`` or ``fp16``: autocast of the encoder and decoder (post-processing is fp32).
    batch_images
        Encoder inputs (images, or crops with ``crop_n_layers > 0``) per encoder pass.
    point_batch
        Point prompts per decoder pass; ``None``: ``points_per_batch`` on the CPU, memory-sized on a GPU.
    timer
        Where the encoder, decoder and post-processing times are added up.
    """

    def __init__(self, model: Any, family: str, settings: dict[str, Any], precision: str = "fp32",
                 batch_images: int = 1, point_batch: int | None = None, timer: StageTimer | None = None) -> None:
        self.settings = dict(settings)
        if self.settings.get("use_m2m"):
            raise SeplError("use_m2m (SAM 2's mask-to-mask refinement) runs with --engine stock only")
        self.family, self.adapter = family, make_adapter(model, family, self.settings, precision)
        self.amg = self.adapter.amg
        self.batch_images, self.point_batch = max(1, batch_images), point_batch
        self.timer = timer or StageTimer(self.adapter.device)
        self.point_batches_used: set[int] = set()
        s = self.settings
        self.point_grids = self.amg.build_all_layer_point_grids(s["points_per_side"], s["crop_n_layers"],
                                                                s["crop_n_points_downscale_factor"])

    @property
    def device(self) -> Any:
        """The model's device."""
        return self.adapter.device

    # ------------------------------------------------------------------------------ host side

    def prepare(self, image: np.ndarray) -> Prepared:
        """Crops and model inputs of a ``uint8 (H, W, 3)`` image (CPU only; safe in a thread)."""
        height, width = image.shape[:2]
        boxes, layers = self.amg.generate_crop_boxes((height, width), self.settings["crop_n_layers"],
                                                     self.settings["crop_overlap_ratio"])
        crops = []
        for box, layer in zip(boxes, layers, strict=True):
            x0, y0, x1, y1 = box
            cropped = image[y0:y1, x0:x1, :]
            model_input = self.adapter.prepare(cropped)
            crops.append(Crop(box, layer, model_input, cropped.shape[:2], tuple(model_input.shape[-2:])))
        return Prepared(height, width, crops)

    # ---------------------------------------------------------------------------- device side

    def generate(self, images: Sequence[Prepared]) -> list[ImageMasks]:
        """The masks of each prepared image (the encoder sees up to ``batch_images`` crops at once)."""
        import torch

        jobs = [(i, crop) for i, image in enumerate(images) for crop in image.crops]
        found: list[list[dict[str, Any]]] = [[] for _ in images]
        with torch.inference_mode():
            for start in range(0, len(jobs), self.batch_images):
                chunk = jobs[start:start + self.batch_images]
                with self.timer.stage("encoder"):
                    features = self.adapter.encode([crop.input for _, crop in chunk])
                for (i, crop), feats in zip(chunk, features, strict=True):
                    part = self._crop_masks(feats, crop, images[i])
                    if part is not None:
                        found[i].append(part)
            return [self._image_masks(image, parts) for image, parts in zip(images, found, strict=True)]

    def _point_batch_for(self, crop: Crop) -> int:
        """Prompts per decoder pass: as given, or sized to the GPU's free memory."""
        import torch

        per_batch = int(self.settings["points_per_batch"])
        if self.point_batch:
            return self.point_batch
        device = torch.device(self.adapter.device)
        if device.type != "cuda":
            return per_batch
        free, _ = torch.cuda.mem_get_info(device)
        side = max(crop.input_hw) if self.family == "sam" else self.adapter.model.image_size
        h, w = crop.hw
        # Logits at the input size and at the crop size, a few temporaries each, per output.
        per_point = self.adapter.outputs * 4 * (2 * side * side + 4 * h * w)
        fits = int(POINT_BATCH_MEMORY_SHARE * free // per_point) // per_batch * per_batch
        most = max(len(grid) for grid in self.point_grids)
        return max(per_batch, min(fits, -(-most // per_batch) * per_batch))

    def _crop_masks(self, features: Any, crop: Crop, image: Prepared) -> dict[str, Any] | None:
        """The masks of one crop that pass the filters and the crop's box NMS (boxes in image pixels)."""
        import torch
        from torchvision.ops.boxes import batched_nms

        points = self.point_grids[crop.layer] * np.array(crop.hw)[None, ::-1]
        parts, point_batch = [], self._point_batch_for(crop)
        self.point_batches_used.add(point_batch)
        for (batch,) in self.amg.batch_iterator(point_batch, points):
            with self.timer.stage("decoder"):
                logits, iou, prompts = self.adapter.decode(features, batch, crop.hw, crop.input_hw)
            with self.timer.stage("postprocess"):
                part = self._filter(logits, iou, prompts, crop.box, (image.height, image.width))
            if len(part["iou"]):
                parts.append(part)
        if not parts:
            return None
        with self.timer.stage("postprocess"):
            data = _cat(parts)
            boxes = data["boxes"]
            keep = batched_nms(boxes.float(), data["iou"], torch.zeros(len(boxes), device=boxes.device),
                               iou_threshold=self.settings["box_nms_thresh"])
            data = _select(data, keep)
            data["boxes"] = self.amg.uncrop_boxes_xyxy(data["boxes"], crop.box)
            data["points"] = self.amg.uncrop_points(data["points"], crop.box)
            data["masks"] = self.amg.uncrop_masks(data["masks"], crop.box, image.height, image.width)
            data["crop_boxes"] = torch.tensor([crop.box] * len(keep))
            return data

    def _filter(self, logits: Any, iou: Any, prompts: Any, crop_box: list[int], image_hw: tuple[int, int]
                ) -> dict[str, Any]:
        """The stock generator's per-batch filters, in its order: predicted IoU, stability, crop edge."""
        import torch

        s, outputs = self.settings, logits.shape[1]
        part = {"logits": logits.flatten(0, 1), "iou": iou.flatten(0, 1),
                "points": prompts.repeat_interleave(outputs, dim=0),
                "levels": torch.arange(outputs, device=logits.device).repeat(logits.shape[0])}
        if s["pred_iou_thresh"] > 0.0:
            part = _select(part, part["iou"] > s["pred_iou_thresh"])
        part["stability"] = self.amg.calculate_stability_score(part["logits"], self.adapter.mask_threshold,
                                                               s["stability_score_offset"])
        if s["stability_score_thresh"] > 0.0:
            part = _select(part, part["stability"] >= s["stability_score_thresh"])
        part["masks"] = part.pop("logits") > self.adapter.mask_threshold
        part["boxes"] = self.amg.batched_mask_to_box(part["masks"])
        keep = ~self.amg.is_box_near_crop_edge(part["boxes"], crop_box, [0, 0, image_hw[1], image_hw[0]])
        return part if bool(torch.all(keep)) else _select(part, keep)

    def _image_masks(self, image: Prepared, parts: list[dict[str, Any]]) -> ImageMasks:
        """Merge the crops (NMS preferring smaller crops), remove small regions, encode, copy to the host."""
        import torch
        from torchvision.ops.boxes import batched_nms, box_area

        if not parts:
            return _empty(image)
        with self.timer.stage("postprocess"):
            data = _cat(parts)
            if len(image.crops) > 1:
                scores = (1 / box_area(data["crop_boxes"])).to(data["boxes"].device)
                keep = batched_nms(data["boxes"].float(), scores, torch.zeros(len(scores), device=scores.device),
                                   iou_threshold=self.settings["crop_nms_thresh"])
                data = _select(data, keep)
            runs, per_mask = mask_runs(data.pop("masks"))
            # As each library's MaskData.to_numpy leaves them: sam2 makes every field float32,
            # segment-anything keeps the dtypes (int boxes, float64 points).
            host = {k: (v.float() if self.family == "sam2" else v).cpu().numpy() for k, v in data.items()}
            masks = ImageMasks(image.height, image.width, runs.cpu().numpy(), per_mask.cpu().numpy(), host["boxes"],
                               host["iou"], host["points"], host["stability"], host["crop_boxes"],
                               data["levels"].cpu().numpy())
        if self.family == "sam" and self.settings["min_mask_region_area"] > 0 and len(masks):
            masks = self._remove_small_regions(masks)
        return masks

    def _remove_small_regions(self, masks: ImageMasks) -> ImageMasks:
        """segment-anything's own small-region clean-up (OpenCV, on the host), on these masks."""
        from segment_anything import SamAutomaticMaskGenerator
        from segment_anything.utils.amg import MaskData

        data = MaskData(rles=[{"size": [masks.height, masks.width], "counts": c}
                              for c in split_runs(masks.runs, masks.per_mask)],
                        boxes=masks.boxes, iou_preds=masks.iou, points=masks.points,
                        stability_score=masks.stability, crop_boxes=masks.crop_boxes, levels=masks.levels)
        s = self.settings
        data = SamAutomaticMaskGenerator.postprocess_small_regions(data, s["min_mask_region_area"],
                                                                   max(s["box_nms_thresh"], s["crop_nms_thresh"]))
        counts = [np.asarray(r["counts"], np.int64) for r in data["rles"]]
        runs = np.concatenate(counts) if counts else np.zeros(0, np.int64)
        return ImageMasks(masks.height, masks.width, runs, np.array([len(c) for c in counts], np.int64),
                          np.asarray(data["boxes"]), data["iou_preds"], data["points"],
                          data["stability_score"], data["crop_boxes"], data["levels"])


def _empty(image: Prepared) -> ImageMasks:
    f4 = np.zeros((0, 4), np.float32)
    return ImageMasks(image.height, image.width, np.zeros(0, np.int64), np.zeros(0, np.int64), f4,
                      np.zeros(0, np.float32), np.zeros((0, 2), np.float32), np.zeros(0, np.float32), f4.copy(),
                      np.zeros(0, np.int64))
