"""Benchmark SAM mask generation: the stock generator against sepl-tree's fast engine, on one GPU.

One command, prepared to run as it is on a GPU machine (at most about 6 minutes on an H200)::

    python benchmarks/sam_gpu.py --image-dir VOC2012/JPEGImages --images 20 --json sam_gpu.json

For each model (default: SAM ViT-H and SAM 2.1 Hiera-L with random weights; the speed of a
network does not depend on its weights, only the number of masks that survive the filters
does) it runs, on the same images read from disk and written to a scratch folder:

- ``stock``: the library's generator, one image at a time, fp32, as ``sepl-tree masks`` always
  ran it (read, generate binary masks, encode and write them, in series);
- ``fast`` at fp32 (the same records; the table says how many are bit-identical to stock's)
  and at bf16 (the share of its masks matching an fp32 mask at IoU >= 0.98);

at the paper preset and at ``keep-all`` (no filter, no NMS: every mask of every prompt, the
worst case for post-processing and writing; random weights leave few masks at the paper
preset). Each row reports images/s, masks/image, peak GPU memory and where the time goes:
encoder, decoder and post-processing on the device (CUDA events), reading and writing (host
threads for the fast engine, in series for stock), and the GPU's idle share (wall time not
covered by device work). Every row stops after ``--budget`` seconds of images.

``--checkpoint MODEL=PATH`` uses real weights instead. On the CPU it runs with the tests'
tiny models (``tests/test_sam_bench.py`` does, small)::

    python benchmarks/sam_gpu.py --models tiny,tiny-sam2 --plugin tests/tiny_sam.py \\
        --plugin tests/tiny_sam2.py --device cpu --images 2 --size 40x56 --param points_per_side=4
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

#: Dataset sizes for the GPU-hours columns.
DATASETS = {"VOC train_aug": 10_582, "COCO train": 82_081}
#: No filter, no NMS: every mask of every point prompt.
KEEP_ALL = {"pred_iou_thresh": 0.0, "stability_score_thresh": 0.0, "box_nms_thresh": 1.0}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="vit_h,sam2.1_hiera_l", help="model types, comma-separated")
    p.add_argument("--checkpoint", action="append", default=[], metavar="MODEL=PATH",
                   help="real weights for a model (default: random weights)")
    p.add_argument("--plugin", action="append", default=[], help="plugin registering a model type")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--image-dir", help="real images, the first --images by id (default: synthetic ones)")
    p.add_argument("--images", type=int, default=20)
    p.add_argument("--size", default="375x500", help="HxW of synthetic images")
    p.add_argument("--presets", default="paper,keep-all")
    p.add_argument("--param", action="append", default=[], help="NAME=VALUE over every preset")
    p.add_argument("--batch-images", default=None,
                   help="fast engine, comma-separated sizes (fp32 rows for each, bf16 for the last; "
                        "default: 4 on a GPU, 1 on the CPU)")
    p.add_argument("--point-batch", type=int, default=None, help="fast engine (default: sized to the free memory)")
    p.add_argument("--budget", type=float, default=25.0, help="seconds of images per row at most")
    p.add_argument("--repeats", type=int, default=1, help="run each row this many times, keep the fastest")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--markdown", help="also write the table here, as Markdown")
    return p.parse_args(argv)


def _image_files(args: argparse.Namespace, scratch: Path) -> dict[str, Path]:
    """Id -> file: the first images of ``--image-dir``, or synthetic PNGs of smooth random blobs."""
    from PIL import Image

    from sepl_tree.images import find_images

    if args.image_dir:
        return dict(list(find_images(Path(args.image_dir)).items())[: args.images])
    h, w = (int(v) for v in args.size.lower().split("x"))
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:h, :w]
    files = {}
    for n in range(args.images):
        img = np.full((h, w, 3), 128, np.uint8)
        for _ in range(6):
            cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(min(h, w) // 10, min(h, w) // 3 + 1)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 255, 3)
        files[f"synthetic{n:03d}"] = scratch / f"synthetic{n:03d}.png"
        Image.fromarray(img).save(files[f"synthetic{n:03d}"])
    return files


def _load_model(model_type: str, checkpoint: str | None, plugins: list[str], device: str) -> tuple[Any, str]:
    import torch

    from sepl_tree.plugins import load_host
    from sepl_tree.sam.models import family_of

    build = load_host(plugins).sam_model(model_type)
    torch.manual_seed(0)
    return build(checkpoint).to(device).eval(), family_of(build)


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _peak_reset(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float:
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else float("nan")


def _timed(timer: Any, name: str, fn: Any) -> Any:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        with timer.stage(name):
            return fn(*args, **kwargs)

    return wrapped


def _stock_row(model: Any, family: str, settings: dict, files: dict[str, Path], out: Path, device: str,
               budget: float) -> tuple[dict, list[str]]:
    """The library's generator as ``sepl-tree masks`` ran it: read, generate binary masks, encode, write."""
    from sepl_tree.masks import write_masks_rle
    from sepl_tree.sam.generator import generate_maskset, stock_generator
    from sepl_tree.images import load_image
    from sepl_tree.sam.timing import StageTimer

    # Warm-up, untimed: the same model calls, but every mask filtered out at once (the stock
    # generator's post-processing of a keep-all image can take seconds).
    warm = stock_generator(model, settings, family, output_mode="binary_mask")
    warm.pred_iou_thresh = math.inf  # beyond what settings may say (SAM's IoU head can pass 1)
    generate_maskset(warm, load_image(next(iter(files.values()))))
    generator = stock_generator(model, settings, family, output_mode="binary_mask")
    timer, predictor = StageTimer(device), generator.predictor
    predict = "_predict" if family == "sam2" else "predict_torch"
    predictor.set_image = _timed(timer, "encoder", predictor.set_image)  # the crop's preprocessing and encoder
    setattr(predictor, predict, _timed(timer, "decoder", getattr(predictor, predict)))
    host = {"read": 0.0, "generate": 0.0, "write": 0.0}
    done, masks = [], 0
    _sync(device)
    start = time.perf_counter()
    for image_id, path in files.items():
        t0 = time.perf_counter()
        image = load_image(path)
        t1 = time.perf_counter()
        maskset = generate_maskset(generator, image)
        _sync(device)
        t2 = time.perf_counter()
        write_masks_rle(out / f"{image_id}.json", maskset)
        t3 = time.perf_counter()
        for name, seconds in (("read", t1 - t0), ("generate", t2 - t1), ("write", t3 - t2)):
            host[name] += seconds
        done.append(image_id)
        masks += len(maskset)
        if t3 - start > budget:
            break
    wall = time.perf_counter() - start
    device_time = timer.collect()
    stages = {**device_time, "postprocess": host["generate"] - sum(device_time.values()), "read": host["read"],
              "write": host["write"]}
    return _row("stock", "fp32", 1, done, masks, wall, stages, device), done


