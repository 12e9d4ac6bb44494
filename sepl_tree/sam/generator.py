"""The stock generators of both families, and the same generators recording each mask's ``level``.

``level`` is the index (0, 1, 2) of the multimask output a mask came from. The libraries'
generators drop it; :func:`levelled_generator_class` keeps it without changing which masks are
kept: the model still runs once per point batch, and the library's own batch post-processing
then runs once per output (the predictor hands it one output at a time), so each surviving
mask carries its output index in a ``levels`` field that ``MaskData`` filters and concatenates
along with the others. The batch's masks are then put back in the stock order (point by point,
each point's outputs in turn), so that non-maximum suppression sees the stock generator's input
and breaks ties as it does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from sepl_tree.errors import SeplError
from sepl_tree.masks import MaskSet
from sepl_tree.sam.presets import check_settings, generator_class

__all__ = ["build_generator", "fit_predictor", "generate_maskset", "levelled_generator_class", "stock_generator"]

#: The predictor method each family's generator calls once per point batch.
_PREDICT = {"sam": "predict_torch", "sam2": "_predict"}
_LEVELLED: dict[str, type] = {}


def fit_predictor(generator: Any, family: str) -> Any:
    """Make a SAM 2 generator's predictor fit its model's input size (a no-op at 1024 pixels).

    sam2 1.1's ``SAM2ImagePredictor`` fixes its feature-map sizes for 1024-pixel models; later
    releases derive them from the model, as this does, so that smaller models (the tests'
    tiny one) run through the stock generator unchanged otherwise.
    """
    if family == "sam2":
        model = generator.predictor.model
        side = model.image_size // model.backbone_stride
        generator.predictor._bb_feat_sizes = [(side * 4, side * 4), (side * 2, side * 2), (side, side)]
    return generator


def stock_generator(model: Any, settings: Mapping[str, Any], family: str = "sam",
                    output_mode: str = "binary_mask") -> Any:
    """The family's own automatic mask generator over ``model``, unchanged."""
    return _make(generator_class(family), model, settings, family, output_mode)


def _make(cls: type, model: Any, settings: Mapping[str, Any], family: str, output_mode: str) -> Any:
    """``cls(model, ...)`` with ``settings`` checked first; a setting it rejects is one ``SeplError``."""
    check_settings({**settings, "output_mode": output_mode}, family)
    try:
        generator = cls(model, output_mode=output_mode, **settings)
    except (AssertionError, ValueError, TypeError) as exc:
        raise SeplError(f"invalid SAM mask generator settings {dict(settings)}: {exc}") from None
    return fit_predictor(generator, family)


def levelled_generator_class(family: str = "sam") -> type:
    """The family's generator class, with a ``level`` in every record (see the module's docstring)."""
    if family not in _LEVELLED:
        _LEVELLED[family] = _make_levelled(generator_class(family), family)
    return _LEVELLED[family]


def _make_levelled(base: type, family: str) -> type:
    if family == "sam2":
        from sam2.utils.amg import MaskData
    else:
        from segment_anything.utils.amg import MaskData
    predict_name = _PREDICT[family]

    class Levelled(base):  # type: ignore[misc, valid-type]
        __doc__ = f"``{base.__name__}`` whose records also say which multimask output made them."

        def _process_batch(self, *args: Any, **kwargs: Any) -> Any:
            predictor = self.predictor
            real_predict = getattr(predictor, predict_name)
            state: dict[str, Any] = {}

            def one_output(*a: Any, **kw: Any) -> tuple[Any, ...]:
                if not kw.get("multimask_output", True):  # one output anyway (SAM 2's m2m refinement)
                    return real_predict(*a, **kw)
                if "outputs" not in state:
                    state["outputs"] = real_predict(*a, **kw)
                k = state["level"]
                return tuple(t[:, k:k + 1] for t in state["outputs"])

            merged, level = MaskData(), 0
            setattr(predictor, predict_name, one_output)
            try:
                while True:
                    state["level"] = level
                    data = super()._process_batch(*args, **kwargs)
                    data["levels"] = np.full(len(data["rles"]), level, np.int64)
                    merged.cat(data)
                    level += 1
                    if "outputs" not in state or level >= state["outputs"][0].shape[1]:
                        break
            finally:
                delattr(predictor, predict_name)  # back to the class's method
            if level > 1 and len(merged["rles"]):
                _point_major(merged, args[0], level)
            return merged

        def _generate_masks(self, image: np.ndarray) -> Any:
            self._last_data = super()._generate_masks(image)
            return self._last_data

        def generate(self, image: np.ndarray) -> list[dict[str, Any]]:
            records = super().generate(image)
            # generate() builds its records in the order of the (filtered in place) mask data.
            levels = self._last_data["levels"] if records else []
            for record, level in zip(records, levels, strict=True):
                record["level"] = int(level)
            return records

    Levelled.__name__ = Levelled.__qualname__ = f"Levelled{base.__name__}"
    return Levelled


def _point_major(data: Any, points: np.ndarray, outputs: int) -> None:
    """Put a batch's masks, merged output by output, back in the stock generator's order (in place).

    The stock batch holds point 0's outputs 0..K-1, then point 1's, ...; the filters keep that
    order. Non-maximum suppression sorts by score and breaks ties by position, so masks with equal
    ``predicted_iou`` (or, across crops, equal crop areas) come out in the order they went in:
    the output-by-output order would write the same masks in another order, or keep another of two
    tied duplicates. Each mask's point is found by value among the batch's points (as the
    library made them: float64 for segment-anything, float32 for sam2; the grid's points differ).
    """
    import torch

    found = data["points"]
    batch = torch.as_tensor(np.asarray(points), dtype=found.dtype, device=found.device)
    index = (found[:, None, :] == batch[None]).all(dim=-1).int().argmax(dim=1).cpu()
    data.filter(torch.argsort(index * outputs + torch.as_tensor(data["levels"]), stable=True))


def build_generator(model: Any, settings: Mapping[str, Any], family: str = "sam",
                    output_mode: str = "binary_mask") -> Any:
    """The family's generator over ``model``, recording ``level``; ``output_mode`` as the library's.

    Raises ``SeplError`` for settings the generator rejects or cannot honour here.
    """
    return _make(levelled_generator_class(family), model, settings, family, output_mode)


def generate_maskset(generator: Any, image: np.ndarray) -> MaskSet:
    """Run a ``binary_mask`` generator on a ``uint8 (H, W, 3)`` image; its masks with their records."""
    records = generator.generate(image)
    height, width = image.shape[:2]
    if not records:
        return MaskSet.empty(height, width)
    masks = np.stack([np.asarray(r.pop("segmentation"), dtype=bool) for r in records])
    return MaskSet(masks, records)
