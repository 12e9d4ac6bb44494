"""The model calls of each family, exactly as its own predictor makes them, batched across images.

segment-anything's ``SamPredictor`` and sam2's ``SAM2ImagePredictor`` hold one image at a time.
An adapter makes the same calls on the same modules, with the same tensors (dtypes, devices
and memory layouts), so that its results are bit-identical to the predictor's, but it can
encode several images (or crops) in one pass of the image encoder.

Batched encoding is exact where it is used: on the CPU the transformer blocks and sam2's whole
encoder give bit-identical features for any batch size (checked for the tiny test models,
ViT-B and Hiera-T), but the 3x3 convolution of segment-anything's neck does not (oneDNN picks
its algorithm by batch size), so the neck runs once per image.

Conventions
-----------
- ``prepare`` runs on the CPU in a background thread: crop (``uint8 (h, w, 3)``) -> the
  model's input tensor before anything the predictor does on the device.
- ``decode`` takes one image's features and point prompts in crop pixels (``(P, 2)``,
  float64 as segment-anything's generator makes them) and returns mask logits at crop size
  ``(P, K, h, w)``, predicted IoUs ``(P, K)`` and the points as the stock generator records them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["Sam1Adapter", "Sam2Adapter", "autocast", "make_adapter"]

#: ``--precision`` -> torch dtype name for autocast (``None``: no autocast).
_PRECISIONS = {"fp32": None, "bf16": "bfloat16", "fp16": "float16"}


def autocast(device: Any, precision: str) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` for ``bf16`` / ``fp16`` on ``device``; a no-op for ``fp32``."""
    import torch

    name = _PRECISIONS[precision]
    if name is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=getattr(torch, name))


class Sam1Adapter:
    """segment-anything ``Sam`` models, as ``SamPredictor`` and ``SamAutomaticMaskGenerator`` call them."""

    family = "sam"

    def __init__(self, model: Any, settings: dict[str, Any], precision: str = "fp32") -> None:
        from segment_anything.utils import amg
        from segment_anything.utils.transforms import ResizeLongestSide

        self.model, self.precision, self.amg = model, precision, amg
        self.transform = ResizeLongestSide(model.image_encoder.img_size)
        self.mask_threshold = float(model.mask_threshold)
        self.outputs = 3

    @property
    def device(self) -> Any:
        return self.model.device

    def prepare(self, crop: np.ndarray) -> Any:
        """The resized crop as ``uint8 (3, h', w')``, long side the encoder's input size (no torch work)."""
        import torch

        return torch.from_numpy(np.ascontiguousarray(self.transform.apply_image(crop).transpose(2, 0, 1)))

    def encode(self, inputs: Sequence[Any]) -> list[Any]:
        """Image embeddings ``(1, C, h, w)``, one per input; the transformer blocks see all inputs at once."""
        import torch

        model, encoder = self.model, self.model.image_encoder
        x = torch.cat([model.preprocess(t.to(self.device, non_blocking=True)[None]) for t in inputs])
        with autocast(self.device, self.precision):
            x = encoder.patch_embed(x)
            if encoder.pos_embed is not None:
                x = x + encoder.pos_embed
            for block in encoder.blocks:
                x = block(x)
            return [encoder.neck(x[i:i + 1].permute(0, 3, 1, 2)) for i in range(len(inputs))]

    def decode(self, features: Any, points: np.ndarray, crop_hw: tuple[int, int], input_hw: tuple[int, int]
               ) -> tuple[Any, Any, Any]:
        import torch

        model = self.model
        coords = torch.as_tensor(self.transform.apply_coords(points, crop_hw), device=self.device)
        labels = torch.ones(coords.shape[0], dtype=torch.int, device=self.device)
        with autocast(self.device, self.precision):
            sparse, dense = model.prompt_encoder(points=(coords[:, None, :], labels[:, None]), boxes=None, masks=None)
            low_res, iou = model.mask_decoder(image_embeddings=features, image_pe=model.prompt_encoder.get_dense_pe(),
                                              sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense,
                                              multimask_output=True)
        logits = model.postprocess_masks(low_res.float(), input_hw, crop_hw)
        return logits, iou.float(), torch.as_tensor(points)


