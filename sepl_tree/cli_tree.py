"""``sepl-tree synth``: SYNTHETIC SAM-like masks from a labelled dataset, for studying the tree.

Reads a VOC-layout dataset (``JPEGImages/<id>.jpg``, ``SegmentationClass/<id>.png``, ids from
``ImageSets/Segmentation/*.txt`` or every GT file) and writes ``OUT/<id>.json`` in segment-anything's
RLE layout, each record tagged with its ``kind`` and ``"synthetic": true``, plus ``OUT/synth.json``,
a manifest that says the masks are synthetic and how they were made. Existing outputs are kept
(resume) unless ``--overwrite``; a resumed run must use the manifest's settings.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from PIL import Image
from rich.table import Table

from sepl_tree.cli_common import IdsOpt, WorkersOpt, console, err_console, progress_bar, read_ids, run_guarded
from sepl_tree.errors import InputError, SeplError
from sepl_tree.executors import execute
from sepl_tree.files import atomic_write_bytes, read_png
from sepl_tree.masks import write_masks_rle
from sepl_tree.synth import KINDS, SynthConfig, synthesize_masks

__all__ = ["SynthJob", "register_commands", "synth_image", "voc_ids"]

MANIFEST = "synth.json"
NOTICE = "SYNTHETIC masks derived from ground truth by sepl_tree.synth -- not SAM output"


def voc_ids(root: Path) -> list[str]:
    """Ids of a VOC-layout dataset: those in ``ImageSets/Segmentation/*.txt`` with a GT file, else every GT file."""
    gt_dir = root / "SegmentationClass"
    if not gt_dir.is_dir():
        raise InputError(gt_dir, "no SegmentationClass/ folder (expected a VOC-layout dataset)")
    have = {p.stem for p in gt_dir.glob("*.png")}
    lists = sorted((root / "ImageSets" / "Segmentation").glob("*.txt"))
    listed: set[str] = set()
    for path in lists:
        listed |= {line.strip() for line in path.read_text().splitlines() if line.strip()}
    ids = sorted(listed & have) if lists else sorted(have)
    if not ids:
        raise InputError(gt_dir, "no ground-truth PNG files to build masks from")
    return ids


def image_rng(seed: int, image_id: str) -> np.random.Generator:
    """The generator of one image: the same for a seed and id, whatever the order or workers."""
    return np.random.default_rng([seed, zlib.crc32(image_id.encode())])


def synth_image(root: Path, image_id: str, seed: int, config: SynthConfig):
    """Synthesize the masks of one dataset image (reads its GT and JPEG)."""
    gt = read_png(root / "SegmentationClass" / f"{image_id}.png")
    if gt.ndim != 2:
        raise InputError(root / "SegmentationClass" / f"{image_id}.png", f"GT must be one channel, got {gt.shape}")
    jpg = root / "JPEGImages" / f"{image_id}.jpg"
    image = None
    if jpg.is_file():
        try:
            with Image.open(jpg) as img:
                image = np.array(img.convert("RGB"))
        except OSError as exc:
            raise InputError(jpg, f"not a readable image ({exc})") from None
        if image.shape[:2] != gt.shape:
            raise InputError(jpg, f"image is {image.shape[1]}x{image.shape[0]} but its GT is {gt.shape[1]}x{gt.shape[0]}")
    return synthesize_masks(gt.astype(np.uint8), image, image_rng(seed, image_id), config)


@dataclass(frozen=True)
class SynthJob:
    """Per-image job of ``synth`` (picklable, for the process pool)."""

    root: Path
    out: Path
    seed: int
    config: SynthConfig

    def setup(self):
        def process(image_id: str) -> tuple[str, dict[str, int], int, int]:
            result = synth_image(self.root, image_id, self.seed, self.config)
            write_masks_rle(self.out / f"{image_id}.json", result.masks)
            return image_id, result.counts, result.objects, result.missed

        return process


def _manifest(dataset: Path, seed: int, config: SynthConfig) -> dict[str, Any]:
    return {"synthetic": True, "notice": NOTICE, "generator": "sepl_tree.synth", "dataset": str(dataset),
            "seed": seed, "config": asdict(config), "kinds": list(KINDS)}


def synth_command(
    dataset: Annotated[Path, typer.Option("--dataset", help="VOC-layout root: JPEGImages/, SegmentationClass/, ImageSets/Segmentation/.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: <id>.json (RLE, amg.py layout) and synth.json.", show_default=False)],
    seed: Annotated[int, typer.Option("--seed", help="Random seed (each image's generator depends on it and the id only).")] = 0,
    envelope_rate: Annotated[float, typer.Option("--envelope-rate", min=0.0, max=1.0, help="Share of objects given a mask enveloping them with neighbouring background.")] = 0.3,
    merge_rate: Annotated[float, typer.Option("--merge-rate", min=0.0, max=1.0, help="Share of neighbouring object pairs grouped into one mask.")] = 0.2,
    miss_rate: Annotated[float, typer.Option("--miss-rate", min=0.0, max=1.0, help="Share of objects given no mask at all.")] = 0.05,
    part_rate: Annotated[float, typer.Option("--part-rate", min=0.0, max=1.0, help="Share of objects split into parts.")] = 0.7,
    jitter: Annotated[float, typer.Option("--jitter", min=0.0, max=1.0, help="Share of boundary pixels flipped in every mask.")] = 0.3,
    ids: IdsOpt = None,
    workers: WorkersOpt = 1,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Rewrite existing outputs (default: skip them).")] = False,
) -> None:
    """Write SYNTHETIC SAM-like masks (tagged by kind) made from a dataset's ground truth."""

    def body() -> None:
        config = SynthConfig(envelope_rate=envelope_rate, merge_rate=merge_rate, miss_rate=miss_rate,
                             part_rate=part_rate, jitter=jitter)
        all_ids = read_ids(ids) or voc_ids(dataset)
        out.mkdir(parents=True, exist_ok=True)
        manifest = _manifest(dataset, seed, config)
        path = out / MANIFEST
        if path.is_file() and not overwrite:
            try:
                old = json.loads(path.read_text())
            except ValueError:
                old = {}
            if (old.get("seed"), old.get("config")) != (seed, manifest["config"]):
                raise SeplError(f"{out} holds synthetic masks made with other settings (seed {old.get('seed')}, "
                                f"config {old.get('config')}); use another --out or --overwrite")
        atomic_write_bytes(path, json.dumps(manifest, indent=2).encode())
        todo = all_ids if overwrite else [i for i in all_ids if not (out / f"{i}.json").is_file()]
        err_console.print(f"[bold yellow]SYNTHETIC[/bold yellow] masks from ground truth (not SAM): "
                          f"{len(todo)} to write, {len(all_ids) - len(todo)} already there", highlight=False)
        totals = {kind: 0 for kind in KINDS}
        objects = missed = 0
        with progress_bar() as bar:
            task = bar.add_task("synth (SYNTHETIC)", total=len(todo), rate="")
            for _, counts, n_obj, n_missed in execute(SynthJob(dataset, out, seed, config), todo, workers=workers):
                for kind, n in counts.items():
                    totals[kind] = totals.get(kind, 0) + n
                objects, missed = objects + n_obj, missed + n_missed
                bar.update(task, advance=1)
        table = Table(title="sepl-tree synth: SYNTHETIC masks (from ground truth, not SAM)")
        table.add_column("")
        table.add_column("written now", justify="right")
        table.add_row("images", str(len(todo)))
        table.add_row("skipped (exist)", str(len(all_ids) - len(todo)))
        table.add_row("objects (missed)", f"{objects} ({missed})")
        for kind in KINDS:
            table.add_row(f"masks: {kind}", str(totals.get(kind, 0)))
        console.print(table)
        console.print(f"SYNTHETIC masks in {out}/ (manifest {path.name})")

    run_guarded(body)


def register_commands(app: typer.Typer) -> None:
    """Add the ``synth`` command to ``app``."""
    app.command("synth")(synth_command)
