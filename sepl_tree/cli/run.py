"""``sepl-tree run``: enhance pseudo-labels with SAM masks (or run the synthetic demo)."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from sepl_tree.cli.common import (
    ConfigOpt,
    ConventionName,
    ConventionOpt,
    Executor,
    ExecutorOpt,
    IdsOpt,
    MissingMasks,
    MissingMasksOpt,
    ParamOpt,
    PluginOpt,
    RayAddressOpt,
    WorkersOpt,
    absolute_plugin_paths,
    config_class_names,
    config_tables,
    console,
    delta,
    err_console,
    execution_log,
    executor_options,
    fmt,
    get_host,
    image_progress,
    input_ids,
    inputs_changed,
    note_unscored,
    out_of_date,
    parse_params,
    print_scores,
    run_guarded,
    say_checking,
    say_convention,
    warn_if_labels_unused,
    warn_kept_without_masks,
)
from sepl_tree.errors import SeplError
from sepl_tree.evaluate import scores_to_json
from sepl_tree.files import atomic_write_bytes
from sepl_tree.inputs import InputConfig
from sepl_tree.metrics import CONVENTIONS, scores
from sepl_tree.outputs import check_apart, claim_folder, noting_a_stop, pending_ids
from sepl_tree.pipeline import FREE_SETTINGS, RunConfig, RunJob, run_images, run_manifest, run_settings
from sepl_tree.plugins import PluginHost, UnknownName
from sepl_tree.registry import coerce_params
from sepl_tree.selection import route_params

__all__ = ["run_command"]

#: The demo writes its inputs to DEMO_ROOT/inputs and its outputs to DEMO_ROOT/<strategy>.
DEMO_ROOT = Path("sepl-demo-output")


def _folders(pseudo_labels: Path | None, masks: Path | None, out: Path | None, gt: Path | None,
             num_classes: int, strategy: str) -> tuple[Path, Path, Path | None, Path, bool]:
    """``(pseudo_dir, masks_dir, gt_dir, out_dir, demo)``; the demo's inputs are written first."""
    demo = pseudo_labels is None and masks is None
    if (pseudo_labels is None) != (masks is None):
        raise SeplError("give both --pseudo-labels and --masks (or neither, for the synthetic demo)")
    out_dir = out or (DEMO_ROOT / strategy if demo else None)
    if out_dir is None:
        raise SeplError("--out is required with --pseudo-labels and --masks")
    if demo:
        from sepl_tree.demo import write_demo

        root = DEMO_ROOT / "inputs"
        write_demo(root, num_classes=num_classes)
        err_console.print(f"[yellow]SYNTHETIC DEMO[/yellow]: generated scenes, pseudo-labels and SAM-like masks "
                          f"under {root} (not real data; numbers say nothing about real images)")
        return root / "pseudo", root / "masks", gt or root / "gt", out_dir, True
    for folder, what in ((pseudo_labels, "pseudo-label"), (masks, "mask"), (gt, "ground-truth")):
        if folder is not None and not folder.is_dir():
            raise SeplError(f"{folder}: {what} folder not found")
    return pseudo_labels, masks, gt, out_dir, False


def _check_names(ctx: typer.Context, host: PluginHost, strategy: str, reader: str, config: Path | None,
                 tables: dict[str, Any]) -> None:
    """The strategy and reader looked up, and the ``[params]`` and ``[reader_params]`` tables of the
    ``--config`` file checked on their own, before the demo or any output is written: a bad one that
    came from the file is an error naming the file (the command line's ``--param`` are checked with
    them afterwards, by :func:`_config` and the job)."""
    for option, kind, name in (("strategy", "strategy", strategy), ("reader", "reader", reader)):
        try:
            getattr(host, kind)(name)
        except UnknownName as exc:
            source = ctx.get_parameter_source(option)  # (by name: typer 0.29 has its own copy of click)
            if config is None or getattr(source, "name", None) != "DEFAULT_MAP":
                raise
            raise UnknownName(exc.kind, exc.name, exc.valid, where=f"{config}: {option}: ") from None
    file_params, file_reader = tables.get("params", {}), tables.get("reader_params", {})
    if config is None or not (file_params or file_reader):
        return
    strat, rdr = host.strategy(strategy), host.reader(reader)
    per, to_reader = route_params(file_params, {strat.name: strat}, rdr, origin=f"{config}: [params]")
    for table, owner, declared, given in (("params", f"strategy {strat.name!r}", strat.params, per[strat.name]),
                                          ("params", f"reader {rdr.name!r}", rdr.params, to_reader),
                                          ("reader_params", f"reader {rdr.name!r}", rdr.params, file_reader)):
        try:
            coerce_params(owner, declared, given)
        except SeplError as exc:
            raise SeplError(f"{config}: [{table}] {exc}") from None


