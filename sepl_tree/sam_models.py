"""Built-in SAM model types: segment-anything's ``vit_h``, ``vit_l`` and ``vit_b``.

Each builder takes a checkpoint path (or ``None`` for random weights) and returns a ``Sam``
module on the CPU. The state dict is loaded with ``map_location="cpu"`` so a checkpoint saved
from a GPU also loads on a machine without one.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from sepl_tree import hookimpl

__all__ = ["MODEL_TYPES", "build_segment_anything", "load_state_dict", "register_sam_models"]

#: The model types this plugin registers (segment-anything's registry keys).
MODEL_TYPES = ("vit_h", "vit_l", "vit_b")


def load_state_dict(model: Any, checkpoint: str | None) -> Any:
    """Load a state dict file into ``model`` (on the CPU, tensors only) and return the model in eval mode."""
    import torch

    if checkpoint is not None:
        with open(checkpoint, "rb") as f:
            model.load_state_dict(torch.load(f, map_location="cpu", weights_only=True))
    return model.eval()


def build_segment_anything(model_type: str, checkpoint: str | None = None) -> Any:
    """segment-anything's ``model_type`` with the weights of ``checkpoint``."""
    from segment_anything import sam_model_registry

    return load_state_dict(sam_model_registry[model_type](checkpoint=None), checkpoint)


@hookimpl
def register_sam_models(register: Callable[[str, Callable[..., Any]], None]) -> None:
    for model_type in MODEL_TYPES:
        register(model_type, partial(build_segment_anything, model_type))
