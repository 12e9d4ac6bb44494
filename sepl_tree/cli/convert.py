"""``sepl-tree convert``: any reader's output (CAM ``.npy``, per-class PNGs, ...) as canonical label PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from sepl_tree.cli.common import (
    IdsOpt,
    NumClassesOpt,
    OutOpt,
    OverwriteOpt,
    PluginOpt,
    ReaderParamOpt,
    WorkersOpt,
    absolute_plugin_paths,
    class_table,
    console,
    finish_folder,
    get_host,
    image_progress,
    input_ids,
    inputs_changed,
    out_of_date,
    parse_params,
    run_guarded,
    say_checking,
    warn_if_labels_unused,
)
from sepl_tree.convert import ConvertJob, convert_settings
from sepl_tree.errors import SeplError
from sepl_tree.executors import execute
from sepl_tree.inputs import InputConfig, InputReader
from sepl_tree.outputs import check_apart, claim_folder, noting_a_stop, output_done, pending_ids

__all__ = ["convert_command"]

def convert_command(
    reader: Annotated[str, typer.Option("--reader", "-r", metavar="NAME", help="Reader of the input format (see `sepl-tree plugins`).", show_default=False)],
    input_dir: Annotated[Path, typer.Option("--input", "-i", metavar="DIR", help="Folder of the baseline's pseudo-labels or CAMs.", show_default=False)],
    out: OutOpt,
    param: ReaderParamOpt = None,
    labels: Annotated[Path | None, typer.Option("--labels", metavar="FILE", help="Image-level labels (cls_labels.npy, VOC Annotations/, COCO instances JSON) for CAM readers.", show_default=False)] = None,
    num_classes: NumClassesOpt = 21,
    ids: IdsOpt = None,
    workers: WorkersOpt = 1,
    overwrite: OverwriteOpt = False,
    plugin: PluginOpt = None,
) -> None:
    """Write any reader's output as canonical label PNGs (<out>/<id>.png, VOC palette)."""

    def body() -> None:
        host = get_host(plugin)
        config = InputConfig(input_dir.resolve(), reader=reader, reader_params=parse_params(param),
                             num_classes=num_classes, plugins=absolute_plugin_paths(plugin),
                             labels=labels and labels.resolve())
        if not input_dir.is_dir():
            raise SeplError(f"{input_dir}: input folder not found")
        inputs = InputReader.from_host(config, host)  # parameters and --labels checked before any work
        all_ids = input_ids(inputs, ids)
        check_apart(out, "--out", {"--input": input_dir, "--labels": labels})
        warn_if_labels_unused(inputs, all_ids, labels)
        settings = convert_settings(inputs)
        claim_folder(out, "convert.json", settings, overwrite, lambda d: d.glob("*.png"))
        say_checking(all_ids, f"outputs already in {out}")
        stale = out_of_date(inputs.input_stamps(all_ids), [out], overwrite, inputs_changed("its input file", labels))
        todo = pending_ids(all_ids, lambda i: i not in stale and output_done(out / f"{i}.png"), overwrite)
        job = ConvertJob(config.with_labels_read(inputs.context.image_labels), out.resolve())
        counts, images = np.zeros(256, np.int64), np.zeros(256, np.int64)
        with noting_a_stop(out, "convert.json", settings), image_progress(f"convert ({inputs.reader.name})",
                                                                          len(todo)) as step:
            for result in execute(job, todo, workers=workers):
                counts += result.counts
                images += result.counts > 0
                step()
        finish_folder(out, "convert.json", settings, len(all_ids), len(todo), made_again=len(stale))
        if todo:
            console.print(class_table(f"convert: {inputs.reader.name} -> label PNGs", counts, images, num_classes))

    run_guarded(body, resumes=True)
