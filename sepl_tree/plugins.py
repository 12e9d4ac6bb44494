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
    "sepl_tree.readers.amn",
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

    def __init__(self, kind: str, name: str, valid: Iterable[str], where: str = "") -> None:
        self.kind, self.name, self.valid, self.where = kind, name, sorted(valid), where
        super().__init__(f"{where}unknown {kind} {name!r}; valid choices: {', '.join(self.valid)}")

    def __reduce__(self):
        return (type(self), (self.kind, self.name, self.valid, self.where))


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
        hint = f"; for the file, pass --plugin {name}.py" if Path(f"{name}.py").is_file() else ""
        raise PluginError(f"plugin module {name!r} cannot be imported: {exc}{hint}") from exc


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
        _load_entry_points(pm)
    for spec in plugins:
        if looks_like_plugin_file(spec):
            path = Path(spec)
            module, name = _load_file(path), f"file:{path}"
        else:
            module, name = _load_module(spec), f"module:{spec}"
        if pm.is_registered(module) or pm.get_plugin(name) is not None:
            continue
        _register(pm, module, name)
        if not pm.get_hookcallers(module):  # a plugin that adds nothing is a mistake: say which
            unmarked = [n for n in dir(hookspecs) if n.startswith("register_") and callable(getattr(module, n, None))]
            why = f"{', '.join(unmarked)} is not marked @hookimpl" if unmarked else "no function is marked @hookimpl"
            raise PluginError(f"{_source(pm, module)}: implements no hook ({why}; from sepl_tree import hookimpl)")
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        unknown = ", ".join(repr(c.name) for c in pm.get_hookcallers(exc.plugin) or () if not c.has_spec())
        hooks = ", ".join(n for n in sorted(dir(hookspecs)) if n.startswith("register_"))
        raise PluginError(f"{_source(pm, exc.plugin)}: implements an unknown hook {unknown}; the hooks are "
                          f"{hooks}") from exc
    return pm


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    """Register the ``sepl_tree`` entry points of the installed distributions, as pluggy's
    ``load_setuptools_entrypoints`` does, but one that fails to load is one line naming it."""
    import importlib.metadata

    for dist in list(importlib.metadata.distributions()):
        for ep in dist.entry_points:
            name = f"entry:{ep.name} ({dist.metadata['name']} {dist.version})"
            if ep.group != PROJECT_NAME or pm.has_plugin(name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # an installed plugin can fail in any way
                raise PluginError(f"entry point {name[6:]}: failed to load: {type(exc).__name__}: {exc} "
                                  f"(set {AUTOLOAD_ENV}=1 to skip installed plugins)") from exc
            if not pm.is_registered(plugin):  # (a module listed by two records of one install, e.g. a stale one)
                _register(pm, plugin, name)


def _register(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:  # e.g. a hook implementation with the wrong arguments
        lines = str(exc).strip().splitlines()  # pluggy's: the plugin, "hookimpl definition: ...", the reason
        where = next((line.split(": ", 1)[1] for line in lines if line.startswith("hookimpl definition: ")), "")
        raise PluginError(f"{_source(pm, plugin, name)}: {where + ': ' if where else ''}{lines[-1]}") from exc


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


def _source(pm: pluggy.PluginManager, plugin: object, name: str | None = None) -> str:
    """Where ``plugin`` comes from: ``built-in``, ``file PATH``, ``module NAME`` or ``entry point
    NAME (DIST VERSION)``, from the name it is (or is to be) registered under."""
    name = name or pm.get_name(plugin) or repr(plugin)
    kind, _, where = name.partition(":")
    kinds = {"builtin": "built-in", "file": "file ", "module": "module ", "entry": "entry point "}
    if kind not in kinds:
        return name
    return kinds[kind] if kind == "builtin" else kinds[kind] + where


def _collect(pm: pluggy.PluginManager, hook_name: str, kind: str, names: Callable[[Any], Iterable[str]],
             table: dict[str, Entry[Any]], takes: type | None = None) -> None:
    """Call each implementation of ``hook_name`` on its own, so that every registered name knows
    its plugin; ``takes``: the type ``register`` takes (else the ``register(name, value)`` form).
    Whatever goes wrong in a plugin's hook is one :class:`PluginError` naming the plugin."""
    for impl in getattr(pm.hook, hook_name).get_hookimpls():
        source = _source(pm, impl.plugin)

        def register(item: Any, *extra: Any, _source: str = source) -> None:
            if takes is not None and (extra or not isinstance(item, takes)):
                got = ", ".join(type(v).__name__ for v in (item, *extra))
                raise PluginError(f"{_source}: register() in {hook_name} takes a {takes.__name__}, got {got}")
            if takes is None and len(extra) != 1:
                raise PluginError(f"{_source}: register() in {hook_name} takes a name and a value")
            if extra:  # register(name, value) form
                item = (item, *extra)
            for name in names(item):
                if name in table:
                    both = (table[name].source, _source)
                    hint = (f" (installed, and given with --plugin? drop --plugin, or set {AUTOLOAD_ENV}=1)"
                            if both[0].startswith("entry point") and both[1].startswith(("file", "module")) else "")
                    raise PluginError(f"{kind} {name!r} is registered twice: by {both[0]} and by {both[1]}{hint}")
                table[name] = Entry(name, item if not extra else item[1], _source)

        try:
            impl.function(register=register)
        except SeplError:
            raise
        except Exception as exc:  # a plugin's hook can fail in any way: say whose
            raise PluginError(f"{source}: {hook_name} failed: {type(exc).__name__}: {exc}") from exc


def load_host(plugins: Sequence[str] = (), autoload: bool | None = None) -> PluginHost:
    """Build the plugin manager and collect every strategy, reader and SAM model it registers."""
    pm = get_plugin_manager(plugins, autoload)
    host = PluginHost(pm)
    _collect(pm, "register_strategies", "strategy", lambda s: [s.name], host.strategies, Strategy)
    _collect(pm, "register_readers", "reader", lambda r: list(r.names), host.readers, Reader)
    _collect(pm, "register_sam_models", "SAM model type", lambda t: [t[0]], host.sam_models)
    return host
