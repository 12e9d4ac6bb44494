"""Option aliases and helpers shared by every CLI command module.

A command module defines ``register_commands(app: typer.Typer)``; ``sepl_tree.cli`` calls it.
Commands parse, call the library and print; a :class:`~sepl_tree.errors.SeplError` raised
below them becomes one red line on stderr and exit code 1 (see :func:`run_guarded`).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from sepl_tree.errors import SeplError
from sepl_tree.plugins import PluginHost, UnknownName, load_host, looks_like_plugin_file

__all__ = [
    "ConfigOpt",
    "ExecutorOpt",
    "RayAddressOpt",
    "executor_options",
    "absolute_plugin_paths",
    "IdsOpt",
    "NumClassesOpt",
    "ParamOpt",
    "PluginOpt",
    "WorkersOpt",
    "console",
    "err_console",
    "get_host",
    "load_config",
    "parse_params",
    "progress_bar",
    "read_ids",
    "run_guarded",
]

console = Console()
err_console = Console(stderr=True)

PluginOpt = Annotated[
    list[str] | None,
    typer.Option("--plugin", help="A plugin .py file or importable module (repeatable).", show_default=False),
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="NAME=VALUE for the strategy/reader (repeatable).", show_default=False),
]
NumClassesOpt = Annotated[int, typer.Option("--num-classes", min=2, max=255, help="Classes K, background included (VOC 21, COCO 81).")]
IdsOpt = Annotated[
    Path | None, typer.Option("--ids", help="A text file with one image id per line, to restrict the run.", show_default=False)
]
WorkersOpt = Annotated[int, typer.Option("--workers", "-j", min=1, help="Worker processes.")]
ExecutorOpt = Annotated[str, typer.Option("--executor", help="process (local pool) or ray.")]
RayAddressOpt = Annotated[str | None, typer.Option(
    "--ray-address", help="Join this Ray cluster (with --executor ray); default: a local Ray.", show_default=False)]


def executor_options(executor: str, ray_address: str | None) -> dict[str, str | None]:
    """The keyword options :func:`sepl_tree.executors.execute` takes for ``executor``.

    An unknown executor, or ``ray`` without Ray installed, is an error here, before any work.
    """
    from sepl_tree.executors import EXECUTORS

    if executor not in EXECUTORS:
        raise SeplError(f"unknown executor {executor!r}; valid choices: {', '.join(sorted(EXECUTORS))}")
    if executor != "ray":
        return {}
    from sepl_tree.executors.ray import import_ray

    import_ray()
    return {"ray_address": ray_address}

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", help="A TOML preset (e.g. configs/paper.toml).", show_default=False)
]

T = TypeVar("T")


def run_guarded(func: Callable[[], T]) -> T:
    """Run a command body; user errors become one line on stderr and exit code 1."""
    try:
        return func()
    except SeplError as exc:
        # The message is plain text (paths may hold brackets): escape it from rich's markup.
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(2 if isinstance(exc, UnknownName) else 1) from None


def get_host(plugins: list[str] | None) -> PluginHost:
    """The plugin host with the user's ``--plugin`` files and modules loaded."""
    return load_host(plugins or [])


def absolute_plugin_paths(plugins: list[str] | None) -> tuple[str, ...]:
    """``--plugin`` values with file paths made absolute (module names are left as they are)."""
    return tuple(str(Path(p).resolve()) if looks_like_plugin_file(p) else p for p in plugins or ())


def parse_params(items: list[str] | None) -> dict[str, str]:
    """``["t1=0.6", ...]`` -> ``{"t1": "0.6"}``; values are coerced later by the owner's declaration."""
    params: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise typer.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--param")
        params[name.strip()] = value.strip()
    return params


def read_ids(path: Path | None) -> list[str] | None:
    """Image ids from a text file, one per line (blank lines and ``#`` comments skipped)."""
    if path is None:
        return None
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise SeplError(f"{path}: cannot read the id list ({exc.strerror or exc})") from None
    ids = [line.split("#")[0].strip() for line in lines]
    ids = [i for i in ids if i]
    if not ids:
        raise SeplError(f"{path}: the id list is empty")
    return ids


def load_config(path: Path | None) -> dict[str, Any]:
    """A TOML preset as a dict (empty without ``--config``)."""
    if path is None:
        return {}
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except OSError as exc:
        raise SeplError(f"{path}: cannot read config ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SeplError(f"{path}: invalid TOML ({exc})") from None


def progress_bar(unit: str = "images") -> Progress:
    """A rich progress bar with count, rate and ETA (hidden when stderr is not a terminal in CI)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        disable=bool(os.environ.get("SEPL_TREE_NO_PROGRESS")),
    )
