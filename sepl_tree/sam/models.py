"""Built-in SAM model types (a plugin): segment-anything's ViTs and the SAM 2 / SAM 2.1 Hieras.

Each builder takes a checkpoint path (or ``None`` for random weights) and returns the model on
the CPU in eval mode: a segment-anything ``Sam`` for family ``"sam"``, a ``sam2`` ``SAM2Base``
for family ``"sam2"``. Checkpoints are read with ``map_location="cpu"`` and
``weights_only=True``: segment-anything's files are plain state dicts, sam2's are
``{"model": state_dict}``. A file that does not fit raises :class:`CheckpointError` with one
short sentence (the job names the file and the model type around it).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from sepl_tree import hookimpl
from sepl_tree.errors import SeplError
from sepl_tree.sam.presets import FAMILIES

__all__ = [
    "CheckpointError",
    "INSTALL",
    "MODEL_TYPES",
    "SAM2_CONFIGS",
    "SamBuilder",
    "build_sam2_family",
    "build_segment_anything",
    "family_of",
    "load_state_dict",
    "read_checkpoint",
    "register_sam_models",
    "require_family",
]

#: segment-anything's model types (its ``sam_model_registry`` keys).
MODEL_TYPES = ("vit_h", "vit_l", "vit_b")
#: SAM 2 and SAM 2.1 model types -> the ``sam2`` package's config for each.
SAM2_CONFIGS: dict[str, str] = {
    f"{version}_hiera_{size}": f"configs/{version}/{version}_hiera_{size}.yaml"
    for version in ("sam2.1", "sam2") for size in ("t", "s", "b+", "l")
}


class CheckpointError(SeplError):
    """A checkpoint file that cannot be read, or does not fit the model."""


@dataclass(frozen=True)
class SamBuilder:
    """A model builder that says which family's generator runs its model.

    A plugin may register a plain function instead: it is taken to build a segment-anything
    ``Sam`` (family ``"sam"``).
    """

    family: str
    build: Callable[[str | None], Any]

    def __call__(self, checkpoint: str | None = None) -> Any:
        return self.build(checkpoint)


def family_of(builder: Callable[..., Any]) -> str:
    """``"sam"`` or ``"sam2"``: the family of a registered builder."""
    family = getattr(builder, "family", "sam")
    if family not in FAMILIES:
        raise SeplError(f"a SAM model builder declares the unknown family {family!r}; valid: {', '.join(FAMILIES)}")
    return family


#: How each extra is installed (docs/sam.md, "Installing"): against the torch pair that
#: ``constraints.txt`` pins, and ``sam2``, a source package whose build imports torch, after it,
#: without build isolation (else pip installs a second torch to build it).
INSTALL = {
    "sam": "pip install -e '.[sam]' -c constraints.txt in the checkout (docs/sam.md, Installing)",
    "sam2": "SAM2_BUILD_CUDA=0 pip install --no-build-isolation -e '.[sam2]' -c constraints.txt in the checkout, "
            "torch first (docs/sam.md, Installing)",
}


def require_family(family: str, model_type: str | None = None) -> None:
    """Raise a one-line ``SeplError`` naming the extra to install when torch or the family's library is missing."""
    module, package, extra = FAMILIES[family]
    what = f"sepl-tree masks --model-type {model_type}" if model_type else f"a {package} model"
    for name, dist in (("torch", "torch"), ("torchvision", "torchvision"), (module, package)):
        try:
            __import__(name)
        except ImportError:
            raise SeplError(f"{what} needs {dist}, which is not installed: {INSTALL[extra]}") from None


def read_checkpoint(path: str | Path) -> Any:
    """The tensors of a checkpoint file (CPU, ``weights_only``), or :class:`CheckpointError`."""
    import torch

    path = Path(path)
    if path.is_dir():
        raise CheckpointError("it is a folder, not a checkpoint file")
    try:
        with open(path, "rb") as f:
            return torch.load(f, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses every unpickling problem; only "Unsupported global" (torch 2.4 and
        # later; "Unsupported class" before) means objects
        if any(words in str(exc).lower() for words in ("unsupported global", "unsupported class")):
            raise CheckpointError("it holds Python objects besides tensors, and only plain tensors are loaded") from None
        raise CheckpointError("it is not a torch checkpoint (corrupt or another kind of file)") from None
    except Exception as exc:  # torch raises many types for a file that is not one (IndexError for text)
        why = "empty or truncated" if isinstance(exc, EOFError) else "corrupt, truncated or another kind of file"
        raise CheckpointError(f"it is not a readable torch checkpoint ({why})") from None


def load_state_dict(model: Any, checkpoint: str | None, key: str | None = None) -> Any:
    """Load a checkpoint's state dict (``state[key]`` when ``key`` is given) into ``model``; eval mode.

    Keys and shapes are checked first, so a checkpoint of another architecture is one sentence
    (how many tensors are missing, unexpected or of another shape, with an example).
    """
    if checkpoint is None:
        return model.eval()
    state = read_checkpoint(checkpoint)
    if key is not None:
        if not isinstance(state, Mapping) or key not in state:
            raise CheckpointError(f"it has no {key!r} entry (checkpoints of this family store {{{key!r}: state_dict}})")
        state = state[key]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"it holds a {type(state).__name__}, not a state dict")
    _check_fit(model.state_dict(), state)
    model.load_state_dict(state)
    return model.eval()


def _check_fit(expected: Mapping[str, Any], state: Mapping[str, Any]) -> None:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [k for k in expected if k in state and tuple(getattr(state[k], "shape", ())) != tuple(expected[k].shape)]
    if missing or unexpected or shapes:
        example = (missing or unexpected or shapes)[0]
        raise CheckpointError(f"its tensors do not fit this architecture ({len(missing)} missing, {len(unexpected)} "
                              f"unexpected, {len(shapes)} of another shape; e.g. {example!r})")


def build_segment_anything(model_type: str, checkpoint: str | None = None) -> Any:
    """segment-anything's ``model_type`` (``vit_h``, ``vit_l``, ``vit_b``) with the weights of ``checkpoint``."""
    require_family("sam")
    from segment_anything import sam_model_registry

    return load_state_dict(sam_model_registry[model_type](checkpoint=None), checkpoint)


def build_sam2_family(config: str, checkpoint: str | None = None) -> Any:
    """A SAM 2 / 2.1 model from the ``sam2`` package's ``config``, with the weights of ``checkpoint``.

    The architecture comes from the package's own config and builder (with its image-mode
    post-processing options), on the CPU; the weights are then loaded like any other checkpoint.
    """
    require_family("sam2")
    from sam2.build_sam import build_sam2

    return load_state_dict(build_sam2(config, ckpt_path=None, device="cpu"), checkpoint, key="model")


@hookimpl
def register_sam_models(register: Callable[[str, Callable[..., Any]], None]) -> None:
    for model_type in MODEL_TYPES:
        register(model_type, SamBuilder("sam", partial(build_segment_anything, model_type)))
    for model_type, config in SAM2_CONFIGS.items():
        register(model_type, SamBuilder("sam2", partial(build_sam2_family, config)))