def _fast_row(model: Any, family: str, settings: dict, files: dict[str, Path], out: Path, device: str,
              budget: float, precision: str, batch_images: int, point_batch: int | None = None
              ) -> tuple[dict, list[str]]:
    """sepl-tree's fast engine over the same files: pipelined, batched, post-processing on the device."""
    from sepl_tree.sam.fast import FastMaskGenerator
    from sepl_tree.images import load_image
    from sepl_tree.sam.workers import FastWorker

    generator = FastMaskGenerator(model, family, settings, precision, batch_images, point_batch)
    first = generator.prepare(load_image(next(iter(files.values()))))
    generator.generate([first] * batch_images)  # warm-up at the batch size, untimed
    generator.timer.take()
    worker = FastWorker(generator, files, out, "rle", batch_images)
    stages: dict[str, float] = {}
    done, masks = [], 0
    _sync(device)
    start = time.perf_counter()
    for result in worker.map(list(files)):
        if result.error is not None:
            raise RuntimeError(f"{result.image_id}: {result.error}")
        for name, seconds in result.stages.items():
            stages[name] = stages.get(name, 0.0) + seconds
        done.append(result.image_id)
        masks += result.n_masks
        if time.perf_counter() - start > budget:
            break
    _sync(device)
    wall = time.perf_counter() - start
    row = _row("fast", precision, batch_images, done, masks, wall, stages, device)
    row["point_batch"] = max(generator.point_batches_used)
    return row, done