def _config(host: PluginHost, folders: tuple[Path, Path, Path | None, Path, bool], strategy: str, reader: str,
            given: dict[str, str], reader_given: dict[str, str], labels: Path | None, num_classes: int,
            missing_masks: str, overwrite: bool, plugin: list[str] | None) -> RunConfig:
    """The run's configuration, every path absolute (workers may run elsewhere, e.g. on Ray)."""
    pseudo_dir, masks_dir, gt_dir, out_dir, _ = folders
    strat, rdr = host.strategy(strategy), host.reader(reader)
    per_strategy, to_reader = route_params(given, {strat.name: strat}, rdr)
    to_reader = {**reader_given, **to_reader}
    inputs = InputConfig(pseudo_dir.resolve(), masks_dir.resolve(), gt_dir and gt_dir.resolve(), reader, to_reader,
                         num_classes, absolute_plugin_paths(plugin), labels and labels.resolve(), missing_masks)
    return RunConfig(inputs, out_dir.resolve(), strat.name, per_strategy[strat.name], overwrite)


def _execute(cfg: RunConfig, all_ids: list[str], todo: list[str], counts: dict[str, int], workers: int,
             executor: str, options: dict[str, Any]) -> tuple[np.ndarray | None, float]:
    """Run the ``todo`` ids (every id when scoring), keeping ``counts`` up to date as it goes (a
    stopped run records them); ``(summed confusion or None, seconds)``."""
    scoring = cfg.inputs.gt_dir is not None
    counts.update(images=len(all_ids), written=0, skipped_existing=len(all_ids) - len(todo), kept_without_masks=0,
                  made_again_inputs_changed=len(cfg.redo))
    k = cfg.inputs.num_classes
    confusion = np.zeros((2, k, k + 1), np.int64) if scoring else None
    t0 = time.perf_counter()
    ids = all_ids if scoring else todo
    with image_progress(cfg.strategy, len(ids)) as step:
        for result in run_images(cfg, ids, workers=workers, executor=executor, **options):
            counts["written"] += result.written
            counts["kept_without_masks"] += result.no_masks
            if confusion is not None:
                confusion += result.confusion
            step()  # every image (a resumed --gt run reads back and scores the ones it skips)
    return confusion, round(time.perf_counter() - t0, 3)


def _print_summary(strategy: str, counts: dict[str, int], checks: float, seconds: float, demo: bool) -> None:
    """The run's table: ``checks`` the seconds spent before the first image (listing, checking the
    inputs, finding what is done), ``seconds`` those of the images; images/s is written / ``seconds``."""
    table = Table(title=f"sepl-tree run: {strategy}" + (" (SYNTHETIC DEMO)" if demo else ""))
    for column in ("images", "written", "skipped (existing)", "no masks (kept)", "checks s", "seconds", "images/s"):
        table.add_column(column, justify="right")
    written = counts["written"]
    table.add_row(str(counts["images"]), str(written), str(counts["skipped_existing"]),
                  str(counts["kept_without_masks"]), f"{checks:.1f}", f"{seconds:.1f}",
                  f"{written / seconds:.1f}" if seconds and written else "-")
    console.print(table)


def _print_eval(cfg: RunConfig, confusion: np.ndarray, count: int, names: list[str]) -> dict[str, Any]:
    """Print input vs output scores; return the ``eval`` entry of ``run.json``."""
    average = CONVENTIONS[cfg.convention].average
    before, after = scores(confusion[0], average), scores(confusion[1], average)
    print_scores(f"input vs {cfg.strategy} ({count} images)", names, {"input": before, "output": after})
    console.print(f"mIoU {fmt(before.miou)} -> {fmt(after.miou)} ({delta(after.miou, before.miou)}), "
                  f"precision {fmt(before.mean_precision)} -> {fmt(after.mean_precision)} "
                  f"({delta(after.mean_precision, before.mean_precision)}), "
                  f"recall {fmt(before.mean_recall)} -> {fmt(after.mean_recall)} "
                  f"({delta(after.mean_recall, before.mean_recall)})")
    say_convention(cfg.convention)
    return {"gt": str(cfg.inputs.gt_dir), "convention": cfg.convention, "input": scores_to_json(before, names, count),
            "output": scores_to_json(after, names, count)}


