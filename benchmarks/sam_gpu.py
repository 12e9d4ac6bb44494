"""Benchmark SAM mask generation: images/s for each preset and ``points_per_batch``.

For the day a GPU is at hand (see docs/sam.md)::

    python benchmarks/sam_gpu.py --checkpoint sam_vit_h_4b8939.pth --model-type vit_h \\
        --image-dir VOC2012/JPEGImages --images 50 --json sam_gpu.json

Without ``--image-dir`` it times synthetic images of ``--size``. The model is loaded once;
each (preset, batch) setting gets ``--warmup`` untimed images first, and the GPU is
synchronised around the timed loop. Runs on CPU too (``--device cpu``), which is how the
tests smoke-test it with a tiny model.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np


def _images(args: argparse.Namespace) -> list[np.ndarray]:
    from sepl_tree.sam import find_images, load_image

    if args.image_dir:
        paths = list(find_images(Path(args.image_dir)).values())[: args.images]
        return [load_image(p) for p in paths]
    h, w = (int(v) for v in args.size.lower().split("x"))
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:h, :w]
    images = []
    for _ in range(args.images):  # smooth random blobs, so SAM has regions to find
        img = np.full((h, w, 3), 128, np.uint8)
        for _ in range(6):
            cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(min(h, w) // 10, min(h, w) // 3)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 255, 3)
        images.append(img)
    return images


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def _time_setting(model, settings: dict, images: list[np.ndarray], device: str, warmup: int) -> dict:
    import torch

    from sepl_tree.sam import build_generator, generate_maskset

    generator = build_generator(model, settings)
    for image in images[:warmup]:
        generate_maskset(generator, image)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    _sync(device)
    start = time.perf_counter()
    masks = [len(generate_maskset(generator, image)) for image in images]
    _sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    return {"images": len(images), "seconds": round(seconds, 3), "images_per_s": len(images) / seconds,
            "masks_per_image": float(np.mean(masks)), "peak_gpu_gib": round(peak, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--model-type", default="vit_h")
    parser.add_argument("--plugin", action="append", default=[], help="plugin registering --model-type")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--image-dir", help="real images (default: synthetic ones)")
    parser.add_argument("--images", type=int, default=20, help="images timed per setting")
    parser.add_argument("--size", default="480x640", help="HxW of synthetic images")
    parser.add_argument("--presets", default="paper,sam-default,heavy")
    parser.add_argument("--points-per-batch", default="32,64,128,256")
    parser.add_argument("--param", action="append", default=[], help="NAME=VALUE over every preset")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    import torch
    from rich.console import Console
    from rich.table import Table

    from sepl_tree.errors import SeplError
    from sepl_tree.sam import MaskJob, check_settings, generator_settings, resolve_device

    try:
        device = resolve_device(args.device)
        overrides = dict(item.split("=", 1) for item in args.param)
        batches = [int(b) for b in args.points_per_batch.split(",")]
        presets = []
        for preset in args.presets.split(","):
            try:
                check_settings(generator_settings(preset, overrides))
                presets.append(preset)
            except SeplError as exc:
                print(f"skipping preset {preset}: {exc}", file=sys.stderr)
        model = MaskJob({}, Path("."), args.model_type, Path(args.checkpoint), device=device,
                        plugins=tuple(args.plugin)).load_model()
        images = _images(args)
    except (SeplError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = []
    for preset in presets:
        for batch in batches:
            settings = generator_settings(preset, {**overrides, "points_per_batch": batch})
            row = {"preset": preset, "points_per_batch": batch,
                   **_time_setting(model, settings, images, device, args.warmup)}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    gpu = torch.cuda.get_device_name() if device == "cuda" else platform.processor() or "cpu"
    table = Table(title=f"SAM {args.model_type} on {gpu}, {len(images)} images of "
                        f"{images[0].shape[0]}x{images[0].shape[1]}")
    for column in ("preset", "points_per_batch", "images/s", "masks/image", "peak GPU GiB"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(r["preset"], str(r["points_per_batch"]), f"{r['images_per_s']:.2f}",
                      f"{r['masks_per_image']:.1f}", f"{r['peak_gpu_gib']:.2f}")
    Console().print(table)
    if args.json:
        meta = {"model_type": args.model_type, "device": gpu, "torch": torch.__version__,
                "images": len(images), "size": list(images[0].shape[:2])}
        Path(args.json).write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
