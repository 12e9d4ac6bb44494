"""``sepl-tree compare`` (strategies side by side, per failure subset) and ``sepl-tree tree``
(draw one image's containment tree)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sepl_tree.cli_common import (
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
    parse_params,
    progress_bar,
    read_ids,
    run_guarded,
)
from sepl_tree import subsets as subsets_module
from sepl_tree.compare import CompareConfig, CompareJob, read_image, run_compare, strip_panels
from sepl_tree.errors import SeplError
from sepl_tree.evaluate import class_names_for
from sepl_tree.files import atomic_write_bytes
from sepl_tree.pipeline import RunConfig, check_inputs, route_params
from sepl_tree.plugins import UnknownName
from sepl_tree.subsets import SUBSETS, subset_names

__all__ = ["register_commands"]

SubsetOpt = Annotated[
    list[str] | None,
    typer.Option("--subset", help=f"Report this subset (repeatable; default: all of {', '.join(SUBSETS)}).",
                 show_default=False),
]
ImagesOpt = Annotated[
    Path | None,
    typer.Option("--images", "--image", help="Folder of the RGB images (<id>.jpg/.png), for pictures.", show_default=False),
]


def _fmt(value: float | None, delta: float | None = None) -> str:
    if value is None:
        return "n/a"
    if delta is None:
        return f"{value:.2f}"
    colour = "green" if delta > 0 else "red" if delta < 0 else "white"
    return f"{value:.2f} [{colour}]({delta:+.2f})[/{colour}]"


def print_compare(summary: dict[str, Any], strategies: list[str]) -> None:
    """The terminal table: per subset and metric, the input and each strategy (delta vs input)."""
    table = Table(title="sepl-tree compare (dataset-level, %)")
    for column in ("subset", "images", "metric", "input", *strategies):
        table.add_column(column, justify="left" if column in ("subset", "metric") else "right")
    for subset, entry in summary.items():
        for n, metric in enumerate(("miou", "precision", "recall")):
            cells = [_fmt(entry["strategies"][s][metric], entry["strategies"][s]["delta"][metric]) for s in strategies]
            table.add_row(subset if n == 0 else "", str(entry["images"]) if n == 0 else "", metric,
                          _fmt(entry["input"][metric]), *cells)
        table.add_section()
    console.print(table)


def _strategies(text: str, host: Any) -> list[str]:
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


def compare_command(
    strategies: Annotated[str, typer.Option("--strategies", "-s", help="Comma-separated strategies, e.g. threshold,official,tree-smallest-cover.")],
    pseudo_labels: Annotated[Path, typer.Option("--pseudo-labels", help="Folder of the baseline's pseudo-labels (or CAMs).")],
    masks: Annotated[Path, typer.Option("--masks", help="Folder of SAM masks (amg.py layouts: <id>.json or <id>/).")],
    gt: Annotated[Path, typer.Option("--gt", help="Folder of ground-truth label PNGs (255 = ignore).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: OUT/<strategy>/<id>.png, compare.json/csv, report.md, figures/.")],
    subset: SubsetOpt = None,
    param: ParamOpt = None,
    reader: Annotated[str, typer.Option("--reader", "-r", help="Pseudo-label reader.")] = "png",
    labels: Annotated[Path | None, typer.Option("--labels", help="Image-level labels, for CAM readers.", show_default=False)] = None,
    num_classes: NumClassesOpt = 21,
    ids: IdsOpt = None,
    workers: WorkersOpt = 1,
    executor: ExecutorOpt = "process",
    ray_address: RayAddressOpt = None,
    images: ImagesOpt = None,
    strips: Annotated[int, typer.Option("--strips", min=0, help="Image strips in report.md (most disagreement first).")] = 6,
    missing_masks: Annotated[str, typer.Option("--missing-masks", help="An id without masks: 'error', or 'keep' its pseudo-label.")] = "error",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Recompute outputs that already exist.")] = False,
    plugin: PluginOpt = None,
) -> None:
    """Run several strategies on the same images and score them per failure subset.

    --param NAME=VALUE goes to every compared strategy that declares NAME (or to the reader);
    --param STRATEGY:NAME=VALUE to one strategy only, --param reader:NAME=VALUE to the reader.
    """

    def body() -> None:
        from sepl_tree.report import image_strip, write_report

        options = executor_options(executor, ray_address)
        host = get_host(plugin)
        names = _strategies(strategies, host)
        chosen = _subsets(subset)
        for folder, what in ((pseudo_labels, "pseudo-label"), (masks, "mask"), (gt, "ground-truth")):
            if not folder.is_dir():
                raise SeplError(f"{folder}: {what} folder not found")
        rdr = host.reader(reader)
        per_strategy, to_reader = route_params(parse_params(param), {n: host.strategy(n) for n in names}, rdr)
        # Absolute paths: workers may run elsewhere (a Ray cluster) or in another directory.
        run_cfg = RunConfig(pseudo_labels.resolve(), masks.resolve(), out.resolve(), reader=reader,
                            reader_params=to_reader, num_classes=num_classes, plugins=absolute_plugin_paths(plugin),
                            labels=labels and labels.resolve(), missing_masks=missing_masks, overwrite=overwrite)
        config = CompareConfig(run_cfg, gt.resolve(), tuple(names), per_strategy, chosen)
        selectors, _, reader_params = CompareJob(config).resolve(host)  # parameter errors before any work
        id_list = read_ids(ids) or rdr.ids(pseudo_labels)
        if not id_list:
            raise SeplError(f"{pseudo_labels}: no pseudo-labels found for reader {reader!r}")
        check_inputs(run_cfg, id_list)
        t0 = time.perf_counter()
        computed = 0
        with progress_bar() as bar:
            task = bar.add_task("compare", total=len(id_list), rate="")

            def on_image(result: Any) -> None:
                nonlocal computed
                computed += len(result.computed)
                done = bar.tasks[0].completed + 1
                bar.update(task, advance=1, rate=f"{done / max(time.perf_counter() - t0, 1e-9):.1f} img/s")

            totals = run_compare(config, id_list, workers=workers, on_image=on_image, executor=executor, **options)
        class_names = class_names_for(num_classes)
        summary = totals.summary(class_names)
        print_compare(summary, names)
        if totals.synthetic_masks:
            err_console.print(f"[yellow]SYNTHETIC masks[/yellow] in {totals.synthetic_masks} of {len(id_list)} images "
                              "(made from GT by `sepl-tree synth`, not by SAM)")
        strip_ids = totals.most_disagreeing(strips)
        strip_bytes = {i: image_strip(strip_panels(config, i, images, host), title=i) for i in strip_ids}
        doc = {
            "strategies": names,
            "params": {n: s.params for n, s in selectors.items()},
            "reader": reader,
            "reader_params": reader_params,
            "num_classes": num_classes,
            "inputs": {"pseudo_labels": str(pseudo_labels), "masks": str(masks), "gt": str(gt),
                       "images": None if images is None else str(images), "plugins": list(plugin or ())},
            "subsets": list(chosen),
            "thresholds": {name: getattr(subsets_module, name) for name in
                           ("MIN_REGION_FRACTION", "PSEUDO_MIN_RECALL", "SAM_MATCH_IOU", "MERGE_MIN_SHARE",
                            "ENVELOPE_MAX_INSIDE", "ENVELOPE_MIN_BACKGROUND", "NESTED_MIN_DEPTH")},
            "counts": {"images": len(id_list), "synthetic_masks": totals.synthetic_masks, "outputs_computed": computed,
                       "outputs_reused": len(id_list) * len(names) - computed},
            "seconds": round(time.perf_counter() - t0, 3),
            "results": summary,
            "images": {i: totals.details[i] for i in sorted(totals.details)},
        }
        meta = {"pseudo-labels": pseudo_labels, "masks": masks, "gt": gt, "reader": reader, "images": len(id_list),
                "strategies": ", ".join(names), "params": json.dumps(doc["params"], default=str),
                "synthetic": totals.synthetic_masks > 0}
        written = write_report(out, doc, totals.table(), names, strip_bytes, meta)
        console.print(f"report: {written['report.md']} (compare.json, compare.csv, figures/ in {out})")

    run_guarded(body)


def tree_command(
    masks: Annotated[Path, typer.Option("--masks", help="Folder of SAM masks (amg.py layouts).")],
    image_id: Annotated[str, typer.Option("--id", help="The image id.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The PNG to write.")],
    images: ImagesOpt = None,
    tau: Annotated[float, typer.Option("--tau", min=0.0, max=1.0, help="A parent holds this share of its child.")] = 0.9,
) -> None:
    """Draw one image's containment tree: each mask as a thumbnail, parents above children."""

    def body() -> None:
        from sepl_tree.masks import read_masks
        from sepl_tree.report import draw_tree
        from sepl_tree.tree import build_tree

        if not masks.is_dir():
            raise SeplError(f"{masks}: mask folder not found")
        maskset = read_masks(masks, image_id)
        image = None if images is None else read_image(images, image_id, maskset.shape)
        tree = build_tree(maskset, tau=tau)
        depth = max((d for _, d in tree.nodes(data="depth")), default=0)
        roots = sum(1 for n in tree.nodes if tree.in_degree(n) == 0)
        png = draw_tree(tree, maskset.masks, image, title=f"{image_id}: {len(maskset)} masks, {roots} roots, "
                                                          f"depth {depth}, tau={tau}")
        atomic_write_bytes(out, png)
        console.print(f"{image_id}: {len(maskset)} masks, {roots} roots, max depth {depth} -> {out}")

    run_guarded(body)


def register_commands(app: typer.Typer) -> None:
    """Add ``compare`` and ``tree`` to the ``sepl-tree`` app."""
    app.command("compare")(compare_command)
    app.command("tree")(tree_command)

