"""``sepl-tree convert`` (any reader's output as canonical label PNGs) and ``sepl-tree coco-gt``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.table import Table

from sepl_tree.classes import default_class_names
from sepl_tree.cli_common import (
    IdsOpt,
    NumClassesOpt,
    ParamOpt,
    PluginOpt,
    WorkersOpt,
    console,
    get_host,
    parse_params,
    progress_bar,
    read_ids,
    run_guarded,
)
from sepl_tree.errors import SeplError
from sepl_tree.executors import execute
from sepl_tree.files import write_label_png
from sepl_tree.label_maps import IGNORE
from sepl_tree.convert import ConvertJob
from sepl_tree.readers.sniff import FORMATS, suggest_reader
from sepl_tree.registry import coerce_params

__all__ = ["register_commands"]

OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Rewrite outputs that already exist.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder of label PNGs.", show_default=False)]


def _describe(reader_name: str) -> str:
    for what, suggestion, _ in FORMATS.values():
        if suggestion == reader_name:
            return what
    return f"{reader_name} files"


def _pending(out: Path, ids: list[str], overwrite: bool) -> list[str]:
    return list(ids) if overwrite else [i for i in ids if not (out / f"{i}.png").is_file()]


def _class_table(title: str, counts: np.ndarray, images: np.ndarray, num_classes: int) -> Table:
    names = default_class_names(num_classes)
    table = Table(title=title)
    for column in ("class", "images", "pixels %"):
        table.add_column(column, justify="left" if column == "class" else "right")
    total = max(int(counts.sum()), 1)
    rows = [(names[k], images[k], counts[k]) for k in range(num_classes) if images[k]]
    if images[IGNORE]:
        rows.append(("ignore (255)", images[IGNORE], counts[IGNORE]))
    for name, n_images, pixels in rows:
        table.add_row(name, str(int(n_images)), f"{100 * pixels / total:.2f}")
    return table


def register_commands(app: typer.Typer) -> None:
    """Add ``convert`` and ``coco-gt`` to ``app``."""

    @app.command("convert")
    def convert_command(
        reader: Annotated[str, typer.Option("--reader", "-r", help="Reader of the input format (see `sepl-tree plugins`).",
                                            show_default=False)],
        input_dir: Annotated[Path, typer.Option("--input", "-i", help="Folder of the baseline's pseudo-labels or CAMs.",
                                                show_default=False)],
        out: OutOpt,
        param: ParamOpt = None,
        labels: Annotated[Path | None, typer.Option(
            "--labels", help="Image-level labels (cls_labels.npy, VOC Annotations/, COCO instances JSON) for CAM readers.",
            show_default=False)] = None,
        num_classes: NumClassesOpt = 21,
        ids: IdsOpt = None,
        workers: WorkersOpt = 1,
        overwrite: OverwriteOpt = False,
        plugin: PluginOpt = None,
    ) -> None:
        """Write any reader's output as canonical label PNGs (<out>/<id>.png, VOC palette)."""

        def body() -> None:
            host = get_host(plugin)
            rdr = host.reader(reader)
            params = coerce_params(f"reader {rdr.name!r}", rdr.params, parse_params(param))
            if not input_dir.is_dir():
                raise SeplError(f"{input_dir}: input folder not found")
            all_ids = read_ids(ids) or rdr.ids(input_dir)
            if not all_ids:
                hint = ""
                guess = suggest_reader(input_dir)
                if guess is not None and guess not in rdr.names:
                    hint = f"; the files there look like {_describe(guess)}: try --reader {guess}"
                raise SeplError(f"{input_dir}: no input files for reader {rdr.name!r} (<id>{rdr.suffix}){hint}")
            image_labels = None
            if labels is not None:
                from sepl_tree.image_labels import load_image_labels

                image_labels = load_image_labels(labels, num_classes)
            todo = _pending(out, all_ids, overwrite)
            job = ConvertJob(rdr.name, input_dir, out, num_classes, params, image_labels, tuple(plugin or ()))
            out.mkdir(parents=True, exist_ok=True)
            counts, images = np.zeros(256, np.int64), np.zeros(256, np.int64)
            t0 = time.perf_counter()
            with progress_bar() as bar:
                task = bar.add_task(f"convert ({rdr.name})", total=len(todo), rate="")
                for done, result in enumerate(execute(job, todo, workers=workers), start=1):
                    counts += result.counts
                    images += result.counts > 0
                    bar.update(task, advance=1, rate=f"{done / max(time.perf_counter() - t0, 1e-9):.1f} img/s")
            console.print(f"{len(todo)} written, {len(all_ids) - len(todo)} skipped (existing; --overwrite to redo) "
                          f"in {out}/")
            if todo:
                console.print(_class_table(f"convert: {rdr.name} -> label PNGs", counts, images, num_classes))

        run_guarded(body)

    @app.command("coco-gt")
    def coco_gt_command(
        instances: Annotated[Path, typer.Option("--instances", help="A COCO instances JSON (e.g. instances_val2014.json).",
                                                show_default=False)],
        out: OutOpt,
        ids: IdsOpt = None,
        name_by: Annotated[str, typer.Option(
            "--name-by", help="Output names: 'stem' (<file_name stem>.png, as CAM files are named) or 'id' "
                              "(<numeric image id>.png, as IRN/CLIMS's COCO loaders read them).")] = "stem",
        overwrite: OverwriteOpt = False,
    ) -> None:
        """COCO semantic ground truth from an instances JSON: <out>/<file stem>.png, classes 1..80.

        Smaller instances win where instances overlap; crowd regions are 255 (ignore) unless a
        non-crowd instance covers them (see sepl_tree.coco).
        """

        def body() -> None:
            from sepl_tree.coco import CocoInstances

            if name_by not in ("stem", "id"):
                raise typer.BadParameter(f"must be 'stem' or 'id', got {name_by!r}", param_hint="--name-by")
            coco = CocoInstances.load(instances)
            wanted = read_ids(ids) or coco.ids()
            names = {i: (str(coco.images[i]["id"]) if name_by == "id" and i in coco.images else i) for i in wanted}
            done_names = {i for i in wanted if not overwrite and (out / f"{names[i]}.png").is_file()}
            todo = [i for i in wanted if i not in done_names]
            counts, images = np.zeros(256, np.int64), np.zeros(256, np.int64)
            with progress_bar() as bar:
                task = bar.add_task("coco-gt", total=len(todo), rate="")
                for image_id in todo:
                    label = coco.label(image_id)
                    write_label_png(out / f"{names[image_id]}.png", label)
                    found = np.bincount(label.reshape(-1), minlength=256)
                    counts += found
                    images += found > 0
                    bar.update(task, advance=1)
            console.print(f"{len(todo)} written, {len(wanted) - len(todo)} skipped (existing; --overwrite to redo) "
                          f"in {out}/")
            if todo:
                console.print(_class_table("COCO ground truth", counts, images, coco.num_classes))

        run_guarded(body)
