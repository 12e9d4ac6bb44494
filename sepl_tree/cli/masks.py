"""``sepl-tree masks``: SAM automatic mask generation into the layouts ``run`` reads."""

from __future__ import annotations

import time
from datetime import datetime, timezone
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
)
from sepl_tree.errors import InputError, SeplError
from sepl_tree.executors import execute

__all__ = ["masks_command"]



def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("sepl-tree", "segment-anything", "torch"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def masks_command(
    images: Annotated[Path, typer.Option("--images", help="Folder of images (.jpg, .png, ...); id = file name without suffix.", show_default=False)],
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="SAM checkpoint (state dict) for --model-type.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: <id>.json (rle) or <id>/ (png) per image, and errors.log.", show_default=False)],
    model_type: Annotated[str, typer.Option("--model-type", help="vit_h, vit_l, vit_b or a plugin's model type.")] = "vit_h",
    fmt: Annotated[str, typer.Option("--format", help="rle (one COCO-RLE <id>.json) or png (amg.py's <id>/ folder + metadata.csv).")] = "rle",
    device: Annotated[str, typer.Option("--device", help="auto (a GPU when there is one), cpu or cuda.")] = "auto",
    ids: IdsOpt = None,
    preset: Annotated[str, typer.Option("--preset", help="paper, sam-default or heavy (see docs/sam.md).")] = "paper",
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE for SamAutomaticMaskGenerator, over the preset (repeatable).", show_default=False)] = None,
    workers: WorkersOpt = 1,
    threads: Annotated[int | None, typer.Option("--threads", min=1, help="torch CPU threads per worker. [default: the cores shared among --workers]", show_default=False)] = None,
    executor: Annotated[Executor, typer.Option("--executor", help="process (local: one model per worker), serial, or ray (one model per GPU).")] = Executor.process,
    ray_address: RayAddressOpt = None,
    plugin: PluginOpt = None,
) -> None:
    """Generate SAM masks for a folder of images, resumably, in the layouts `run` reads."""
    from sepl_tree import sam

    def body() -> None:
        host = get_host(plugin)
        host.sam_model(model_type)  # unknown model type: error listing the valid ones
        if fmt not in sam.FORMATS:
            raise SeplError(f"--format must be one of {', '.join(sam.FORMATS)}, got {fmt!r}")
        options = executor_options(executor.value, ray_address, workers)  # a bad executor or missing Ray: before anything is written
        if not checkpoint.is_file():
            raise InputError(checkpoint, "checkpoint not found")
        settings = sam.generator_settings(preset, parse_params(param))
        sam.check_settings(settings)
        if executor is not Executor.ray:  # on a cluster the workers, not this machine, have the GPUs
            sam.resolve_device(device)
        found = sam.find_images(images, read_ids(ids))
        sam.check_same_settings(out, model_type, settings)
        out.mkdir(parents=True, exist_ok=True)
        sam.remove_stale_temporaries(out)
        todo = sam.pending_ids(out, found)
        log = sam.start_error_log(out, todo)
        torch_threads = threads or (sam.default_torch_threads(workers) if executor is not Executor.ray else None)
        # Absolute paths: Ray workers on other nodes do not share this shell's directory.
        job = sam.MaskJob({i: found[i].absolute() for i in todo}, out.absolute(), model_type, checkpoint.absolute(),
                          settings, fmt, device, absolute_plugin_paths(plugin),
                          torch_threads)
        summary = sam.MaskRunSummary(total=len(found), skipped=len(found) - len(todo))
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        sam.append_run_log(out, {"started": started, "model_type": model_type, "checkpoint": str(checkpoint.absolute()),
                                 "preset": preset, "settings": settings, "format": fmt, "device": device,
                                 "executor": executor.value, "workers": workers, "torch_threads": torch_threads, "images": len(found),
                                 "to_do": len(todo), "versions": _versions()})
        start = time.perf_counter()
        with progress_bar() as bar:
            task = bar.add_task(f"masks {model_type}/{preset}", total=len(todo), rate="")
            results = execute(job, todo, executor=executor.value, workers=workers, **options) if todo else ()
            for result in results:
                summary.add(result)
                if result.error is not None:
                    sam.append_error(log, result)
                    err_console.print(f"[yellow]skipped[/yellow] {result.image_id}: {result.error}",
                                      highlight=False, soft_wrap=True)
                summary.seconds = time.perf_counter() - start
                bar.update(task, advance=1, rate=f"{summary.images_per_second:.2f} img/s")
        summary.seconds = time.perf_counter() - start
        sam.append_run_log(out, {"finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                 **dict(summary.rows()), "execution": execution_log(options)})
        table = Table(title=f"sepl-tree masks: {model_type}, preset {preset}, {fmt}")
        table.add_column("")
        table.add_column("", justify="right")
        for name, value in summary.rows():
            table.add_row(name, value)
        console.print(table)
        console.print(f"masks in {out}/")
        if summary.failed:
            raise SeplError(f"{summary.failed} image(s) failed and were skipped; see {log} (rerun to retry them)")

    run_guarded(body)
