"""The plugin host: a pluggy manager with the built-ins, entry points and user plugins loaded.

Load order: hook specs, then built-ins (:data:`DEFAULT_PLUGINS`), then the entry points of
group ``sepl_tree`` (unless ``SEPL_TREE_DISABLE_PLUGIN_AUTOLOAD`` is set), then the user's
``--plugin`` files and modules. Two plugins registering one name is an error naming both.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Generic, TypeVar

import pluggy

from sepl_tree import PROJECT_NAME, hookspecs
from sepl_tree.errors import PluginError, SeplError
from sepl_tree.registry import Reader, Strategy

__all__ = [
    "AUTOLOAD_ENV",
    "DEFAULT_PLUGINS",
    "PluginHost",
    "UnknownName",
    "get_plugin_manager",
    "load_host",
    "looks_like_plugin_file",
]

#: Built-in plugins: ordinary plugin modules, loaded before any other.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "sepl_tree.strategies.threshold",
    "sepl_tree.strategies.official",
    "sepl_tree.readers.png",
    "sepl_tree.sam.models",
    "sepl_tree.readers.irn",
    "sepl_tree.readers.sipe",
    "sepl_tree.readers.puzzlecam",
    "sepl_tree.readers.recurseed",
    "sepl_tree.readers.psa",
    "sepl_tree.readers.perclass",
    "sepl_tree.readers.clip_es",
    "sepl_tree.strategies.tree_smallest_cover",
    "sepl_tree.strategies.tree_residual",
    "sepl_tree.strategies.tree_prompt",
)

#: Set this environment variable (to anything but "" or "0") to skip entry-point plugins.
AUTOLOAD_ENV = "SEPL_TREE_DISABLE_PLUGIN_AUTOLOAD"

T = TypeVar("T")


class UnknownName(SeplError):
    """A strategy, reader or model name that no loaded plugin registered."""

    def __init__(self, kind: str, name: str, valid: Iterable[str]) -> None:
        self.kind, self.name, self.valid = kind, name, sorted(valid)
        super().__init__(f"unknown {kind} {name!r}; valid choices: {', '.join(self.valid)}")

    def __reduce__(self):
        return (type(self), (self.kind, self.name, self.valid))


def _load_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise PluginError(f"{path}: plugin file not found")
    module_name = f"sepl_tree_plugin_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"{path}: cannot load as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # a user's plugin can fail in any way; report it in one line
        raise PluginError(f"{path}: plugin failed to load: {type(exc).__name__}: {exc}") from exc
    return module


def _load_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise PluginError(f"plugin module {name!r} cannot be imported: {exc}") from exc


def looks_like_plugin_file(spec: str) -> bool:
    """Whether a ``--plugin`` value names a file (``.py`` or a path) rather than a module."""
    return spec.endswith(".py") or os.sep in spec or "/" in spec


def get_plugin_manager(plugins: Sequence[str] = (), autoload: bool | None = None) -> pluggy.PluginManager:
    """A plugin manager with specs, built-ins, entry points and ``plugins`` registered.

    Parameters
    ----------
    plugins
        Paths of ``.py`` files, or importable module names, as given to ``--plugin``.
    autoload
        Load the ``sepl_tree`` entry points; by default unless ``SEPL_TREE_DISABLE_PLUGIN_AUTOLOAD``
        is set.
    """
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=f"builtin:{name}")
    if autoload is None:
        autoload = os.environ.get(AUTOLOAD_ENV, "") in ("", "0")
    if autoload:
        pm.load_setuptools_entrypoints(PROJECT_NAME)
    for spec in plugins:
        if looks_like_plugin_file(spec):
            path = Path(spec)
            module, name = _load_file(path), f"file:{path}"
        else:
            module, name = _load_module(spec), f"module:{spec}"
        if pm.is_registered(module) or pm.get_plugin(name) is not None:
            continue
        pm.register(module, name=name)
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or repr(exc.plugin)
        raise PluginError(f"plugin {name!r} implements an unknown hook ({exc})") from exc
    return pm


@dataclass(frozen=True)
class Entry(Generic[T]):
    """Something a plugin registered, with where it came from."""

    name: str
    item: T
    source: str


@dataclass
class PluginHost:
    """Everything the loaded plugins registered, by name."""

    pm: pluggy.PluginManager
    strategies: dict[str, Entry[Strategy]] = field(default_factory=dict)
    readers: dict[str, Entry[Reader]] = field(default_factory=dict)
    sam_models: dict[str, Entry[Callable[..., Any]]] = field(default_factory=dict)

    def strategy(self, name: str) -> Strategy:
        return self._get(self.strategies, "strategy", name)

    def reader(self, name: str) -> Reader:
        return self._get(self.readers, "reader", name)

    def sam_model(self, name: str) -> Callable[..., Any]:
        return self._get(self.sam_models, "SAM model type", name)

    @staticmethod
    def _get(table: dict[str, Entry[T]], kind: str, name: str) -> T:
        if name not in table:
            raise UnknownName(kind, name, table)
        return table[name].item


def _source(pm: pluggy.PluginManager, plugin: object) -> str:
    name = pm.get_name(plugin) or repr(plugin)
    if name.startswith(("builtin:", "file:", "module:")):
        kind, _, where = name.partition(":")
        return "built-in" if kind == "builtin" else f"{kind} {where}"
    for dist_plugin, dist in pm.list_plugin_distinfo():
        if dist_plugin is plugin:
            return f"entry point {name} ({dist.project_name} {dist.version})"
    return name


def _collect(pm: pluggy.PluginManager, hook_name: str, kind: str, names: Callable[[Any], Iterable[str]],
             table: dict[str, Entry[Any]]) -> None:
    # Call each implementation on its own so every registered name knows its plugin.
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        source = _source(pm, impl.plugin)

        def register(item: Any, *extra: Any, _source: str = source) -> None:
            if extra:  # register(name, value) form
                item = (item, *extra)
            for name in names(item):
                if name in table:
                    raise PluginError(
                        f"{kind} {name!r} is registered twice: by {table[name].source} and by {_source}"
                    )
                table[name] = Entry(name, item if not extra else item[1], _source)

        impl.function(register=register)


def load_host(plugins: Sequence[str] = (), autoload: bool | None = None) -> PluginHost:
    """Build the plugin manager and collect every strategy, reader and SAM model it registers."""
    pm = get_plugin_manager(plugins, autoload)
    host = PluginHost(pm)
    _collect(pm, "register_strategies", "strategy", lambda s: [s.name], host.strategies)
    _collect(pm, "register_readers", "reader", lambda r: list(r.names), host.readers)
    _collect(pm, "register_sam_models", "SAM model type", lambda t: [t[0]], host.sam_models)
    return host
