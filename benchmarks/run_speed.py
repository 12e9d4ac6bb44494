"""Speed of ``sepl-tree run`` on a dense, VOC-sized input set, against its I/O floor and a loop.

Usage::

    python benchmarks/run_speed.py [--images 60] [--masks 100] [--repeats 4] [--passes 10]
                                   [--root DIR] [--markdown FILE]

What it does, in one run:

1. Builds (or reuses, under ``--root``) a synthetic dense set: 500x375 images, ``--masks`` SAM-like
   masks per image (many small blobs, some large "stuff" regions, objects with nested parts and
   sub-parts), stored in both of segment-anything's layouts (``masks_rle/<id>.json`` and
   ``masks_png/<id>/<n>.png`` + ``metadata.csv``), and palette pseudo-labels with 1-3 classes
   showing CAM-like errors (partial and leaking activations, some 255 bands).
2. Times, for each layout, with 1 and 2 workers:

   - ``threshold`` and ``official``: the real per-image job of ``sepl-tree run``
     (:class:`sepl_tree.pipeline.RunJob` through :func:`sepl_tree.executors.execute`, which is
     what :func:`sepl_tree.pipeline.run_images` calls), pool start-up included;
   - the I/O floor: the same job with the strategy left out (read the pseudo-label, decode the
     masks as ``run`` does, into the bits of a ``MaskSet`` for RLE and into dense masks for PNG
     folders, and write the same outputs ``threshold`` writes);
   - a long run of the floor, ``threshold`` and ``official`` on RLE masks with 1 and 2 workers:
     the ids ``--passes`` times over, so that the pool's start-up weighs on the two-worker
     speed-up about as little as it does on a real dataset;
   - ``loop-threshold`` / ``loop-official`` (1 worker, RLE masks): plain per-mask loops of the
     same rules (``tests/loop_rules.py``, the tests' oracle, loaded as a plugin, so they pay the same I/O).

   Each cell runs in a fresh Python process, ``--repeats`` times interleaved with the others; the
   best time is reported, and the spread (slowest / best - 1) says how noisy the machine was;
   "steady images/s" counts from the first result on (the rate a long run approaches).
   Peak RSS is the largest ``ru_maxrss`` seen by any one worker (with one worker, the measuring
   process itself); CPU ms/image adds up the workers' CPU time from job set-up on, so it is
   less sensitive than images/s to other load on a shared machine; "first image after" is the
   time from the start of the run to the first result (plugin loading, and pool start-up with
   two workers).
3. Checks that the fast strategies wrote the same label maps as the loops, from either layout
   and with either number of workers, and prints a markdown table (also written to
   ``--markdown FILE``), with how well two processes could scale on the machine at the time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sepl_tree.executors import execute
from sepl_tree.files import atomic_write_bytes, encode_label_png, read_label_png, write_label_png
from sepl_tree.masks import MaskSet, write_masks_png_folder, write_masks_rle
from sepl_tree.morphology import dilate
from sepl_tree.inputs import InputConfig
from sepl_tree.pipeline import RunConfig, RunJob
from sepl_tree.plugins import load_host

HERE = Path(__file__).resolve().parent
LOOP_PLUGIN = str(HERE.parent / "tests" / "loop_rules.py")
HEIGHT, WIDTH, NUM_CLASSES = 375, 500, 21
LAYOUTS = {"rle": "masks_rle", "png": "masks_png"}
DATASET_VERSION = 2

# ------------------------------------------------------------------------------ dense input set


def _blob(rng: np.random.Generator, cy: float, cx: float, radius: float) -> np.ndarray:
    """A star-shaped blob (ellipse with a wavy boundary), ``bool (H, W)``, computed on its box only."""
    out = np.zeros((HEIGHT, WIDTH), bool)
    aspect, angle = rng.uniform(0.5, 1.0), rng.uniform(0, np.pi)
    reach = radius * 1.35
    y0, y1 = int(max(cy - reach, 0)), int(min(cy + reach + 1, HEIGHT))
    x0, x1 = int(max(cx - reach, 0)), int(min(cx + reach + 1, WIDTH))
    if y0 >= y1 or x0 >= x1:
        return out
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = (-dx * np.sin(angle) + dy * np.cos(angle)) / aspect
    theta = np.arctan2(v, u)
    wave = np.ones_like(theta)
    for harmonic in range(2, 6):
        wave += rng.uniform(0, 0.12) * np.cos(harmonic * theta + rng.uniform(0, 2 * np.pi))
    out[y0:y1, x0:x1] = u * u + v * v <= (radius * wave) ** 2
    return out


def _point_in(rng: np.random.Generator, region: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(region)
    n = int(rng.integers(len(ys)))
    return float(ys[n]), float(xs[n])


def make_dense_scene(rng: np.random.Generator, n_masks: int) -> tuple[np.ndarray, MaskSet]:
    """One 500x375 pseudo-label (1-3 classes) and ``n_masks`` SAM-like masks."""
    objects: list[tuple[int, np.ndarray, float]] = []
    occupied = np.zeros((HEIGHT, WIDTH), bool)
    for k in rng.choice(np.arange(1, NUM_CLASSES), int(rng.integers(1, 4)), replace=False):
        radius = rng.uniform(60, 150)
        region = _blob(rng, rng.uniform(0.2, 0.8) * HEIGHT, rng.uniform(0.15, 0.85) * WIDTH, radius) & ~occupied
        if region.sum() > 500:
            objects.append((int(k), region, radius))
            occupied |= region
    if not objects:  # keep at least one class
        region = _blob(rng, HEIGHT / 2, WIDTH / 2, 80.0)
        objects.append((int(rng.integers(1, NUM_CLASSES)), region, 80.0))
        occupied |= region

    pseudo = np.zeros((HEIGHT, WIDTH), np.uint8)
    for k, region, radius in objects:
        error = rng.choice(["partial", "leak", "good"], p=[0.45, 0.35, 0.2])
        if error == "partial":
            cam = _blob(rng, *_point_in(rng, region), radius * rng.uniform(0.3, 0.6)) & region
        elif error == "leak":
            cam = dilate(region, int(rng.integers(4, 12)), "diamond")
        else:
            cam = region
        pseudo[cam & (pseudo == 0)] = k
    if rng.random() < 0.5:  # an ignore band along object borders, as some baselines write
        for _, region, _ in objects:
            pseudo[dilate(region, 2, "diamond") & ~region] = 255

    masks: list[np.ndarray] = []
    for _, region, radius in objects:  # objects, their parts and sub-parts (nested)
        masks.append(region)
        for _ in range(int(rng.integers(2, 5))):
            part = _blob(rng, *_point_in(rng, region), radius * rng.uniform(0.25, 0.6)) & region
            masks.append(part)
            for _ in range(int(rng.integers(0, 3))):
                if part.any():
                    masks.append(_blob(rng, *_point_in(rng, part), radius * rng.uniform(0.08, 0.25)) & part)
    horizon = int(rng.uniform(0.25, 0.5) * HEIGHT)
    sky = np.zeros((HEIGHT, WIDTH), bool)
    sky[:horizon] = True
    masks += [sky & ~occupied, ~sky & ~occupied]  # large "stuff"
    for _ in range(int(rng.integers(1, 4))):
        masks.append(_blob(rng, rng.uniform(0, HEIGHT), rng.uniform(0, WIDTH), rng.uniform(50, 110)) & ~occupied)
    while len(masks) < n_masks:  # many small masks, some inside objects
        radius = float(np.exp(rng.uniform(np.log(3), np.log(30))))
        if rng.random() < 0.3:
            _, region, _ = objects[int(rng.integers(len(objects)))]
            masks.append(_blob(rng, *_point_in(rng, region), radius) & region)
        else:
            masks.append(_blob(rng, rng.uniform(0, HEIGHT), rng.uniform(0, WIDTH), radius))
    masks = [m for m in masks if m.any()]
    while len(masks) < n_masks:
        masks.append(_blob(rng, rng.uniform(20, HEIGHT - 20), rng.uniform(20, WIDTH - 20), 10.0))
    order = rng.permutation(len(masks))  # SAM's output order is not by size
    stack = np.stack([masks[i] for i in order])
    records = [{"predicted_iou": float(rng.uniform(0.86, 1.0)), "stability_score": float(rng.uniform(0.92, 1.0)),
                "point_coords": [[float(rng.uniform(0, WIDTH)), float(rng.uniform(0, HEIGHT))]]} for _ in stack]
    return pseudo, MaskSet(stack, records)


def build_dataset(root: Path, n_images: int, n_masks: int, seed: int) -> list[str]:
    """Write ``pseudo/``, ``masks_rle/`` and ``masks_png/`` under ``root`` (reused if already there)."""
    stamp = root / "dataset.json"
    want = {"version": DATASET_VERSION, "images": n_images, "masks": n_masks, "seed": seed}
    ids = [f"dense_{n:05d}" for n in range(n_images)]
    if stamp.is_file() and json.loads(stamp.read_text()) == want:
        return ids
    for sub in ("pseudo", *LAYOUTS.values()):
        shutil.rmtree(root / sub, ignore_errors=True)
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for image_id in ids:
        pseudo, maskset = make_dense_scene(rng, n_masks)
        atomic_write_bytes(root / "pseudo" / f"{image_id}.png", encode_label_png(pseudo))
        write_masks_rle(root / LAYOUTS["rle"] / f"{image_id}.json", maskset)
        write_masks_png_folder(root / LAYOUTS["png"] / image_id, maskset)
    stamp.write_text(json.dumps(want))
    return ids


# ------------------------------------------------------------------------------- measured jobs


@dataclass(frozen=True)
class IOFloorJob:
    """``RunJob`` without the strategy: read P and the masks as ``run`` does, write the given outputs."""

    config: RunConfig
    outputs: dict[str, np.ndarray]

    def setup(self):
        c = self.config
        _, inputs = RunJob(c).resolve(load_host(c.inputs.plugins))

        def process(image_id: str) -> int:
            masks = inputs.read(image_id).masks
            write_label_png(c.out_dir / f"{image_id}.png", self.outputs[image_id])
            return len(masks)

        return process


@dataclass(frozen=True)
class Measured:
    """Wraps a job spec; each call also returns the worker's pid, peak RSS (KiB on Linux) and
    CPU seconds since the worker started setting up the job."""

    job: Any

    def setup(self):
        cpu0 = time.process_time()
        fn = self.job.setup()

        def call(image_id: str) -> tuple[int, int, float]:
            fn(image_id)
            return os.getpid(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.process_time() - cpu0

        return call


def measure(cell: dict[str, Any]) -> dict[str, Any]:
    """Run one cell (in a fresh process) and return its wall time and per-worker peak RSS."""
    root, out = Path(cell["root"]), Path(cell["out"])
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    strategy = cell["strategy"]
    plugins = (LOOP_PLUGIN,) if strategy.startswith("loop-") else ()
    inputs = InputConfig(root / "pseudo", root / LAYOUTS[cell["layout"]], num_classes=NUM_CLASSES, plugins=plugins)
    config = RunConfig(inputs, out, strategy="threshold" if strategy == "io-floor" else strategy, overwrite=True)
    ids = sorted(p.stem for p in (root / "pseudo").glob("*.png")) * cell.get("passes", 1)
    if strategy == "io-floor":
        reference = Path(cell["reference"])
        job = IOFloorJob(config, {i: read_label_png(reference / f"{i}.png", NUM_CLASSES) for i in ids})
    else:
        job = RunJob(config)
    RunJob(config).resolve(load_host(plugins))  # as `sepl-tree run` does before its timer starts
    start = time.perf_counter()
    first = None
    rss: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for pid, maxrss, cpu_seconds in execute(Measured(job), ids, executor="process", workers=cell["workers"]):
        first = first or time.perf_counter() - start
        rss[pid] = max(rss.get(pid, 0), maxrss)
        cpu[pid] = max(cpu.get(pid, 0.0), cpu_seconds)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "first": first, "images": len(ids), "workers_seen": len(rss),
            "peak_rss_mib": max(rss.values()) / 1024, "cpu_seconds": sum(cpu.values())}


# ----------------------------------------------------------------------------------- the table


def _spin() -> float:
    """Seconds for a fixed pure-Python loop: the yardstick for what two processes can get."""
    start = time.perf_counter()
    total = 0
    for i in range(5_000_000):
        total += i
    return time.perf_counter() - start


def machine_scaling() -> float:
    """How much faster two processes finish two copies of :func:`_spin` than one does both.

    2.0 on two free cores; less when other jobs share the machine. It bounds the two-worker
    speed-up this machine could show while the benchmark ran.
    """
    command = [sys.executable, __file__, "--spin"]
    alone = float(subprocess.run(command, capture_output=True, text=True, check=True).stdout)
    pair = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    together = max(float(p.communicate()[0]) for p in pair)
    return 2 * alone / together


def _run_cell(cell: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--measure", json.dumps(cell)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"measurement {cell} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _same_outputs(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.glob("*.png"))
    if names != sorted(p.name for p in b.glob("*.png")) or not names:
        return False
    return all(np.array_equal(read_label_png(a / n, 256), read_label_png(b / n, 256)) for n in names)


def _table(rows: list[dict[str, Any]], args: argparse.Namespace, checks: list[str], elapsed: float) -> str:
    best = {(r["layout"], r["strategy"], r["workers"]): r for r in rows}
    lines = [
        f"{args.images} images of 500x375, {args.masks} masks each; best of {args.repeats} runs per cell; "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, numpy {np.__version__}; load average "
        f"{args.load_before:.1f} before, {os.getloadavg()[0]:.1f} after. Pool start-up is included in images/s; "
        "steady images/s leaves out everything before the first result. Two processes running a "
        f"pure-Python loop got {args.scaling_before:.2f}x one process before the run and "
        f"{machine_scaling():.2f}x after it (2.00x on two free cores).",
        "",
        "| masks | job | workers | images/s | steady images/s | vs I/O floor | 2 workers / 1 (steady) "
        "| fast / loop | CPU ms/image | first image after | peak RSS per worker | spread |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        layout, strategy, workers = r["layout"], r["strategy"], r["workers"]
        floor = best.get((layout, "io-floor", workers))
        vs_floor = f"{r['rate'] / floor['rate']:.2f}" if floor and strategy != "io-floor" else ""
        one = best.get((layout, strategy, 1))
        scale = f"{r['rate'] / one['rate']:.2f}x ({r['steady'] / one['steady']:.2f}x)" if workers == 2 and one else ""
        loop = best.get((layout, f"loop-{strategy}", 1))
        speedup = f"{r['rate'] / loop['rate']:.1f}x" if loop and workers == 1 else ""
        lines.append(f"| {layout} | {strategy} | {workers} | {r['rate']:.1f} | {r['steady']:.1f} | {vs_floor} | {scale} "
                     f"| {speedup} | {r['cpu_ms']:.1f} | {r['first']:.2f} s | {r['peak_rss_mib']:.0f} MiB | {r['spread']:.0%} |")
    lines += ["", f"Outputs: {'; '.join(checks)}. Whole benchmark: {elapsed:.0f} s."]
    return "\n".join(lines)


def _long_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    best = {(r["strategy"], r["workers"]): r for r in rows}
    lines = [
        f"Long run: the same {args.images} ids {args.passes} times over ({args.images * args.passes} jobs), "
        f"RLE masks, best of {args.repeats} runs per cell; pool start-up included.",
        "",
        "| job | 1 worker, images/s | 2 workers, images/s | 2 workers / 1 | 2 workers / 1, steady | first image after (2 workers) | spread |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        one, two = best[(strategy, 1)], best[(strategy, 2)]
        lines.append(f"| {strategy} | {one['rate']:.1f} | {two['rate']:.1f} | {two['rate'] / one['rate']:.2f}x "
                     f"| {two['steady'] / one['steady']:.2f}x | {two['first']:.2f} s "
                     f"| {max(one['spread'], two['spread']):.0%} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=60, help="images in the dense set")
    parser.add_argument("--masks", type=int, default=100, help="masks per image (at least 80 for the issue)")
    parser.add_argument("--repeats", type=int, default=4, help="runs per cell; the best is reported")
    parser.add_argument("--root", type=Path, help="folder for the dense set (reused across runs); default: a temp dir")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--passes", type=int, default=10,
                        help="the long run (two-worker scaling) goes over the ids this many times")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    parser.add_argument("--spin", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.spin:
        print(_spin())
        return
    if args.measure:
        print(json.dumps(measure(json.loads(args.measure))))
        return

    started = time.perf_counter()
    args.load_before = os.getloadavg()[0]
    args.scaling_before = machine_scaling()
    tmp = None if args.root else tempfile.TemporaryDirectory(prefix="sepl-speed-")
    root = args.root or Path(tmp.name)
    try:
        t0 = time.perf_counter()
        build_dataset(root, args.images, args.masks, args.seed)
        print(f"dense set under {root} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        cells = []
        for layout in LAYOUTS:
            # The floor writes what threshold writes: make those outputs first (also a warm-up).
            reference = root / "out" / f"{layout}-reference"
            _run_cell({"root": str(root), "out": str(reference), "layout": layout, "strategy": "threshold",
                       "workers": 1, "reference": ""})
            for strategy in ("io-floor", "threshold", "official"):
                cells += [{"layout": layout, "strategy": strategy, "workers": w, "reference": str(reference)}
                          for w in (1, 2)]
            if layout == "rle":  # the loops pay the same I/O; one layout is enough to compare compute
                cells += [{"layout": layout, "strategy": s, "workers": 1, "reference": ""}
                          for s in ("loop-threshold", "loop-official")]
                # A long run, for two-worker scaling: pool start-up is small next to it, as on a real dataset.
                cells += [{"layout": layout, "strategy": s, "workers": w, "reference": str(reference),
                           "passes": args.passes} for s in ("io-floor", "threshold", "official") for w in (1, 2)]
        times: dict[int, list[float]] = {n: [] for n in range(len(cells))}
        steady: dict[int, list[float]] = {n: [] for n in range(len(cells))}
        results: dict[int, dict[str, Any]] = {}
        for repeat in range(args.repeats):  # interleaved, so a noisy minute hits every cell alike
            for n, cell in enumerate(cells):
                name = f"{cell['layout']}-{cell['strategy']}-{cell['workers']}" + ("-long" if "passes" in cell else "")
                result = _run_cell({**cell, "root": str(root), "out": str(root / "out" / name)})
                times[n].append(result["seconds"])
                steady[n].append((result["images"] - 1) / max(result["seconds"] - result["first"], 1e-9))
                if result["seconds"] <= min(times[n]):
                    results[n] = result
                print(f"  [{repeat + 1}/{args.repeats}] {name}: {result['images'] / result['seconds']:.1f} images/s",
                      file=sys.stderr)
        rows, long_rows = [], []
        for n, cell in enumerate(cells):
            r = results[n]
            (long_rows if "passes" in cell else rows).append({**cell, "rate": r["images"] / min(times[n]), "peak_rss_mib": r["peak_rss_mib"],
                         "cpu_ms": 1000 * r["cpu_seconds"] / r["images"], "first": r["first"],
                         "steady": max(steady[n]),
                         "spread": max(times[n]) / min(times[n]) - 1})
        checks = []
        out = root / "out"
        for strategy in ("threshold", "official"):
            pairs = [("rle", "loop", out / f"rle-{strategy}-1", out / f"rle-loop-{strategy}-1"),
                     ("png", "rle", out / f"png-{strategy}-1", out / f"rle-{strategy}-1")]
            pairs += [(layout, "2 workers", out / f"{layout}-{strategy}-1", out / f"{layout}-{strategy}-2")
                      for layout in LAYOUTS]
            checks += [f"{layout} {strategy} {'==' if _same_outputs(a, b) else '!='} {other}"
                       for layout, other, a, b in pairs]
        table = _table(rows, args, checks, time.perf_counter() - started) + "\n\n" + _long_table(long_rows, args)
        print(table)
        if args.markdown:
            args.markdown.write_text(table + "\n")
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
