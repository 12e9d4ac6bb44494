"""Small builders shared by the spine tests."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from sepl_tree.files import write_label_png
from sepl_tree.masks import MaskSet, write_masks_png_folder, write_masks_rle
from sepl_tree.sample import Sample

__all__ = ["Double", "HAS_RAY", "SAM2_DEV", "SHARED_DATA", "VOC_SAMPLE", "make_sample", "masks_from_strings", "needs_ray",
           "needs_sam2_dev", "needs_voc_sample", "write_dataset"]

#: Real data beside the repository (never part of it; tests that use it skip without it).
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
VOC_SAMPLE = SHARED_DATA / "voc2012-sample"
SAM2_DEV = SHARED_DATA / "sam2-voc-val-dev"
needs_voc_sample = pytest.mark.skipif(not (VOC_SAMPLE / "SegmentationClass").is_dir(),
                                      reason="the shared VOC sample (../shared/data/voc2012-sample) is not present")
needs_sam2_dev = pytest.mark.skipif(not (SAM2_DEV / "masks_rle").is_dir(),
                                    reason="the real SAM 2.1 dev set (../shared/data/sam2-voc-val-dev) is not present")


def masks_from_strings(*rows_per_mask: list[str]) -> np.ndarray:
    """Masks from ASCII art: each argument is a list of rows, '#' = in the mask."""
    return np.array([[[c == "#" for c in row] for row in rows] for rows in rows_per_mask], bool)


def make_sample(pseudo, masks, num_classes: int = 21) -> Sample:
    pseudo = np.asarray(pseudo, np.uint8)
    masks = np.asarray(masks, bool).reshape(-1, *pseudo.shape)
    return Sample(pseudo, MaskSet(masks), num_classes)


def write_dataset(root: Path, items: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]],
                  layout: str = "rle") -> tuple[Path, Path, Path]:
    """Write ``{id: (pseudo, masks, gt)}`` as pseudo/, masks/ (rle or png layout) and gt/ folders."""
    pseudo_dir, masks_dir, gt_dir = root / "pseudo", root / "masks", root / "gt"
    masks_dir.mkdir(parents=True, exist_ok=True)
    for image_id, (pseudo, masks, gt) in items.items():
        write_label_png(pseudo_dir / f"{image_id}.png", pseudo)
        maskset = MaskSet(np.asarray(masks, bool))
        if layout == "rle":
            write_masks_rle(masks_dir / f"{image_id}.json", maskset)
        else:
            write_masks_png_folder(masks_dir / image_id, maskset)
        if gt is not None:
            write_label_png(gt_dir / f"{image_id}.png", gt)
    return pseudo_dir, masks_dir, gt_dir


def noise_scenes(count: int, shape: tuple[int, int] = (30, 40), masks: int = 8, label: int = 3,
                 density: float = 0.2, digits: int = 3) -> dict[str, tuple[np.ndarray, np.ndarray, None]]:
    """``{"im000": (pseudo, masks, None), ...}`` for :func:`write_dataset`: class ``label`` on 30 %
    of the pixels, ``masks`` masks each of ``density`` of the pixels, at random (seed 0). Inputs for
    tests of processes and files (kills, interrupts, resume), not of label quality."""
    rng = np.random.default_rng(0)
    return {f"im{i:0{digits}d}": ((rng.random(shape) < 0.3).astype(np.uint8) * label,
                                   rng.random((masks, *shape)) < density, None) for i in range(count)}


HAS_RAY = importlib.util.find_spec("ray") is not None


def needs_ray(test):
    """Mark a test slow (it starts Ray workers) and skip it where Ray is not installed."""
    skip = pytest.mark.skipif(not HAS_RAY, reason="ray not installed (pip install 'sepl-tree[ray]')")
    return pytest.mark.slow(skip(test))


class TwoPartError(Exception):
    """An exception a plugin might define: its ``__init__`` takes other arguments than its ``args``,
    so it cannot be rebuilt from them (unpickled) in another process."""

    def __init__(self, path, problem):
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True)
class Double:
    """A job spec for executor tests: each id n gives ``(n, 2 n)``; it can fail in set-up or on one
    id, raise a :class:`TwoPartError` on one, or kill its own process on one (as the OOM killer would)."""

    fail_setup: bool = False
    fail_on: str = ""
    uses_gpu: bool = False
    ids_per_task: int = 1
    odd_error_on: str = ""
    die_on: str = ""
    odd_setup: bool = False

    def setup(self):
        from sepl_tree.errors import InputError

        if self.fail_setup:
            raise InputError("model.pth", "checkpoint is corrupt")
        if self.odd_setup:
            raise TwoPartError("model.pth", "not a checkpoint")
        return self.double

    def double(self, image_id):
        from sepl_tree.errors import InputError

        if image_id == self.fail_on:
            raise InputError(f"{image_id}.png", "corrupt PNG")
        if image_id == self.odd_error_on:
            raise TwoPartError(f"{image_id}.png", "unreadable")
        if image_id == self.die_on:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGKILL)
        return image_id, 2 * int(image_id)


@dataclass(frozen=True)
class TaskSizes:
    """A job spec whose per-image function has a ``map``: each id comes back as ``(id, ids in its call)``."""

    ids_per_task: int = 1

    def setup(self):
        return _TaskSizesFn()


class _TaskSizesFn:
    def __call__(self, image_id):
        return image_id, 1

    def map(self, ids):
        ids = list(ids)
        return [(image_id, len(ids)) for image_id in ids]
