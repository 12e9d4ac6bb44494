"""What Ray costs ``sepl-tree run`` next to the process pool, with and without sized tasks.

Usage::

    python benchmarks/ray_tasks.py [--images 1200] [--workers 2] [--rounds 3] [--root DIR]

On a demo set of ``--images`` images (written under ``--root``, or a temporary folder), the
per-image job of ``sepl-tree run`` (``threshold``; :class:`sepl_tree.pipeline.RunJob`) runs on
``--workers`` workers with three executors, interleaved for ``--rounds`` rounds:

- ``process``: the process pool;
- ``ray``: a local Ray (started once, before the rounds), tasks sized by
  :func:`sepl_tree.executors.task_size` (about 50 ms of work each), as ``sepl-tree run
  --executor ray`` hands them out;
- ``ray, 1 id/task``: the same with one id per task (``BATCH_SECONDS = 0``), as every Ray run
  did before tasks were sized.

Each cell reports images/s from its first result to its last (the pool's and the actors'
start-up left out) and its ratio to ``process`` in the same round. Timings depend on the
machine and its load; quote ratios from one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from sepl_tree import executors
from sepl_tree.demo import write_demo
from sepl_tree.executors import execute
from sepl_tree.inputs import InputConfig
from sepl_tree.pipeline import RunConfig, RunJob

CELLS = {"process": ("process", None), "ray": ("ray", None), "ray, 1 id/task": ("ray", 0.0)}


def images_per_second(root: Path, ids: list[str], executor: str, workers: int) -> float:
    """Images/s of one run from its first result to its last (outputs written to a fresh folder)."""
    out = root / "bench-out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    job = RunJob(RunConfig(InputConfig(root / "pseudo", root / "masks"), out))
    first = last = None
    count = 0
    for _ in execute(job, ids, executor=executor, workers=workers):
        last = time.perf_counter()
        first = first or last
        count += 1
    assert count == len(ids), f"{executor}: {count} results for {len(ids)} ids"
    return (count - 1) / (last - first)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=1200)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--root", type=Path, default=None, help="keep (and reuse) the demo set here")
    args = p.parse_args()
    import ray

    root = args.root or Path(tempfile.mkdtemp(prefix="sepl-ray-tasks-"))
    if not (root / "pseudo").is_dir():
        write_demo(root, n_images=args.images, seed=2)
    ids = sorted(path.stem for path in (root / "pseudo").glob("*.png"))[: args.images]
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    default = executors.BATCH_SECONDS
    print(f"{len(ids)} demo images, {args.workers} workers, {os.cpu_count()} CPUs")
    print("| round | " + " | ".join(f"{name} (img/s, vs process)" for name in CELLS) + " |")
    print("|---" * (len(CELLS) + 1) + "|")
    try:
        for n in range(1, args.rounds + 1):
            speeds = {}
            for name, (executor, batch_seconds) in CELLS.items():
                executors.BATCH_SECONDS = default if batch_seconds is None else batch_seconds
                speeds[name] = images_per_second(root, ids, executor, args.workers)
            cells = [f"{speeds[name]:.0f} ({speeds[name] / speeds['process']:.2f})" for name in CELLS]
            print(f"| {n} | " + " | ".join(cells) + " |", flush=True)
    finally:
        executors.BATCH_SECONDS = default
        ray.shutdown()
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
