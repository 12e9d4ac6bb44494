"""``sepl-tree masks``: SAM automatic mask generation into the layouts ``run`` reads."""

from __future__ import annotations

import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sepl_tree.cli.common import (
    Executor,
    IdsOpt,
    PluginOpt,
    RayAddressOpt,
    WorkersOpt,
    absolute_plugin_paths,
    console,
    err_console,
    execution_log,
    executor_options,
    get_host,
    parse_params,
    progress_bar,
    read_ids,
    run_guarded,
    say_checking,
    warn,
)
from sepl_tree.errors import SeplError
from sepl_tree.executors import execute
from sepl_tree.outputs import check_apart

__all__ = ["masks_command"]


class Format(str, Enum):
    """Output layout: one COCO-RLE ``<id>.json``, or amg.py's ``<id>/`` PNG folder."""

    rle = "rle"
    png = "png"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Preset(str, Enum):
    """Generator settings (see docs/sam.md)."""

    paper = "paper"
    sam_default = "sam-default"
    heavy = "heavy"


class Engine(str, Enum):
    fast = "fast"
    stock = "stock"


class Precision(str, Enum):
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("sepl-tree", "segment-anything", "sam2", "torch"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


#: From this many images to hash on, a line says so (each is read whole).
HASHING_NOTE_IMAGES = 1_000


def _say_hashing(count: int) -> None:
    """A line before the images with masks are read to tell whether they changed (a folder from
    before masks_made_from.jsonl, or a dataset copied to another disk: once)."""
    if count >= HASHING_NOTE_IMAGES:
        err_console.print(f"reading {count} images with masks to tell whether they changed since (once: their "
                          "SHA-1s are recorded in masks_made_from.jsonl)", highlight=False, soft_wrap=True)


def _print_summary(title: str, rows: list[tuple[str, str]]) -> None:
    table = Table(title=title)
    table.add_column("")
    table.add_column("", justify="right")
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def masks_command(
    images: Annotated[Path, typer.Option("--images", metavar="DIR", help="Folder of images (.jpg, .png, ...); id = file name without suffix.", show_default=False)],
    checkpoint: Annotated[Path, typer.Option("--checkpoint", metavar="FILE", help="Checkpoint for --model-type (segment-anything's .pth state dict, sam2's .pt).", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="Output folder: <id>.json (rle) or <id>/ (png) per image, and errors.log.", show_default=False)],
    model_type: Annotated[str, typer.Option("--model-type", metavar="NAME", help="vit_h, vit_l, vit_b, sam2.1_hiera_l (_t, _s, _b+), sam2_hiera_l, ... or a plugin's model type.")] = "vit_h",
    fmt: Annotated[Format, typer.Option("--format", help="rle (one COCO-RLE <id>.json) or png (amg.py's <id>/ folder + metadata.csv).")] = Format.rle,
    device: Annotated[Device, typer.Option("--device", help="auto (a GPU when there is one), cpu or cuda.")] = Device.auto,
    ids: IdsOpt = None,
    preset: Annotated[Preset, typer.Option("--preset", help="Generator settings (see docs/sam.md).")] = Preset.paper,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", metavar="NAME=VALUE", help="An argument of the family's automatic mask generator, over the preset (repeatable).", show_default=False)] = None,
    engine: Annotated[Engine, typer.Option("--engine", help="fast (batched, pipelined; the stock generator's masks) or stock (the library's generator).")] = Engine.fast,
    precision: Annotated[Precision, typer.Option("--precision", help="Autocast of encoder and decoder (fast engine).")] = Precision.fp32,
    batch_images: Annotated[int | None, typer.Option("--batch-images", min=1, metavar="N", help="Images (or crops) per image-encoder pass (fast engine). [default: 4 on a GPU, 1 on the CPU]", show_default=False)] = None,
    point_batch: Annotated[int | None, typer.Option("--point-batch", min=1, metavar="N", help="Point prompts per decoder pass (fast engine). [default: points_per_batch on the CPU, sized to the free memory on a GPU]", show_default=False)] = None,
    workers: WorkersOpt = 1,
    threads: Annotated[int | None, typer.Option("--threads", min=1, metavar="N", help="torch CPU threads per worker (on Ray also the CPUs each reserves). [default: the cores shared among --workers; 1 on Ray]", show_default=False)] = None,
    executor: Annotated[Executor, typer.Option("--executor", help="process (local: one model per worker), serial, or ray (one model per GPU).")] = Executor.process,
    ray_address: RayAddressOpt = None,
    plugin: PluginOpt = None,
    remake_changed: Annotated[bool, typer.Option("--remake-changed", help="Remake the masks of images that changed since they were made even when most did (refused without it: a wrong --images looks like that).")] = False,
) -> None:
    """Generate SAM masks for a folder of images, resumably, in the layouts `run` reads."""
    from sepl_tree import sam

    def body() -> None:
        host = get_host(plugin)
        options = executor_options(executor.value, ray_address, workers)  # missing Ray: before anything is written
        check_apart(out, "--out", {"--images": images, "--checkpoint": checkpoint})
        request = sam.MaskRequest(images, checkpoint, out, model_type, fmt.value, device.value, read_ids(ids),
                                  preset.value, parse_params(param), engine.value, precision.value, batch_images,
                                  point_batch, workers, threads, executor.value, absolute_plugin_paths(plugin),
                                  remake_changed)
        run = sam.plan_masks_run(host, request, _versions(), lambda ids: say_checking(ids, f"masks already in {out}"),
                                 _say_hashing)
        for note in run.notes:
            warn(note)
        start = time.perf_counter()
        with progress_bar() as bar:
            task = bar.add_task(f"masks {model_type}/{preset.value}", total=len(run.todo), rate="")
            results = execute(run.job, run.todo, executor=executor.value, workers=workers, **options) if run.todo else ()
            for result in results:
                result = run.add(result)  # (as counted: an image that changed meanwhile fails)
                if result.error is not None:
                    err_console.print(f"[yellow]skipped[/yellow] {result.image_id}: {result.error}",
                                      highlight=False, soft_wrap=True)
                run.summary.seconds = time.perf_counter() - start
                bar.update(task, advance=1, rate=f"{run.summary.images_per_second:.2f} img/s")
        run.finish(time.perf_counter() - start, execution_log(options))
        _print_summary(f"sepl-tree masks: {model_type}, preset {preset.value}, {fmt.value}", run.summary.rows())
        console.print(f"masks in {out}/")
        if run.summary.failed:
            raise SeplError(f"{run.summary.failed} image(s) failed and were skipped; see {run.log} "
                            "(rerun to retry them)")

    run_guarded(body, resumes=True)
