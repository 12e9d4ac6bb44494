"""``sepl-tree synth``: SYNTHETIC SAM-like masks from a labelled dataset, for studying the tree."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from sepl_tree.cli.common import (
    IdsOpt,
    WorkersOpt,
    console,
    err_console,
    image_progress,
    read_ids,
    run_guarded,
    say_checking,
)
from sepl_tree.executors import execute
from sepl_tree.outputs import check_apart, output_done, pending_ids
from sepl_tree.synth import KINDS, SynthConfig
from sepl_tree.synth.dataset import SynthJob, start_manifest, voc_ids

__all__ = ["Generator", "synth_command"]


class Generator(str, Enum):
    """How the synthetic masks are made."""

    prompts = "prompts"
    legacy = "legacy"


def _print_summary(todo: int, skipped: int, objects: int, missed: int, totals: dict[str, int]) -> None:
    table = Table(title="sepl-tree synth: SYNTHETIC masks (from ground truth, not SAM)")
    table.add_column("")
    table.add_column("written now", justify="right")
    table.add_row("images", str(todo))
    table.add_row("skipped (exist)", str(skipped))
    table.add_row("objects (missed)", f"{objects} ({missed})")
    for kind in KINDS:
        table.add_row(f"masks: {kind}", str(totals.get(kind, 0)))
    console.print(table)


def synth_command(
    dataset: Annotated[Path, typer.Option("--dataset", metavar="DIR", help="VOC-layout root: JPEGImages/, SegmentationClass/, ImageSets/Segmentation/.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="Output folder: <id>.json (RLE, amg.py layout) and synth.json.", show_default=False)],
    seed: Annotated[int, typer.Option("--seed", min=0, metavar="N", help="Random seed (each image's generator depends on it and the id only).")] = 0,
    envelope_rate: Annotated[float, typer.Option("--envelope-rate", min=0.0, max=1.0, metavar="SHARE", help="Share of objects given a mask enveloping them with neighbouring background.")] = 0.3,
    merge_rate: Annotated[float, typer.Option("--merge-rate", min=0.0, max=1.0, metavar="SHARE", help="Share of neighbouring object pairs grouped into one mask.")] = 0.2,
    miss_rate: Annotated[float, typer.Option("--miss-rate", min=0.0, max=1.0, metavar="SHARE", help="Share of objects given no mask at all.")] = 0.05,
    part_rate: Annotated[float, typer.Option("--part-rate", min=0.0, max=1.0, metavar="SHARE", help="Share of objects split into parts.")] = 0.7,
    jitter: Annotated[float, typer.Option("--jitter", min=0.0, max=1.0, metavar="SHARE", help="Share of boundary pixels flipped in every mask.")] = 0.3,
    generator: Annotated[Generator, typer.Option("--generator", help="prompts: three outputs per SAM-like prompt, with level and informative scores (as real SAM 2.1); legacy: independent masks, uninformative scores (the original generator, bit for bit).")] = Generator.prompts,
    ids: IdsOpt = None,
    workers: WorkersOpt = 1,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Rewrite existing outputs (default: skip them).")] = False,
) -> None:
    """Write SYNTHETIC SAM-like masks (tagged by kind) made from a dataset's ground truth."""

    def body() -> None:
        config = SynthConfig(envelope_rate=envelope_rate, merge_rate=merge_rate, miss_rate=miss_rate,
                             part_rate=part_rate, jitter=jitter, prompts=generator is Generator.prompts)
        all_ids = read_ids(ids) or voc_ids(dataset)
        check_apart(out, "--out", {"--dataset": dataset})
        manifest = start_manifest(out, dataset, seed, config, overwrite)
        say_checking(all_ids, f"masks already in {out}")
        todo = pending_ids(all_ids, lambda i: output_done(out / f"{i}.json"), overwrite)
        err_console.print(f"[bold yellow]SYNTHETIC[/bold yellow] masks from ground truth (not SAM): "
                          f"{len(todo)} to write, {len(all_ids) - len(todo)} already there", highlight=False)
        totals = {kind: 0 for kind in KINDS}
        objects = missed = 0
        with image_progress("synth (SYNTHETIC)", len(todo)) as step:
            for _, counts, n_obj, n_missed in execute(SynthJob(dataset, out, seed, config), todo, workers=workers):
                for kind, n in counts.items():
                    totals[kind] = totals.get(kind, 0) + n
                objects, missed = objects + n_obj, missed + n_missed
                step()
        _print_summary(len(todo), len(all_ids) - len(todo), objects, missed, totals)
        console.print(f"SYNTHETIC masks in {out}/ (manifest {manifest.name})")

    run_guarded(body, resumes=True)
