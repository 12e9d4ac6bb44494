"""The hooks a sepl-tree plugin can implement.

Every hook is a registration hook: it receives a ``register`` callable and calls it once per
thing it provides, so the host knows every name before any work starts (to list, validate and
auto-complete them).
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from sepl_tree import PROJECT_NAME
from sepl_tree.registry import Reader, Strategy

__all__ = ["hookspec", "register_readers", "register_sam_models", "register_strategies"]

hookspec = pluggy.HookspecMarker(PROJECT_NAME)


@hookspec
def register_strategies(register: Callable[[Strategy], None]) -> None:
    """Register selection strategies: call ``register(Strategy(...))`` once for each.

    A strategy's ``select(sample, **params)`` is a pure function from a
    :class:`sepl_tree.sample.Sample` to a ``uint8`` label map of the pseudo-label's shape
    (another integer dtype is taken when its values are labels; a ``bool`` array is refused).
    Its name must be unique among all loaded plugins.
    """


@hookspec
def register_readers(register: Callable[[Reader], None]) -> None:
    """Register pseudo-label readers: call ``register(Reader(...))`` once for each.

    A reader's ``read(folder, image_id, ctx, **params)`` returns a ``uint8`` label map
    (0 background, 1..K-1 classes, 255 ignore; another integer dtype is taken when its values
    are labels, anything else is refused, naming the reader)
    and raises ``InputError`` naming the file it cannot read (any other exception is reported
    in one line naming the reader and the image). Its name and aliases must be unique among
    all loaded plugins.
    """


@hookspec
def register_sam_models(register: Callable[[str, Callable[..., object]], None]) -> None:
    """Register SAM model families: call ``register(model_type, build)`` once for each.

    ``build(checkpoint)`` takes a checkpoint path (or ``None`` for random weights) and returns
    a segment-anything ``Sam`` module, as ``segment_anything.sam_model_registry`` entries do,
    or a sam2 ``SAM2Base`` when ``build.family == "sam2"`` (see ``sepl_tree.sam.models.SamBuilder``).
    """