def _row(engine: str, precision: str, batch: int, done: list[str], masks: int, wall: float, stages: dict,
         device: str) -> dict:
    # Device time: the fast engine times its post-processing on the device; stock's is mostly host work.
    device_stages = ("encoder", "decoder", "postprocess") if engine == "fast" else ("encoder", "decoder")
    busy = sum(stages.get(k, 0.0) for k in device_stages)
    return {"engine": engine, "precision": precision, "batch_images": batch, "images": len(done),
            "seconds": round(wall, 3), "images_per_s": len(done) / wall if wall else 0.0,
            "masks_per_image": masks / max(1, len(done)), "peak_gpu_gib": _peak_gib(device),
            "stage_seconds": {k: round(v, 3) for k, v in sorted(stages.items())},
            "gpu_idle_share": round(max(0.0, 1 - busy / wall), 3) if wall and device == "cuda" else None}


def _records(folder: Path, ids: list[str]) -> Iterator[tuple[str, list[dict]]]:
    for image_id in ids:
        yield image_id, json.loads((folder / f"{image_id}.json").read_text())


def _agreement(reference: Path, candidate: Path, ids: list[str]) -> dict:
    """Exact records (the stock generator's fields, in order) and masks matched at IoU >= 0.98."""
    from sepl_tree.sam.agreement import exact_records, match_counts

    exact = matched = total = reference_total = 0
    for (image_id, ref), (_, cand) in zip(_records(reference, ids), _records(candidate, ids), strict=True):
        h, w = (ref or cand or [{"segmentation": {"size": [1, 1]}}])[0]["segmentation"]["size"]
        exact += exact_records(ref, cand)
        m, t = match_counts(ref, cand, h, w)
        matched, total, reference_total = matched + m, total + t, reference_total + len(ref)
    return {"against_images": len(ids), "exact_records": exact, "reference_masks": reference_total,
            "matched_at_0.98": matched, "masks": total, "match_share": matched / total if total else None}


def _best(run: Any, repeats: int, device: str) -> tuple[dict, list[str], Path]:
    """The fastest of ``repeats`` runs of a row (each writes into a fresh folder)."""
    best = None
    for _ in range(max(1, repeats)):
        _peak_reset(device)
        found = run()
        if best is None or found[0]["images_per_s"] > best[0]["images_per_s"]:
            best = found
    return best


def _model_rows(model_type: str, model: Any, family: str, files: dict, args: argparse.Namespace, device: str,
                scratch: Path) -> list[dict]:
    """Every (preset, engine, precision, batch) row of one model, with the agreements between them.

    fp32 fast rows are compared with the stock row (exact records), the bf16 row with the fp32
    fast row of the same batch size (masks matched at IoU >= 0.98).
    """
    from sepl_tree.sam.presets import generator_settings

    overrides = dict(item.split("=", 1) for item in args.param)
    batches = [int(b) for b in (args.batch_images or ("4" if device == "cuda" else "1")).split(",")]
    runs = [("stock", "fp32", 1)] + [("fast", "fp32", b) for b in batches] + [("fast", "bf16", batches[-1])]
    rows = []
    for preset in args.presets.split(","):
        settings = generator_settings("paper", {**KEEP_ALL, **overrides} if preset == "keep-all" else overrides, family)
        outs: dict[tuple[str, str, int], Path] = {}
        for engine, precision, batch in runs:

            def run(engine: str = engine, precision: str = precision, batch: int = batch) -> tuple[dict, list, Path]:
                out = Path(tempfile.mkdtemp(dir=scratch))
                if engine == "stock":
                    return (*_stock_row(model, family, settings, files, out, device, args.budget), out)
                return (*_fast_row(model, family, settings, files, out, device, args.budget, precision, batch,
                                   args.point_batch), out)

            row, done, outs[engine, precision, batch] = _best(run, args.repeats, device)
            row.update(model=model_type, preset=preset, done_ids=done)
            if engine == "fast":
                reference = outs["stock", "fp32", 1] if precision == "fp32" else outs["fast", "fp32", batch]
                shared = [i for i in done if (reference / f"{i}.json").is_file()]
                row["agreement"] = {"with": "stock-fp32" if precision == "fp32" else "fast-fp32",
                                    **_agreement(reference, outs[engine, precision, batch], shared)}
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "done_ids"}), file=sys.stderr, flush=True)
        stock_speed = rows[-len(runs)]["images_per_s"]
        for row in rows[-len(runs):]:
            row["speedup_vs_stock"] = row["images_per_s"] / stock_speed if stock_speed else None
    return rows


