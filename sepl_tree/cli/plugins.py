"""``sepl-tree plugins``: every strategy, reader and SAM model type the loaded plugins register."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from sepl_tree.cli.common import PluginOpt, console, get_host, run_guarded
from sepl_tree.plugins import UnknownName

__all__ = ["plugins_command"]


def plugins_command(
    name: Annotated[str | None, typer.Argument(metavar="[NAME]", help="A strategy or reader: show its parameters "
                                                                      "with their types, ranges and help.",
                                               show_default=False)] = None,
    plugin: PluginOpt = None,
) -> None:
    """List every strategy and reader: name, origin, description and parameters (NAME: one of them, in full)."""

    def body() -> None:
        host = get_host(plugin)
        if name is not None:
            _describe(host, name)
            return
        for title, entries in (("Strategies", host.strategies), ("Readers", host.readers)):
            table = Table(title=title, show_lines=False)
            for column in ("name", "from", "description", "parameters (defaults)"):
                table.add_column(column, overflow="fold")
            seen = set()
            for entry in entries.values():
                if id(entry.item) in seen:  # a reader's aliases share one row
                    continue
                seen.add(id(entry.item))
                item = entry.item
                params = ", ".join(f"{p.name}={p.default!r}" + (f" in {p.range}" if p.range else "")
                                   for p in item.params.values()) or "-"
                table.add_row(", ".join(getattr(item, "names", [item.name])), entry.source, item.description, params)
            console.print(table)
        if host.sam_models:
            console.print("SAM model types: " + ", ".join(f"{n} ({e.source})" for n, e in host.sam_models.items()))

    run_guarded(body)


def _describe(host: Any, name: str) -> None:
    """One strategy's or reader's description and a table of its parameters."""
    found = [(kind, table[name]) for kind, table in (("strategy", host.strategies), ("reader", host.readers))
             if name in table]
    if not found:
        raise UnknownName("strategy or reader", name, [*host.strategies, *host.readers])
    for kind, entry in found:
        item = entry.item
        console.print(f"{kind} {name} ({entry.source}): {item.description}", highlight=False, soft_wrap=True)
        if not item.params:
            console.print("no parameters", highlight=False)
            continue
        table = Table(show_lines=False)
        for column in ("parameter", "type", "default", "range", "help"):
            table.add_column(column, overflow="fold")
        for p in item.params.values():
            kind = p.type.__name__ + (" | None" if p.default is None else "")
            table.add_row(p.name, kind, repr(p.default), str(p.range) if p.range else "-", p.help or "-")
        console.print(table)
