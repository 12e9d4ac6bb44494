"""Start-up cost of ``sepl-tree run``: the whole process on one image, wall time and peak RSS.

Usage::

    python benchmarks/run_startup.py [--python PY ...] [--runs 9] [--masks 100] [--root DIR]
                                     [--markdown FILE]

It builds a tiny dataset itself (one 500x375 palette pseudo-label and ``--masks`` SAM-like masks in
segment-anything's RLE JSON layout), then runs ``sepl-tree run --pseudo-labels ... --masks ...
--out ...`` through each ``--python`` given (default: this interpreter) ``--runs`` times,
interleaved, each into a fresh output folder, and reports the median and the best wall time and
peak resident memory of the whole process.

It only calls the command line (``PY -m sepl_tree run``), never the library, so it measures any
installed version, old package layouts included: give the ``python`` of each virtual
environment to compare, e.g. ``--python /work/wt/old/.venv/bin/python --python .venv/bin/python``.
The dataset is built with numpy, Pillow and pycocotools alone (no ``sepl_tree`` import), so the
script runs under any interpreter that has them.

Wall time is from ``fork`` to ``wait``; CPU time (user + system) and peak RSS are the child's
``ru_utime + ru_stime`` and ``ru_maxrss`` as ``os.wait4`` reports them for that one process (with
one worker ``run`` starts no other process). CPU time depends less on other load on the machine
than wall time does. Bytecode is cached (``PYTHONPYCACHEPREFIX`` in the scratch folder, filled by
one unmeasured run per interpreter), as it is in any installation after its first run, even
where ``PYTHONDONTWRITEBYTECODE`` is set. The output label maps of every run are checked to be
byte-identical.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HEIGHT, WIDTH = 375, 500
IMAGE_ID = "2007_000032"
DATASET_VERSION = 1


# ------------------------------------------------------------------------------ the dataset


def _ellipse(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    cy, cx = rng.uniform(0, HEIGHT), rng.uniform(0, WIDTH)
    ry, rx = rng.uniform(5, HEIGHT / 3), rng.uniform(5, WIDTH / 3)
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def build_dataset(root: Path, n_masks: int, seed: int = 0) -> tuple[Path, Path]:
    """``root/pseudo/<id>.png`` (VOC palette, 3 classes and a 255 band) and ``root/masks/<id>.json``."""
    from PIL import Image
    from pycocotools import mask as coco_mask

    pseudo_dir, masks_dir = root / "pseudo", root / "masks"
    stamp = root / "dataset.json"
    wanted = {"version": DATASET_VERSION, "masks": n_masks, "seed": seed}
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        return pseudo_dir, masks_dir
    shutil.rmtree(root, ignore_errors=True)
    pseudo_dir.mkdir(parents=True)
    masks_dir.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    label = np.zeros((HEIGHT, WIDTH), np.uint8)
    for cls in (3, 12, 15):
        label[_ellipse(rng)] = cls
    label[200:206, :] = 255
    palette = [0] * 768
    for i in range(256):  # the VOC colour map
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[3 * i: 3 * i + 3] = [r, g, b]
    img = Image.frombytes("P", (WIDTH, HEIGHT), label.tobytes())
    img.putpalette(palette)
    img.save(pseudo_dir / f"{IMAGE_ID}.png")
    records = []
    for _ in range(n_masks):
        mask = _ellipse(rng)
        rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
        ys, xs = np.nonzero(mask)
        box = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
        records.append({"segmentation": {"size": rle["size"], "counts": rle["counts"].decode()},
                        "area": int(mask.sum()), "bbox": box, "predicted_iou": float(rng.uniform(0.86, 1)),
                        "point_coords": [[float(xs[0]), float(ys[0])]], "stability_score": float(rng.uniform(0.92, 1)),
                        "crop_box": [0.0, 0.0, float(WIDTH), float(HEIGHT)]})
    (masks_dir / f"{IMAGE_ID}.json").write_text(json.dumps(records))
    stamp.write_text(json.dumps(wanted))
    return pseudo_dir, masks_dir


# ------------------------------------------------------------------------------ one run


def run_once(python: str, pseudo: Path, masks: Path, out: Path) -> tuple[float, float, float, bytes]:
    """Run ``sepl-tree run`` once through ``python``: ``(wall s, CPU s, peak RSS MiB, output PNG)``."""
    shutil.rmtree(out, ignore_errors=True)
    args = [python, "-m", "sepl_tree", "run", "--pseudo-labels", str(pseudo), "--masks", str(masks),
            "--out", str(out), "--strategy", "threshold"]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    # Bytecode cached as in any installation after its first run, but under the scratch folder,
    # so that nothing is written into the trees measured.
    env.update(SEPL_TREE_NO_PROGRESS="1", PYTHONPYCACHEPREFIX=str(out.parent / "pycache"))
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err, cwd=out.parent)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, unlike RUSAGE_CHILDREN
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            raise SystemExit(f"{python}: sepl-tree run failed ({proc.returncode}):\n{err.read().decode(errors='replace')}")
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 1024, (out / f"{IMAGE_ID}.png").read_bytes()


def _describe(python: str) -> str:
    code = "import sys, numpy; print(sys.version.split()[0], numpy.__version__)"
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return f"Python {out[0]}, numpy {out[1]}"


def _machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} CPUs"


def _label(python: str) -> str:
    path = Path(python).absolute()
    venv = path.parent.parent if path.parent.name == "bin" else path.parent
    return str(venv)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append", help="interpreter of a venv with sepl-tree (repeatable; "
                                                          "default: this one)")
    parser.add_argument("--runs", type=int, default=9, help="runs per interpreter (median and best reported)")
    parser.add_argument("--masks", type=int, default=100, help="SAM-like masks in the one image")
    parser.add_argument("--root", type=Path, help="where to build the dataset (default: a temporary folder)")
    parser.add_argument("--markdown", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    pythons = [os.path.abspath(p) for p in args.python or [sys.executable]]  # not resolved: a venv's python is a link

    scratch = Path(tempfile.mkdtemp(prefix="sepl-startup-"))
    try:
        pseudo, masks = build_dataset(args.root or scratch / "data", args.masks)
        with open("/proc/loadavg") as f:
            load_before = f.read().split()[0]
        walls: dict[str, list[float]] = {p: [] for p in pythons}
        cpus: dict[str, list[float]] = {p: [] for p in pythons}
        rss: dict[str, list[float]] = {p: [] for p in pythons}
        outputs: dict[str, set[str]] = {p: set() for p in pythons}
        for p in pythons:  # one unmeasured run each: the first imports compile and fill the page cache
            run_once(p, pseudo, masks, scratch / "warm")
        for _ in range(args.runs):
            for p in pythons:
                wall, cpu, peak, png = run_once(p, pseudo, masks, scratch / "out")
                walls[p].append(wall)
                cpus[p].append(cpu)
                rss[p].append(peak)
                outputs[p].add(hashlib.sha256(png).hexdigest())
        with open("/proc/loadavg") as f:
            load_after = f.read().split()[0]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    digests = set().union(*outputs.values())
    lines = [
        f"`sepl-tree run` on one 500x375 image with {args.masks} RLE masks (`threshold`, 1 worker), whole "
        f"process; median (best) of {args.runs} runs per interpreter, interleaved; {_machine()}; load "
        f"average {load_before} before, {load_after} after.",
        "",
        "| venv | interpreter | wall s, median (best) | CPU s, median (best) | peak RSS MiB, median (max) |",
        "|---|---|---:|---:|---:|",
    ]
    for p in pythons:
        lines.append(f"| `{_label(p)}` | {_describe(p)} | {statistics.median(walls[p]):.3f} ({min(walls[p]):.3f}) "
                     f"| {statistics.median(cpus[p]):.3f} ({min(cpus[p]):.3f}) "
                     f"| {statistics.median(rss[p]):.0f} ({max(rss[p]):.0f}) |")
    if len(pythons) > 1:
        first, last = pythons[0], pythons[-1]
        ratio = {name: statistics.median(v[last]) / statistics.median(v[first])
                 for name, v in (("wall", walls), ("CPU", cpus), ("peak RSS", rss))}
        lines += ["", "Last / first (medians): " + ", ".join(f"{k} {v:.2f}x" for k, v in ratio.items())
                  + f"; first / last: wall {1 / ratio['wall']:.1f}x, peak RSS {1 / ratio['peak RSS']:.1f}x."]
    lines += ["", "Outputs: " + ("byte-identical across interpreters and runs." if len(digests) == 1
                                 else f"DIFFER ({len(digests)} distinct PNGs).")]
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if len(digests) != 1:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
