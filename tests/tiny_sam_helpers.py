"""What the SAM tests share: the tiny model plugins, test images and the ``masks`` command line."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image

__all__ = ["H", "KEEP_ALL", "KEEP_ALL_SETTINGS", "TINY", "TINY_SAM2", "W", "blobs", "load_plugin", "masks_args",
           "write_images"]

TINY = Path(__file__).with_name("tiny_sam.py")
TINY_SAM2 = Path(__file__).with_name("tiny_sam2.py")
H, W = 40, 56
#: Keep every mask the random model makes: 4x4 points x 3 outputs = 48 masks per image.
KEEP_ALL = ["-p", "points_per_side=4", "-p", "pred_iou_thresh=0", "-p", "stability_score_thresh=0",
            "-p", "box_nms_thresh=1"]
KEEP_ALL_SETTINGS = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0,
                     "box_nms_thresh": 1.0}


def load_plugin(path: Path) -> ModuleType:
    """A tiny-model plugin file as a module (as ``--plugin`` loads it)."""
    spec = importlib.util.spec_from_file_location(f"{path.stem}_for_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def blobs(seed: int, h: int = H, w: int = W) -> np.ndarray:
    """A test image: noisy grey with three coloured discs."""
    r = np.random.default_rng(seed)
    img = (128 + r.integers(0, 20, (h, w, 3))).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(3):
        cy, cx, rad = r.integers(0, h), r.integers(0, w), r.integers(5, 15)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < rad**2] = r.integers(0, 255, 3)
    return img


def write_images(folder: Path) -> Path:
    """``img0..img2.png`` of ``H x W`` and ``img3.jpg`` of 32 x 48."""
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(3):
        Image.fromarray(blobs(n)).save(folder / f"img{n}.png")
    Image.fromarray(blobs(9, 32, 48)).save(folder / "img3.jpg", quality=95)
    return folder


def masks_args(images: Path, checkpoint: Path, out: Path, model_type: str, plugin: Path, *extra: str) -> list[str]:
    """``sepl-tree masks`` arguments keeping every mask, on one torch thread unless ``extra`` says otherwise."""
    args = ["masks", "--images", str(images), "--checkpoint", str(checkpoint), "--model-type", model_type,
            "--plugin", str(plugin), "--out", str(out), *KEEP_ALL, *extra]
    if "--threads" not in extra:
        args += ["--threads", "1"]
    return args