COLUMNS = ("model", "preset", "engine", "precision", "images/s", "vs stock", "masks/image", "peak GPU GiB",
           "encoder", "decoder", "post-processing", "read", "write", "GPU idle", "same as reference",
           *(f"hours for {name}" for name in DATASETS))


def _cells(r: dict) -> list[str]:
    """One row of the table: per-image milliseconds of each stage, agreement, GPU-hours for the datasets."""
    s, a, n = r["stage_seconds"], r.get("agreement"), max(1, r["images"])
    ms = [f"{1000 * s.get(k, 0.0) / n:.0f} ms" for k in ("encoder", "decoder", "postprocess", "read", "write")]
    if a is None:
        same = ""
    elif not a["masks"] and not a["reference_masks"]:
        same = "no masks to compare"  # (random weights at the paper preset keep none)
    elif r["precision"] == "fp32":
        same = f"{a['exact_records']}/{a['reference_masks']} records exact"
        if a["masks"] != a["reference_masks"]:
            same += f", {a['masks']} written"
    else:
        same = f"{100 * (a['match_share'] or 0):.1f}% at IoU >= 0.98 ({a['matched_at_0.98']}/{a['masks']})"
    hours = [f"{count / r['images_per_s'] / 3600:.1f}" if r["images_per_s"] else "" for count in DATASETS.values()]
    idle = "" if r["gpu_idle_share"] is None else f"{100 * r['gpu_idle_share']:.0f}%"
    engine = r["engine"] if r["engine"] == "stock" else f"fast, {r['batch_images']} img x {r['point_batch']} pts"
    peak = "" if r["peak_gpu_gib"] != r["peak_gpu_gib"] else f"{r['peak_gpu_gib']}"  # NaN: not on a GPU
    return [r["model"], r["preset"], engine, r["precision"], f"{r['images_per_s']:.2f}",
            f"{r.get('speedup_vs_stock') or 0:.2f}x", f"{r['masks_per_image']:.0f}", peak, *ms, idle,
            same, *hours]


def markdown(rows: list[dict]) -> str:
    """The table as Markdown (for README)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    return "\n".join(lines + ["| " + " | ".join(_cells(r)) + " |" for r in rows]) + "\n"


def _table(rows: list[dict], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for column in COLUMNS:
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(*_cells(r))
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    from rich.console import Console

    from sepl_tree.errors import SeplError
    from sepl_tree.sam.job import resolve_device

    checkpoints = dict(item.split("=", 1) for item in args.checkpoint)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="sam-bench-") as tmp:
        scratch = Path(tmp)
        try:
            device = resolve_device(args.device)
            files = _image_files(args, scratch)
            for model_type in args.models.split(","):
                started = time.perf_counter()
                model, family = _load_model(model_type, checkpoints.get(model_type), args.plugin, device)
                print(f"{model_type}: built in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
                rows += _model_rows(model_type, model, family, files, args, device, scratch)
                del model
        except (SeplError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    where = torch.cuda.get_device_name() if device == "cuda" else (platform.processor() or "cpu")
    weights = "real" if checkpoints else "random"
    title = f"SAM mask generation on {where}, {len(files)} images, {weights} weights"
    Console(width=250).print(_table(rows, title))
    if args.markdown:
        Path(args.markdown).write_text(f"{title}\n\n{markdown(rows)}")
    if args.json:
        meta = {"device": where, "torch": torch.__version__, "images": len(files), "weights": weights,
                "image_dir": args.image_dir, "budget_s": args.budget, "datasets": DATASETS}
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
