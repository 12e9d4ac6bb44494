"""``sepl-tree compare``: strategies side by side on the same images, per failure subset."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from sepl_tree.bootstrap import BOOTSTRAP_MIN_IMAGES, change_text, drawn_subsets
from sepl_tree.cli.common import (
    ConventionName,
    ConventionOpt,
    DatasetConfigOpt,
    Executor,
    ExecutorOpt,
    IdsOpt,
    ImagesOpt,
    MissingMasks,
    MissingMasksOpt,
    NumClassesOpt,
    ParamOpt,
    PluginOpt,
    RayAddressOpt,
    WorkersOpt,
    absolute_plugin_paths,
    config_class_names,
    console,
    err_console,
    execution_log,
    executor_options,
    get_host,
    image_progress,
    input_ids,
    inputs_changed,
    note_unscored,
    out_of_date,
    parse_params,
    run_guarded,
    say_checking,
    say_convention,
    warn,
    warn_if_labels_unused,
    warn_kept_without_masks,
)
from sepl_tree.compare import (
    CompareConfig,
    CompareJob,
    claim_strategy_folders,
    compare_document,
    run_compare,
    strip_panels,
)
from sepl_tree.errors import SeplError
from sepl_tree.inputs import InputConfig
from sepl_tree.outputs import check_apart, noting_a_stop, write_status
from sepl_tree.plugins import PluginHost, UnknownName
from sepl_tree.selection import route_params
from sepl_tree.subsets import SUBSETS, subset_names

__all__ = ["compare_command"]

SubsetOpt = Annotated[list[str] | None, typer.Option(
    "--subset", metavar="NAME", show_default=False,
    help=f"Report this subset (repeatable; default: all of {', '.join(SUBSETS)}).")]


def _cell(value: float | None, change: float | None = None) -> str:
    if value is None:
        return "n/a"
    if change is None:
        return f"{value:.2f}"
    colour = "green" if change > 0 else "red" if change < 0 else "white"
    return f"{value:.2f} [{colour}]({change:+.2f})[/{colour}]"


def print_compare(summary: dict[str, Any], strategies: list[str]) -> None:
    """The terminal table: per subset and metric, the input and each strategy (delta vs input)."""
    table = Table(title="sepl-tree compare (dataset-level, %)")
    for column in ("subset", "images", "metric", "input", *strategies):
        table.add_column(column, justify="left" if column in ("subset", "metric") else "right")
    for subset, entry in summary.items():
        for n, metric in enumerate(("miou", "precision", "recall")):
            cells = [_cell(entry["strategies"][s][metric], entry["strategies"][s]["delta"][metric]) for s in strategies]
            table.add_row(subset if n == 0 else "", str(entry["images"]) if n == 0 else "", metric,
                          _cell(entry["input"][metric]), *cells)
        table.add_section()
    console.print(table)


def _coloured(change: dict[str, Any] | None) -> str:
    """A change and its interval, green or red when the whole interval lies on one side of 0."""
    text = escape(change_text(change))
    interval = None if change is None else change["interval"]
    colour = None if interval is None else "green" if interval[0] > 0 else "red" if interval[1] < 0 else None
    return text if colour is None else f"[{colour}]{text}[/{colour}]"


def print_intervals(summary: dict[str, Any], strategies: list[str]) -> None:
    """Each subset's mIoU changes with their bootstrap intervals (when drawn): against the
    input, and against the first strategy."""
    drawn, draws = drawn_subsets(summary)
    if not drawn:
        return
    if not draws:
        console.print(f"no mIoU change has an interval: every subset has fewer than {BOOTSTRAP_MIN_IMAGES} images")
        return
    some = next(iter(drawn.values()))  # (against and level are every subset's)
    first = some["against"]
    table = Table(title=f"mIoU change, {some['level']:.0%} interval over {draws} bootstrap draws of the images "
                        f"(none under {BOOTSTRAP_MIN_IMAGES} images)")
    several = len(strategies) > 1  # else no column against the first
    for column in ("subset", "strategy", "vs input", *([f"vs {first}"] if several else [])):
        table.add_column(column, justify="left" if column in ("subset", "strategy") else "right")
    for subset, boot in drawn.items():
        for n, name in enumerate(strategies):
            versus = ["" if name == first else _coloured(boot["against_first"][name])] if several else []
            table.add_row(subset if n == 0 else "", name, _coloured(boot["against_input"][name]), *versus)
        table.add_section()
    console.print(table)


def _strategies(text: str, host: PluginHost) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise SeplError("--strategies is empty; give a comma-separated list, e.g. threshold,official")
    if len(set(names)) != len(names):
        raise SeplError(f"--strategies lists a name twice: {text}")
    for name in names:
        host.strategy(name)  # UnknownName (exit 2) lists the valid names
    return names


def _subsets(given: list[str] | None) -> tuple[str, ...]:
    for name in given or []:
        if name not in SUBSETS:
            raise UnknownName("subset", name, SUBSETS)
    return subset_names(given)


def _run(config: CompareConfig, ids: list[str], made: dict[str, int], seen: list[int], workers: int, executor: str,
         options: dict[str, Any]):
    """Run the comparison with a progress bar, counting in ``made`` the outputs each strategy
    made and in ``seen[0]`` the images done (a stopped run records them): ``(totals, seconds)``."""
    t0 = time.perf_counter()
    with image_progress("compare", len(ids)) as step:

        def on_image(result: Any) -> None:
            for name in result.computed:
                made[name] += 1
            seen[0] += 1
            step()

        totals = run_compare(config, ids, workers=workers, on_image=on_image, executor=executor, **options)
    return totals, round(time.perf_counter() - t0, 3)


def _strip_panels(config: Any, image_id: str, images: Path | None, host: Any) -> list[tuple[str, Any]]:
    """An image's strip panels; an image missing from ``--images`` costs its photo panel and a
    warning, not the report (the strips are drawn after every image was compared)."""
    from sepl_tree.images import IMAGE_SUFFIXES, find_image

    if images is not None and find_image(images, image_id) is None:
        warn(f"{images}: no image for {image_id!r} (tried {', '.join(IMAGE_SUFFIXES)}): its strip has no photo")
        images = None
    return strip_panels(config, image_id, images, host)


def compare_command(
    ctx: typer.Context,
    strategies: Annotated[str, typer.Option("--strategies", "-s", metavar="NAME,NAME,...", help="Comma-separated strategies, e.g. threshold,official,tree-smallest-cover.")],
    pseudo_labels: Annotated[Path, typer.Option("--pseudo-labels", metavar="DIR", help="Folder of the baseline's pseudo-labels (or CAMs).")],
    masks: Annotated[Path, typer.Option("--masks", metavar="DIR", help="Folder of SAM masks (amg.py layouts: <id>.json or <id>/).")],
    gt: Annotated[Path, typer.Option("--gt", metavar="DIR", help="Folder of ground-truth label PNGs (255 = ignore).")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="Output folder: OUT/<strategy>/<id>.png, compare.json/csv, report.md, figures/.")],
    subset: SubsetOpt = None,
    param: ParamOpt = None,
    reader: Annotated[str, typer.Option("--reader", "-r", metavar="NAME", help="Pseudo-label reader.")] = "png",
    labels: Annotated[Path | None, typer.Option("--labels", metavar="FILE", help="Image-level labels, for CAM readers.", show_default=False)] = None,
    num_classes: NumClassesOpt = 21,
    ids: IdsOpt = None,
    workers: WorkersOpt = 1,
    executor: ExecutorOpt = Executor.process,
    ray_address: RayAddressOpt = None,
    images: ImagesOpt = None,
    strips: Annotated[int, typer.Option("--strips", min=0, metavar="N", help="Image strips in report.md (most disagreement first).")] = 6,
    missing_masks: MissingMasksOpt = MissingMasks.error,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Recompute outputs that already exist.")] = False,
    bootstrap: Annotated[int, typer.Option("--bootstrap", min=0, metavar="N", help="Draws of the images for the 95 % intervals of the mIoU changes (0: none).")] = 1000,
    plugin: PluginOpt = None,
    preset: DatasetConfigOpt = None,
    convention: ConventionOpt = ConventionName.default,
) -> None:
    """Run several strategies on the same images and score them per failure subset.

    --param NAME=VALUE goes to every compared strategy that declares NAME (or to the reader);
    --param STRATEGY:NAME=VALUE to one strategy only, --param reader:NAME=VALUE to the reader.
    """

    def body() -> None:
        from sepl_tree.report import image_strip, write_report

        options = executor_options(executor.value, ray_address, workers)
        class_names = config_class_names(ctx, preset, num_classes)
        host = get_host(plugin)
        names, chosen = _strategies(strategies, host), _subsets(subset)
        for folder, what in ((pseudo_labels, "pseudo-label"), (masks, "mask"), (gt, "ground-truth")):
            if not folder.is_dir():
                raise SeplError(f"{folder}: {what} folder not found")
        rdr = host.reader(reader)
        per_strategy, to_reader = route_params(parse_params(param), {n: host.strategy(n) for n in names}, rdr)
        # Absolute paths: workers may run elsewhere (a Ray cluster) or in another directory.
        inputs = InputConfig(pseudo_labels.resolve(), masks.resolve(), gt.resolve(), reader, to_reader, num_classes,
                             absolute_plugin_paths(plugin), labels and labels.resolve(), missing_masks.value)
        config = CompareConfig(inputs, out.resolve(), tuple(names), per_strategy, chosen, overwrite, bootstrap=bootstrap,
                               convention=convention.value)
        selectors, reader_in = CompareJob(config).resolve(host)  # parameter errors before any work
        # --labels read once, here: the workers and the strips get them with the config
        config = dataclasses.replace(config, inputs=config.inputs.with_labels_read(reader_in.context.image_labels))
        id_list = input_ids(reader_in, ids, pseudo_labels)
        if ids is None:
            note_unscored(gt, id_list, "a pseudo-label")
        check_apart(out, "--out", {"--pseudo-labels": pseudo_labels, "--masks": masks, "--gt": gt, "--images": images,
                                   "--labels": labels})
        say_checking(id_list, f"inputs, and outputs already in {out}")
        reader_in.check(id_list)  # every mask and GT file there, before anything is written
        warn_if_labels_unused(reader_in, id_list, labels)
        if images is not None and not images.is_dir():  # (read only for the strips, after every strategy ran)
            raise SeplError(f"{images}: image folder not found (--images)")
        settings = claim_strategy_folders(config, selectors, reader_in)
        stale = out_of_date(reader_in.input_stamps(id_list), [out / n for n in names], overwrite,
                            inputs_changed("its pseudo-label or masks", labels), example=str, what="image(s)' outputs")
        config = dataclasses.replace(config, redo=stale)
        made, seen = dict.fromkeys(names, 0), [0]

        def counts(name: str) -> dict[str, int]:  # (stopped: of the images done so far)
            return {"images": len(id_list), "written": made[name], "skipped_existing": seen[0] - made[name]}

        with contextlib.ExitStack() as stack:  # each strategy's run.json says stopped, why, and what it wrote
            for name in names:
                stack.enter_context(noting_a_stop(config.out_dir / name, "run.json", settings[name],
                                                  lambda name=name: {"counts": counts(name)}))
            totals, seconds = _run(config, id_list, made, seen, workers, executor.value, options)
        for name in names:
            write_status(config.out_dir / name, "run.json", settings[name], "finished", counts=counts(name))
        computed = sum(made.values())
        summary = totals.summary(class_names)
        print_compare(summary, names)
        print_intervals(summary, names)
        say_convention(convention.value)
        warn_kept_without_masks(totals.kept_without_masks, len(id_list))
        if totals.synthetic_masks:
            err_console.print(f"[yellow]SYNTHETIC masks[/yellow] in {totals.synthetic_masks} of {len(id_list)} images "
                              "(made from GT by `sepl-tree synth`, not by SAM)")
        strip_bytes = {i: image_strip(_strip_panels(config, i, images, host), title=i)
                       for i in totals.most_disagreeing(strips)}
        typed = {"pseudo_labels": str(pseudo_labels), "masks": str(masks), "gt": str(gt), "plugins": list(plugin or ())}
        doc = compare_document(config, selectors, reader_in.reader_params, totals, summary, computed, seconds,
                               images, typed, class_names)
        doc["execution"] = execution_log(options)
        meta = {"pseudo-labels": pseudo_labels, "masks": masks, "gt": gt, "reader": reader, "images": len(id_list),
                "strategies": ", ".join(names), "params": json.dumps(doc["params"], default=str),
                "convention": convention.value,
                "synthetic": totals.synthetic_masks > 0}
        report = write_report(out, doc, totals.table(), names, strip_bytes, meta)
        console.print(f"report: {report['report.md']} (compare.json, compare.csv, figures/ in {out})")

    run_guarded(body, resumes=True)
