"""Cost of the containment tree: build time against the number of masks, and its share of a run.

Usage::

    python benchmarks/tree_cost.py [--counts 50,100,200,400,800] [--scenes 4] [--repeats 3]
                                   [--images 40] [--masks 100] [--root DIR] [--markdown FILE]

1. *Build time vs masks*: for each count L, ``--scenes`` dense 500x375 scenes with L SAM-like
   masks (the generator of ``benchmarks/run_speed.py``: objects with nested parts and sub-parts,
   large stuff, many small blobs); the best of ``--repeats`` times of
   :func:`sepl_tree.tree.build_tree`, and of ``threshold``'s selection on the same arrays for
   scale, averaged over the scenes. Also the number of box-pruned candidate pairs.
2. *Dense benchmark ratio*: the per-image job of ``sepl-tree run`` (read the pseudo-label,
   decode the RLE masks, select, write; :class:`sepl_tree.pipeline.RunJob`, serial) on the dense
   set of ``run_speed.py`` (``--images`` x ``--masks``), for ``threshold`` alone and for
   ``threshold`` after asking for the tree (this file, loaded as a plugin, registers it as
   ``threshold+tree``: it builds ``sample.tree()``, from the same bits the overlap counts use,
   and ignores it), plus the two tree strategies, with the masks in either layout (``<id>.json`` RLE, ``<id>/<n>.png``).
   Cells are interleaved ``--repeats`` times; the best time of each is reported. The ratio
   "threshold + tree build" / "threshold alone" is the one the issue bounds by 1.3.

Timings depend on the machine and its load; the script prints what it ran on.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sepl_tree import hookimpl
from sepl_tree.registry import Strategy
from sepl_tree.strategies.threshold import threshold

HERE = Path(__file__).resolve().parent


def threshold_after_tree(sample, t1: float = 0.5, t2: float = 0.85):
    """threshold; builds the containment tree first and ignores it (to time the build)."""
    sample.tree()
    return threshold(sample, t1, t2)


@hookimpl
def register_strategies(register):
    register(Strategy("threshold+tree", threshold_after_tree))


def _best(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def build_vs_masks(counts: list[int], scenes: int, repeats: int, seed: int) -> list[dict]:
    sys.path.insert(0, str(HERE))
    from run_speed import make_dense_scene

    from sepl_tree.sample import Sample
    from sepl_tree.tree import _box_overlap, build_tree
    from sepl_tree.masks import mask_to_rle, masks_to_bbox_xywh, rle_to_maskset

    rows = []
    for n in counts:
        rng = np.random.default_rng([seed, n])
        tree_s, thr_s, pairs, edges = [], [], [], []
        for _ in range(scenes):
            pseudo, made = make_dense_scene(rng, n)
            # as `run` reads them from RLE: bits, boxes and areas straight from the runs
            masks = rle_to_maskset([mask_to_rle(m) for m in made.masks], *made.shape, made.records)
            tree_s.append(_best(lambda: build_tree(masks), repeats))
            thr_s.append(_best(lambda: threshold(Sample(pseudo, masks)), repeats))
            area = masks.dense.reshape(len(masks), -1).sum(1)
            ov = _box_overlap(masks_to_bbox_xywh(masks.dense))
            larger = (area[None, :] > area[:, None]) | ((area[None, :] == area[:, None])
                                                        & (np.arange(n)[None, :] > np.arange(n)[:, None]))
            pairs.append(int((larger & (ov >= 0.9 * area[:, None])).sum()))
            edges.append(build_tree(masks).number_of_edges())
        rows.append({"masks": n, "tree_ms": 1000 * np.mean(tree_s), "threshold_ms": 1000 * np.mean(thr_s),
                     "pairs": np.mean(pairs), "all_pairs": n * (n - 1) / 2, "edges": np.mean(edges)})
        print(f"  {n} masks: tree {rows[-1]['tree_ms']:.1f} ms", file=sys.stderr)
    return rows


def dense_ratio(root: Path, n_images: int, n_masks: int, repeats: int, seed: int) -> dict[str, float]:
    sys.path.insert(0, str(HERE))
    from run_speed import LAYOUTS, build_dataset

    from sepl_tree.executors import execute
    from sepl_tree.inputs import InputConfig
    from sepl_tree.pipeline import RunConfig, RunJob

    ids = build_dataset(root, n_images, n_masks, seed)
    strategies = ["threshold", "threshold+tree", "tree-smallest-cover", "tree-residual", "tree-prompt"]
    cells = [(layout, s) for layout in ("rle", "png") for s in strategies]
    best = {cell: float("inf") for cell in cells}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            for layout, s in cells:
                out = Path(tmp) / f"{layout}_{s.replace('+', '_')}"
                inputs = InputConfig(root / "pseudo", root / LAYOUTS[layout], plugins=(str(Path(__file__).resolve()),))
                config = RunConfig(inputs, out, strategy=s, overwrite=True)
                start = time.perf_counter()
                for _ in execute(RunJob(config), ids, executor="serial"):
                    pass
                best[(layout, s)] = min(best[(layout, s)], time.perf_counter() - start)
    return {cell: 1000 * t / len(ids) for cell, t in best.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="50,100,200,400,800")
    parser.add_argument("--scenes", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--masks", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=Path, default=None, help="where to keep the dense set (default: a temp dir)")
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("SEPL_TREE_DISABLE_PLUGIN_AUTOLOAD", "1")

    counts = [int(c) for c in args.counts.split(",")]
    print("tree build vs number of masks ...", file=sys.stderr)
    rows = build_vs_masks(counts, args.scenes, args.repeats, args.seed)
    print("dense benchmark ...", file=sys.stderr)
    if args.root is None:
        with tempfile.TemporaryDirectory() as tmp:
            job = dense_ratio(Path(tmp), args.images, args.masks, args.repeats, args.seed)
    else:
        job = dense_ratio(args.root, args.images, args.masks, args.repeats, args.seed)

    lines = [f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python "
             f"{platform.python_version()}, numpy {np.__version__}; 500x375 masks, column-major as decoded from RLE.",
             "",
             f"Tree build per image vs number of masks ({args.scenes} dense scenes each, best of {args.repeats}):",
             "",
             "| masks | build_tree (ms) | threshold select (ms) | box-pruned candidate pairs | all pairs | tree edges |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['masks']} | {r['tree_ms']:.1f} | {r['threshold_ms']:.1f} | {r['pairs']:.0f} | "
                     f"{r['all_pairs']:.0f} | {r['edges']:.0f} |")
    lines += ["",
              f"Dense benchmark (`run_speed.py` set: {args.images} images x {args.masks} masks; the `run` job per "
              f"image: read, decode, select, write; serial, best of {args.repeats}):",
              "",
              "| masks | strategy | ms / image | vs threshold |",
              "|---|---|---:|---:|"]
    for (layout, s), ms in job.items():
        lines.append(f"| {layout} | {s} | {ms:.1f} | {ms / job[(layout, 'threshold')]:.2f}x |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