def run_command(
    ctx: typer.Context,
    strategy: Annotated[str, typer.Option("--strategy", "-s", metavar="NAME", help="Selection strategy (see `sepl-tree plugins`).")] = "threshold",
    pseudo_labels: Annotated[Path | None, typer.Option("--pseudo-labels", metavar="DIR", help="Folder of the baseline's pseudo-labels (or CAMs).", show_default=False)] = None,
    masks: Annotated[Path | None, typer.Option("--masks", metavar="DIR", help="Folder of SAM masks (amg.py layouts: <id>.json or <id>/).", show_default=False)] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", metavar="DIR", help="Output folder for enhanced labels. [default: ./sepl-demo-output/STRATEGY for the demo]", show_default=False)] = None,
    param: ParamOpt = None,
    config: ConfigOpt = None,
    reader: Annotated[str, typer.Option("--reader", "-r", metavar="NAME", help="Pseudo-label reader (see `sepl-tree plugins`).")] = "png",
    labels: Annotated[Path | None, typer.Option("--labels", metavar="FILE", help="Image-level labels (cls_labels.npy, VOC Annotations/, COCO instances JSON) for CAM readers.", show_default=False)] = None,
    num_classes: Annotated[int, typer.Option("--num-classes", min=2, max=255, metavar="K", help="Classes K, background included (VOC 21, COCO 81).")] = 21,
    ids: IdsOpt = None,
    gt: Annotated[Path | None, typer.Option("--gt", metavar="DIR", help="Ground truth: score input and output side by side.", show_default=False)] = None,
    convention: ConventionOpt = ConventionName.default,
    workers: WorkersOpt = 1,
    executor: ExecutorOpt = Executor.process,
    ray_address: RayAddressOpt = None,
    missing_masks: MissingMasksOpt = MissingMasks.error,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the outputs already in --out (even ones made with other settings).")] = False,
    plugin: PluginOpt = None,
) -> None:
    """Enhance pseudo-labels with SAM masks. With no inputs, runs on a synthetic demo."""

    def body() -> None:
        t_begin = time.perf_counter()
        options = executor_options(executor.value, ray_address, workers)
        tables = config_tables(ctx)
        names = config_class_names(ctx, config, num_classes)  # before any work (the demo's data included)
        host = get_host(plugin)
        _check_names(ctx, host, strategy, reader, config, tables)
        if gt is None and convention.value != "default" and (pseudo_labels or masks):  # (the demo has its GT)
            raise SeplError(f"--convention {convention.value} says how the scores against --gt are taken; "
                            "give --gt DIR (or score a folder with `sepl-tree eval`)")
        folders = _folders(pseudo_labels, masks, out, gt, num_classes, strategy)
        given = {**tables.get("params", {}), **parse_params(param)}
        cfg = _config(host, folders, strategy, reader, given, tables.get("reader_params", {}), labels, num_classes,
                      missing_masks.value, overwrite, plugin)
        selector, inputs = RunJob(cfg).resolve(host)  # parameter errors before any work
        # --labels read once, here: the workers get them with the job
        cfg = dataclasses.replace(cfg, inputs=cfg.inputs.with_labels_read(inputs.context.image_labels),
                                  convention=convention.value)
        check_apart(folders[3], "--out", {"--pseudo-labels": folders[0], "--masks": folders[1], "--gt": folders[2],
                                          "--labels": labels})
        all_ids = input_ids(inputs, ids)
        if folders[2] is not None and ids is None:
            note_unscored(folders[2], all_ids, "a pseudo-label")
        say_checking(all_ids, f"inputs, and outputs already in {folders[3]}")
        inputs.check(all_ids)  # every mask and GT file there, before anything is written
        warn_if_labels_unused(inputs, all_ids, labels)
        settings = run_settings(selector, inputs)
        claim_folder(cfg.out_dir, "run.json", settings, overwrite, lambda d: d.glob("*.png"), free=FREE_SETTINGS)
        stale = out_of_date(inputs.input_stamps(all_ids), [folders[3]], overwrite,
                            inputs_changed("its pseudo-label or masks", labels))
        cfg = dataclasses.replace(cfg, redo=stale)
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        counts: dict[str, int] = {}
        with noting_a_stop(cfg.out_dir, "run.json", settings, lambda: {"counts": dict(counts)} if counts else {}):
            todo = pending_ids(all_ids, cfg.done, cfg.overwrite)
            checks = round(time.perf_counter() - t_begin, 3)
            confusion, seconds = _execute(cfg, all_ids, todo, counts, workers, executor.value, options)
        _print_summary(cfg.strategy, counts, checks, seconds, folders[4])
        warn_kept_without_masks(counts["kept_without_masks"], counts["written"])
        extra: dict[str, Any] = {"synthetic_demo": True} if folders[4] else {}
        extra["execution"] = execution_log(options)
        extra["checks_seconds"] = checks
        if confusion is not None:
            extra["eval"] = _print_eval(cfg, confusion, len(all_ids), names)
        manifest = run_manifest(settings, counts, started, seconds, extra)
        atomic_write_bytes(cfg.out_dir / "run.json", json.dumps(manifest, indent=2, default=str).encode())
        console.print(f"outputs in {folders[3]}/ (manifest: {folders[3] / 'run.json'})")

    run_guarded(body, resumes=True)
