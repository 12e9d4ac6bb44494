"""``sepl-tree plugins``: every strategy, reader and SAM model type the loaded plugins register."""

from __future__ import annotations

from rich.table import Table

from sepl_tree.cli.common import PluginOpt, console, get_host, run_guarded

__all__ = ["plugins_command"]


def plugins_command(plugin: PluginOpt = None) -> None:
    """List every strategy and reader: name, origin, description and parameters."""

    def body() -> None:
        host = get_host(plugin)
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
