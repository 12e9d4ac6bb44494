"""The ``sepl-tree`` command line: one small module per command (parse, call the library, print).

``main()`` imports only the module of the command it is asked to run (``sepl-tree run`` never
loads what ``compare``, ``synth`` or ``masks`` import); ``--help`` and anything that is not a
command name get every command. :data:`app`, the whole command line, is built on first use.
No command module imports torch, networkx or matplotlib at the top: commands import those where
they need them.

Nothing in sepl-tree calls numpy's BLAS, yet numpy's OpenBLAS starts a thread per core when
numpy is imported (about 50 ms of CPU on the development machine, in the command and in every
pool worker). So ``main()`` asks OpenBLAS for one thread, unless the user chose a number
(``OPENBLAS_NUM_THREADS``, ``GOTO_NUM_THREADS`` or ``OMP_NUM_THREADS`` set) or the command is
``masks`` (torch).
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable
from typing import Annotated

import typer

__all__ = ["BLAS_THREAD_VARIABLES", "COMMANDS", "app", "build_app", "main", "one_blas_thread"]

#: Command name -> ``module:function``, in the order ``--help`` lists them.
COMMANDS: dict[str, str] = {
    "run": "sepl_tree.cli.run:run_command",
    "eval": "sepl_tree.cli.eval:eval_command",
    "plugins": "sepl_tree.cli.plugins:plugins_command",
    "compare": "sepl_tree.cli.compare:compare_command",
    "tree": "sepl_tree.cli.tree:tree_command",
    "synth": "sepl_tree.cli.synth:synth_command",
    "convert": "sepl_tree.cli.convert:convert_command",
    "coco-gt": "sepl_tree.cli.coco_gt:coco_gt_command",
    "masks": "sepl_tree.cli.masks:masks_command",
}


def _print_version(asked: bool) -> None:
    if asked:
        from sepl_tree import __version__

        typer.echo(f"sepl-tree {__version__}")
        raise typer.Exit()


def _group(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    # A callback makes typer keep ``sepl-tree COMMAND`` even when only one command is registered.
    pass


def build_app(names: Iterable[str] | None = None) -> typer.Typer:
    """The command line with the commands ``names`` (default: all), each module imported here."""
    cli = typer.Typer(
        name="sepl-tree",
        help="SAM-enhanced pseudo-labels (SEPL) for WSSS, with containment-tree strategies.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,  # click's plain help: no <bool>/<str> type placeholders
    )
    cli.callback()(_group)
    for name in COMMANDS if names is None else names:
        module, function = COMMANDS[name].split(":")
        cli.command(name)(getattr(importlib.import_module(module), function))
    return cli


def __getattr__(name: str) -> typer.Typer:
    if name == "app":  # built once, on first use (tests, typer.testing.CliRunner)
        globals()["app"] = built = build_app()
        return built
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Variables OpenBLAS reads for its thread count: if the user set one, it is left alone.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")
#: Commands that may run BLAS-heavy code through a library of their own (SAM with torch).
BLAS_COMMANDS = frozenset({"masks"})


def one_blas_thread(command: str | None) -> bool:
    """Ask numpy's OpenBLAS for one thread (before numpy is imported); return whether it was asked."""
    if command in BLAS_COMMANDS or "numpy" in sys.modules or any(v in os.environ for v in BLAS_THREAD_VARIABLES):
        return False
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    return True


def main() -> None:
    """Console-script entry point."""
    command = sys.argv[1] if len(sys.argv) > 1 else None
    one_blas_thread(command)
    build_app([command] if command in COMMANDS else None)()
