"""``sepl-tree synth``'s dataset side: SYNTHETIC masks for every image of a VOC-layout dataset.

Reads ``JPEGImages/<id>.jpg`` and ``SegmentationClass/<id>.png`` (ids from
``ImageSets/Segmentation/*.txt``, else every GT file), makes each image's masks with
:func:`sepl_tree.synth.synthesize_masks` (seeded by the run's seed and the id only, so results do
not depend on order or workers) and writes ``OUT/<id>.json`` in segment-anything's RLE layout,
each record tagged with its ``kind`` and ``"synthetic": true``. ``OUT/synth.json`` says the
masks are synthetic and how they were made; a resumed run must use the same settings.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from sepl_tree.errors import InputError
from sepl_tree.files import atomic_write_bytes, read_png
from sepl_tree.images import find_image, load_image
from sepl_tree.masks import write_masks_rle
from sepl_tree.outputs import claim_folder
from sepl_tree.provenance import SYNTH_MANIFEST
from sepl_tree.synth import KINDS, SynthConfig, SynthResult, synthesize_masks

__all__ = ["MANIFEST", "NOTICE", "SynthJob", "image_rng", "start_manifest", "synth_image", "voc_ids"]

#: The manifest inside the output folder.
MANIFEST = SYNTH_MANIFEST
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


def synth_image(root: Path, image_id: str, seed: int, config: SynthConfig) -> SynthResult:
    """Synthesize the masks of one dataset image (reads its GT and, if there is one, its photo)."""
    gt_path = root / "SegmentationClass" / f"{image_id}.png"
    gt = read_png(gt_path)
    if gt.ndim != 2:
        raise InputError(gt_path, f"GT must be one channel, got {gt.shape}")
    photo = find_image(root / "JPEGImages", image_id)
    image = None if photo is None else load_image(photo, gt.shape)
    return synthesize_masks(gt.astype(np.uint8), image, image_rng(seed, image_id), config)


@dataclass(frozen=True)
class SynthJob:
    """Per-image job of ``synth`` (picklable, for the process pool)."""

    root: Path
    out: Path
    seed: int
    config: SynthConfig

    @property
    def output_folders(self) -> tuple[Path, ...]:
        """Where its workers write (see :class:`sepl_tree.executors.JobSpec`)."""
        return (self.out,)

    def setup(self) -> Callable[[str], tuple[str, dict[str, int], int, int]]:
        def process(image_id: str) -> tuple[str, dict[str, int], int, int]:
            result = synth_image(self.root, image_id, self.seed, self.config)
            write_masks_rle(self.out / f"{image_id}.json", result.masks)
            return image_id, result.counts, result.objects, result.missed

        return process


def start_manifest(out: Path, dataset: Path, seed: int, config: SynthConfig, overwrite: bool = False) -> Path:
    """Claim ``OUT`` for these settings and write ``OUT/synth.json``, which says the masks are
    synthetic and how they were made; a folder made with another seed, config, dataset or
    version is refused in one line (see :func:`sepl_tree.outputs.claim_folder`)."""
    from sepl_tree import __version__

    settings = {"sepl_tree": __version__, "generator": "sepl_tree.synth", "dataset": str(Path(dataset).resolve()),
                "seed": seed, "config": asdict(config)}
    claim_folder(out, MANIFEST, settings, overwrite, lambda d: (p for p in d.glob("*.json") if p.name != MANIFEST))
    doc = {"settings": settings, "synthetic": True, "notice": NOTICE, "kinds": list(KINDS)}
    path = out / MANIFEST
    atomic_write_bytes(path, json.dumps(doc, indent=2).encode())
    return path
