"""sepl-tree: SAM-enhanced pseudo-labels for weakly supervised semantic segmentation.

A plugin is a module with functions marked by :data:`hookimpl`::

    from sepl_tree import hookimpl, Strategy

    @hookimpl
    def register_strategies(register):
        register(Strategy("my-rule", my_rule))
"""

import pluggy

from sepl_tree.errors import InputError, SeplError
from sepl_tree.registry import Param, Reader, Strategy

__all__ = [
    "PROJECT_NAME",
    "InputError",
    "Param",
    "Reader",
    "SeplError",
    "Strategy",
    "__version__",
    "hookimpl",
]

__version__ = "0.1.0"

#: The one name used for hook markers, the plugin manager and the entry-point group.
PROJECT_NAME = "sepl_tree"

hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
