"""The ``sepl-tree`` command line: one small module per command (parse, call the library, print).

Importing it loads the command modules and what they import at the top (typer, rich, numpy and
the library's light modules), never torch, networkx or matplotlib: commands import those where
they need them.
"""

from __future__ import annotations

import importlib

import typer

__all__ = ["COMMANDS", "app", "main"]

app = typer.Typer(
    name="sepl-tree",
    help="SAM-enhanced pseudo-labels (SEPL) for WSSS, with containment-tree strategies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: no <bool>/<str> type placeholders
)

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

for _name, _target in COMMANDS.items():
    _module, _function = _target.split(":")
    app.command(_name)(getattr(importlib.import_module(_module), _function))


def main() -> None:
    """Console-script entry point."""
    app()