class Sam2Adapter:
    """sam2 ``SAM2Base`` models, as ``SAM2ImagePredictor`` and ``SAM2AutomaticMaskGenerator`` call them."""

    family = "sam2"

    def __init__(self, model: Any, settings: dict[str, Any], precision: str = "fp32") -> None:
        from sam2.utils import amg
        from sam2.utils.transforms import SAM2Transforms

        self.model, self.precision, self.amg = model, precision, amg
        area = settings.get("min_mask_region_area", 0)
        # The generator hands min_mask_region_area to its predictor as both hole and sprinkle areas.
        self.transforms = SAM2Transforms(resolution=model.image_size, mask_threshold=0.0,
                                         max_hole_area=area, max_sprinkle_area=area)
        self.mask_threshold = float(settings.get("mask_threshold", 0.0))
        self.multimask = bool(settings.get("multimask_output", True))
        self.outputs = 3 if self.multimask else 1

    @property
    def device(self) -> Any:
        return self.model.device

    def prepare(self, crop: np.ndarray) -> Any:
        """The crop resized to the model's square input and normalised, ``float32 (3, S, S)``."""
        return self.transforms(crop)

    def encode(self, inputs: Sequence[Any]) -> list[dict[str, Any]]:
        """Per input: ``{"image_embed": (1, C, h, w), "high_res_feats": [...]}`` as the predictor lays them out."""
        import torch

        model = self.model
        x = torch.stack(list(inputs)).to(self.device, non_blocking=True)
        with autocast(self.device, self.precision):
            fpn = model.forward_image(x)["backbone_fpn"][-model.num_feature_levels:]
            return [self._features([level[i:i + 1] for level in fpn]) for i in range(len(inputs))]

    def _features(self, levels: list[Any]) -> dict[str, Any]:
        # The predictor's steps for one image: (HW, 1, C) maps, no-memory embedding added to the
        # lowest resolution, back to (1, C, H, W) views.
        model = self.model
        flat = [x.flatten(2).permute(2, 0, 1) for x in levels]
        if model.directly_add_no_mem_embed:
            flat[-1] = flat[-1] + model.no_mem_embed
        maps = [f.permute(1, 2, 0).view(1, -1, *x.shape[-2:]) for f, x in zip(flat, levels, strict=True)]
        return {"image_embed": maps[-1], "high_res_feats": maps[:-1]}

    def decode(self, features: dict[str, Any], points: np.ndarray, crop_hw: tuple[int, int],
               input_hw: tuple[int, int]) -> tuple[Any, Any, Any]:
        import torch

        model = self.model
        pts = torch.as_tensor(points, dtype=torch.float32, device=self.device)
        coords = self.transforms.transform_coords(pts, normalize=True, orig_hw=crop_hw)
        labels = torch.ones(coords.shape[0], dtype=torch.int, device=self.device)
        with autocast(self.device, self.precision):
            sparse, dense = model.sam_prompt_encoder(points=(coords[:, None, :], labels[:, None]), boxes=None,
                                                     masks=None)
            low_res, iou, _, _ = model.sam_mask_decoder(
                image_embeddings=features["image_embed"], image_pe=model.sam_prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=self.multimask,
                repeat_image=coords.shape[0] > 1, high_res_features=features["high_res_feats"])
        logits = self.transforms.postprocess_masks(low_res.float(), crop_hw)
        return logits, iou.float(), pts


def make_adapter(model: Any, family: str, settings: dict[str, Any], precision: str = "fp32") -> Any:
    """The adapter for ``family`` (``"sam"`` or ``"sam2"``) over ``model``."""
    cls = Sam2Adapter if family == "sam2" else Sam1Adapter
    return cls(model, settings, precision)
