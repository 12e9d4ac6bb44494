"""sepl-tree: SAM-enhanced pseudo-labels for weakly supervised semantic segmentation.

A plugin is a module with functions marked by :data:`hookimpl`; a strategy is a function of a
:class:`Sample` (o_s, o_p, the keep rule and the containment tree are on it)::

    from sepl_tree import Strategy, hookimpl, paint_kept

    def big_only(sample, t1: float = 0.5, min_area: int = 500):
        return paint_kept(sample, sample.sepl_keep(t1) & (sample.masks.areas >= min_area))

    @hookimpl
    def register_strategies(register):
        register(Strategy("big-only", big_only))
"""

from typing import Any

import pluggy

from sepl_tree.errors import InputError, SeplError
from sepl_tree.registry import Param, Range, Reader, Share, Strategy, Tau

__all__ = [
    "PROJECT_NAME",
    "InputError",
    "MaskSet",
    "Param",
    "Range",
    "Reader",
    "Sample",
    "SeplError",
    "Share",
    "Strategy",
    "Tau",
    "__version__",
    "class_regions",
    "hookimpl",
    "paint",
    "paint_kept",
]

__version__ = "0.1.0"

#: The one name used for hook markers, the plugin manager and the entry-point group.
PROJECT_NAME = "sepl_tree"

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
"""Marks a plugin's hook implementations (see :mod:`sepl_tree.hookspecs`)."""

#: What plugin authors use, imported on first use (importing sepl_tree stays light).
_LAZY = {
    "MaskSet": "sepl_tree.masks",
    "Sample": "sepl_tree.sample",
    "class_regions": "sepl_tree.painting",
    "paint": "sepl_tree.painting",
    "paint_kept": "sepl_tree.painting",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'sepl_tree' has no attribute {name!r}")
