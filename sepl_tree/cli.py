"""The ``sepl-tree`` command line: parse, call the library, print.

Commands from other modules are added by their ``register_commands(app)`` (see
:data:`COMMAND_MODULES`).
"""

from __future__ import annotations

import importlib
import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from sepl_tree import __version__
from sepl_tree.cli_common import (
    ConfigOpt,
    ExecutorOpt,
    IdsOpt,
    NumClassesOpt,
    ParamOpt,
    PluginOpt,
    RayAddressOpt,
    WorkersOpt,
    absolute_plugin_paths,
    console,
    err_console,
    executor_options,
    get_host,
    load_config,
    parse_params,
    progress_bar,
    read_ids,
    run_guarded,
)
from sepl_tree.errors import SeplError
from sepl_tree.evaluate import class_names_for, evaluate_folders, scores_to_json
from sepl_tree.executors import execute
from sepl_tree.files import atomic_write_bytes
from sepl_tree.metrics import Scores, scores
from sepl_tree.pipeline import EvalJob, RunConfig, RunJob, check_inputs, pending_ids, route_params, run_images
from sepl_tree.registry import Param

__all__ = ["COMMAND_MODULES", "app", "main"]

app = typer.Typer(
    name="sepl-tree",
    help="SAM-enhanced pseudo-labels (SEPL) for WSSS, with containment-tree strategies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Modules that add their own commands through ``register_commands(app)``.
COMMAND_MODULES: tuple[str, ...] = (
    "sepl_tree.cli_readers",
    "sepl_tree.cli_masks",
    "sepl_tree.cli_tree",
    "sepl_tree.cli_compare",
)

DEMO_OUT = Path("sepl-demo-output")


def _fmt(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.2f}"


def _delta(after: float, before: float) -> str:
    if np.isnan(after) or np.isnan(before):
        return "n/a"
    d = after - before
    colour = "green" if d > 0 else "red" if d < 0 else "white"
    return f"[{colour}]{d:+.2f}[/{colour}]"


def _params_table(title: str, params: dict[str, Param]) -> str:
    return ", ".join(f"{p.name}={p.default!r}" for p in params.values()) or "-"


# ------------------------------------------------------------------------------------- plugins


@app.command("plugins")
def plugins_command(plugin: PluginOpt = None) -> None:
    """List every strategy and reader: name, origin, description and parameters."""

    def body() -> None:
        host = get_host(plugin)
        for title, table_items in (("Strategies", host.strategies), ("Readers", host.readers)):
            table = Table(title=title, show_lines=False)
            for column in ("name", "from", "description", "parameters (defaults)"):
                table.add_column(column, overflow="fold")
            seen = set()
            for entry in table_items.values():
                if id(entry.item) in seen:
                    continue
                seen.add(id(entry.item))
                item = entry.item
                name = ", ".join(getattr(item, "names", [item.name]))
                table.add_row(name, entry.source, item.description, _params_table(title, dict(item.params)))
            console.print(table)
        if host.sam_models:
            console.print("SAM model types: " + ", ".join(f"{n} ({e.source})" for n, e in host.sam_models.items()))

    run_guarded(body)


# ---------------------------------------------------------------------------------------- eval


def print_scores(title: str, names: list[str], columns: dict[str, Scores]) -> None:
    """A per-class IoU table with one column per result, means at the bottom."""
    table = Table(title=title)
    table.add_column("class")
    for label in columns:
        table.add_column(f"IoU {label}", justify="right")
    for k, name in enumerate(names):
        table.add_row(name, *(_fmt(s.iou[k]) for s in columns.values()))
    table.add_section()
    for metric, attr in (("mIoU", "miou"), ("precision", "mean_precision"), ("recall", "mean_recall")):
        table.add_row(f"[bold]{metric}[/bold]", *(f"[bold]{_fmt(getattr(s, attr))}[/bold]" for s in columns.values()))
    console.print(table)


def _eval_ids(pred: Path, ids_file: Path | None) -> list[str]:
    ids = read_ids(ids_file)
    if ids is None:
        if not pred.is_dir():
            raise SeplError(f"{pred}: prediction folder not found")
        ids = sorted(p.stem for p in pred.glob("*.png"))
        if not ids:
            raise SeplError(f"{pred}: no .png label maps to evaluate")
    return ids


def _evaluate_with_bar(description: str, pred: Any, gt: Path, ids: list[str], num_classes: int) -> tuple[Scores, int]:
    with progress_bar() as bar:
        task = bar.add_task(description, total=len(ids), rate="")
        cm, count = evaluate_folders(pred, gt, ids, num_classes, on_image=lambda _: bar.advance(task))
    return scores(cm), count


def _evaluate_run(cfg: RunConfig, gt_dir: Path, ids: list[str], workers: int, executor: str,
                  options: dict[str, Any]) -> tuple[Scores, Scores, int]:
    """Input and output against the ground truth, with the run's executor and workers."""
    if not ids:
        raise SeplError("no images to evaluate")
    cms = np.zeros((2, cfg.num_classes, cfg.num_classes + 1), np.int64)
    with progress_bar() as bar:
        task = bar.add_task("evaluating input and output", total=len(ids), rate="")
        for before, after in execute(EvalJob(cfg, gt_dir), ids, executor=executor, workers=workers, **options):
            cms[0] += before
            cms[1] += after
            bar.advance(task)
    return scores(cms[0]), scores(cms[1]), len(ids)


@app.command("eval")
def eval_command(
    pred: Annotated[Path, typer.Option("--pred", help="Folder of predicted label PNGs (<id>.png).")],
    gt: Annotated[Path, typer.Option("--gt", help="Folder of ground-truth label PNGs (255 = ignore).")],
    num_classes: NumClassesOpt = 21,
    ids: IdsOpt = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the scores to this JSON file.")] = None,
) -> None:
    """mIoU, precision and recall of label maps against ground truth (published conventions)."""

    def body() -> None:
        if not gt.is_dir():
            raise SeplError(f"{gt}: ground-truth folder not found")
        id_list = _eval_ids(pred, ids)
        s, count = _evaluate_with_bar("evaluating", pred, gt, id_list, num_classes)
        names = class_names_for(num_classes)
        print_scores(f"{pred} ({count} images)", names, {"": s})
        if json_out is not None:
            atomic_write_bytes(json_out, json.dumps(scores_to_json(s, names, count), indent=2).encode())
            console.print(f"scores written to {json_out}")

    run_guarded(body)


# ----------------------------------------------------------------------------------------- run


def _resolve_ids(config: RunConfig, reader_ids: list[str], ids_file: Path | None) -> list[str]:
    ids = read_ids(ids_file)
    if ids is not None:
        return ids
    if not reader_ids:
        from sepl_tree.readers.sniff import suggest_reader

        hint = suggest_reader(config.pseudo_dir)
        tail = f"; the files there look like --reader {hint}" if hint and hint != config.reader else ""
        raise SeplError(f"{config.pseudo_dir}: no pseudo-labels found for reader {config.reader!r}{tail}")
    return reader_ids


def _manifest(config: RunConfig, params: dict[str, Any], reader_params: dict[str, Any], counts: dict[str, int],
              started: str, seconds: float, extra: dict[str, Any]) -> dict[str, Any]:
    import torch  # only for its version string

    return {
        "strategy": config.strategy,
        "params": params,
        "reader": config.reader,
        "reader_params": reader_params,
        "num_classes": config.num_classes,
        "inputs": {
            "pseudo_labels": str(config.pseudo_dir),
            "masks": str(config.masks_dir),
            "labels": None if config.labels is None else str(config.labels),
            "plugins": list(config.plugins),
        },
        "counts": counts,
        "versions": {"sepl_tree": __version__, "numpy": np.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
        "started": started,
        "seconds": seconds,
        **extra,
    }


@app.command("run")
def run_command(
    strategy: Annotated[str | None, typer.Option("--strategy", "-s", help="Selection strategy (see `sepl-tree plugins`). [default: threshold]", show_default=False)] = None,
    pseudo_labels: Annotated[Path | None, typer.Option("--pseudo-labels", help="Folder of the baseline's pseudo-labels (or CAMs).", show_default=False)] = None,
    masks: Annotated[Path | None, typer.Option("--masks", help="Folder of SAM masks (amg.py layouts: <id>.json or <id>/).", show_default=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder for enhanced labels. [default: ./sepl-demo-output for the demo]", show_default=False)] = None,
    param: ParamOpt = None,
    config: ConfigOpt = None,
    reader: Annotated[str | None, typer.Option("--reader", "-r", help="Pseudo-label reader. [default: png]", show_default=False)] = None,
    labels: Annotated[Path | None, typer.Option("--labels", help="Image-level labels (cls_labels.npy, VOC Annotations/, COCO instances JSON) for CAM readers.", show_default=False)] = None,
    num_classes: Annotated[int | None, typer.Option("--num-classes", min=2, max=255, help="Classes K, background included. [default: 21]", show_default=False)] = None,
    ids: IdsOpt = None,
    gt: Annotated[Path | None, typer.Option("--gt", help="Ground truth: evaluate input and output side by side.", show_default=False)] = None,
    workers: WorkersOpt = 1,
    executor: ExecutorOpt = "process",
    ray_address: RayAddressOpt = None,
    missing_masks: Annotated[str, typer.Option("--missing-masks", help="An id without masks: 'error', or 'keep' its pseudo-label.")] = "error",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Redo images whose output exists.")] = False,
    plugin: PluginOpt = None,
) -> None:
    """Enhance pseudo-labels with SAM masks. With no inputs, runs on a synthetic demo."""

    def body() -> None:
        options = executor_options(executor, ray_address)
        preset = load_config(config)
        demo = pseudo_labels is None and masks is None
        if (pseudo_labels is None) != (masks is None):
            raise SeplError("give both --pseudo-labels and --masks (or neither, for the synthetic demo)")
        k = num_classes or int(preset.get("num_classes", 21))
        out_dir = out or (DEMO_OUT if demo else None)
        if out_dir is None:
            raise SeplError("--out is required with --pseudo-labels and --masks")
        gt_dir = gt
        if demo:
            from sepl_tree.demo import write_demo

            root = out_dir / "demo-inputs"
            write_demo(root, num_classes=k)
            err_console.print(f"[yellow]SYNTHETIC DEMO[/yellow]: generated scenes, pseudo-labels and SAM-like masks "
                              f"under {root} (not real data; numbers say nothing about real images)")
            pseudo_dir, masks_dir, gt_dir = root / "pseudo", root / "masks", gt or root / "gt"
        else:
            pseudo_dir, masks_dir = pseudo_labels, masks
            for folder, what in ((pseudo_dir, "pseudo-label"), (masks_dir, "mask")):
                if not folder.is_dir():
                    raise SeplError(f"{folder}: {what} folder not found")
        given = {**{k2: v for k2, v in preset.get("params", {}).items()}, **parse_params(param)}
        host = get_host(plugin)
        strategy_name = strategy or preset.get("strategy", "threshold")
        reader_name = reader or preset.get("reader", "png")
        strat, rdr = host.strategy(strategy_name), host.reader(reader_name)
        per_strategy, to_reader = route_params(given, {strat.name: strat}, rdr)
        to_strategy = per_strategy[strat.name]
        to_reader = {**preset.get("reader_params", {}), **to_reader}
        # Absolute paths: workers may run elsewhere (a Ray cluster) or in another directory.
        cfg = RunConfig(pseudo_dir.resolve(), masks_dir.resolve(), out_dir.resolve(), strat.name, to_strategy,
                        reader_name, to_reader, k, absolute_plugin_paths(plugin), labels and labels.resolve(),
                        missing_masks, overwrite)
        selector, _, reader_params = RunJob(cfg).resolve(host)
        all_ids = _resolve_ids(cfg, rdr.ids(pseudo_dir), ids)
        check_inputs(cfg, all_ids)
        todo = pending_ids(cfg, all_ids)
        started, t0 = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.perf_counter()
        written = no_masks = 0
        with progress_bar() as bar:
            task = bar.add_task(f"{strat.name}", total=len(todo), rate="")
            for result in run_images(cfg, todo, workers=workers, executor=executor, **options):
                written += 1
                no_masks += result.no_masks
                rate = written / max(time.perf_counter() - t0, 1e-9)
                bar.update(task, advance=1, rate=f"{rate:.1f} img/s")
        seconds = round(time.perf_counter() - t0, 3)
        counts = {"images": len(all_ids), "written": written, "skipped_existing": len(all_ids) - len(todo),
                  "kept_without_masks": no_masks}
        summary = Table(title=f"sepl-tree run: {strat.name}" + (" (SYNTHETIC DEMO)" if demo else ""))
        for column in ("images", "written", "skipped (existing)", "no masks (kept)", "seconds", "images/s"):
            summary.add_column(column, justify="right")
        summary.add_row(str(len(all_ids)), str(written), str(counts["skipped_existing"]), str(no_masks),
                        f"{seconds:.1f}", f"{written / seconds:.1f}" if seconds and written else "-")
        console.print(summary)
        extra: dict[str, Any] = {}
        if gt_dir is not None:
            if not gt_dir.is_dir():
                raise SeplError(f"{gt_dir}: ground-truth folder not found")
            before, after, count = _evaluate_run(cfg, gt_dir.resolve(), all_ids, workers, executor, options)
            names = class_names_for(k, preset.get("class_names"))
            print_scores(f"input vs {strat.name} ({count} images)", names, {"input": before, "output": after})
            console.print(f"mIoU {_fmt(before.miou)} -> {_fmt(after.miou)} ({_delta(after.miou, before.miou)}), "
                          f"precision {_fmt(before.mean_precision)} -> {_fmt(after.mean_precision)} "
                          f"({_delta(after.mean_precision, before.mean_precision)}), "
                          f"recall {_fmt(before.mean_recall)} -> {_fmt(after.mean_recall)} "
                          f"({_delta(after.mean_recall, before.mean_recall)})")
            extra["eval"] = {"gt": str(gt_dir), "input": scores_to_json(before, names, count),
                             "output": scores_to_json(after, names, count)}
        manifest = _manifest(cfg, selector.params, reader_params, counts, started, seconds, extra)
        if demo:
            manifest["synthetic_demo"] = True
        atomic_write_bytes(out_dir / "run.json", json.dumps(manifest, indent=2, default=str).encode())
        console.print(f"outputs in {out_dir}/ (manifest: {out_dir / 'run.json'})")

    run_guarded(body)


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register_commands(app)


def main() -> None:
    """Console-script entry point."""
    app()
