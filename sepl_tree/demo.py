"""A small synthetic dataset for ``sepl-tree run`` with no inputs (nothing shipped, no network).

Each scene has one to three elliptic objects on a background with a sky band. It comes with:

- ground truth (VOC-like: an ignore band of 255 along object borders);
- a pseudo-label showing the two classic CAM errors: *partial activation* (only a
  discriminative blob of the object) and *false activation* (the object dilated into the
  background), plus an occasional spurious blob;
- SAM-like masks made by :mod:`sepl_tree.synth` from the ground truth and image: whole objects
  with jittered boundaries, parts and sub-parts, masks that *envelop* an object together with
  its surroundings, masks merging neighbouring objects, background "stuff", missed objects;
  each record carries its ``kind`` (so the demo exercises the containment tree).

Everything is drawn from a seeded generator, so the demo is reproducible. It is synthetic:
its numbers say nothing about real data.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from sepl_tree import __version__
from sepl_tree.files import atomic_write_bytes, encode_label_png
from sepl_tree.label_maps import IGNORE, voc_palette
from sepl_tree.masks import MaskSet, write_masks_png_folder, write_masks_rle
from sepl_tree.morphology import dilate, erode
from sepl_tree.provenance import SYNTH_MANIFEST
from sepl_tree.synth import SynthConfig, synthesize_masks

__all__ = ["DEMO_SYNTH", "DemoScene", "make_scene", "write_demo"]

#: How the demo's masks are made (small 160x120 scenes: fewer, larger background segments). Envelopes
#: are rarer than ``synth``'s default 0.3: on these small scenes an envelope adds a quarter to all
#: of an object's area, and at 0.3 they outweigh what ``threshold`` repairs (input 72.4, threshold
#: 70.5 mIoU), which is not what SEPL does on real SAM masks (+13 mIoU on the SAM 2.1 dev set).
DEMO_SYNTH = SynthConfig(envelope_rate=0.1, merge_rate=0.1, stuff_segments=3, min_stuff=0.02)


@dataclass
class DemoScene:
    """One synthetic image with its ground truth, pseudo-label and masks."""

    image: np.ndarray  # uint8 (H, W, 3)
    gt: np.ndarray  # uint8 (H, W)
    pseudo: np.ndarray  # uint8 (H, W)
    masks: MaskSet


def _ellipse(shape: tuple[int, int], cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def make_scene(rng: np.random.Generator, height: int = 120, width: int = 160, num_classes: int = 21) -> DemoScene:
    """Draw one scene (see the module docstring)."""
    shape = (height, width)
    gt = np.zeros(shape, np.uint8)
    sky = np.zeros(shape, bool)
    sky[: height // 3] = True
    objects: list[tuple[int, np.ndarray]] = []
    for _ in range(rng.integers(1, 4)):
        ry, rx = rng.uniform(0.12, 0.25) * height, rng.uniform(0.08, 0.2) * width
        cy, cx = rng.uniform(ry, height - ry), rng.uniform(rx, width - rx)
        region = _ellipse(shape, cy, cx, ry, rx) & ~np.any([o for _, o in objects], axis=0) if objects \
            else _ellipse(shape, cy, cx, ry, rx)
        if region.sum() < 50:
            continue
        k = int(rng.integers(1, num_classes))
        objects.append((k, region))
        gt[region] = k
    border = np.zeros(shape, bool)
    for _, region in objects:
        border |= dilate(region, 1, "diamond") & ~erode(region, 1, "diamond")
    gt[border] = IGNORE

    palette = voc_palette()
    image = np.where(sky[..., None], np.array([150, 190, 235], np.uint8), np.array([90, 120, 70], np.uint8))
    for k, region in objects:
        image[region] = palette[k] // 2 + 100
    image = np.clip(image.astype(np.int16) + rng.integers(-12, 13, image.shape), 0, 255).astype(np.uint8)

    pseudo = np.zeros(shape, np.uint8)
    for k, region in objects:
        error = rng.choice(["partial", "false", "good"], p=[0.45, 0.35, 0.2])
        if error == "partial":  # the discriminative core only
            cam = erode(region, int(rng.integers(3, 8)), "diamond")
            cam = cam if cam.sum() > 20 else region
        elif error == "false":  # activation leaking into the surroundings
            cam = dilate(region, int(rng.integers(4, 10)), "diamond")
        else:
            cam = region
        pseudo[cam & (pseudo == 0)] = k
    if rng.random() < 0.1:  # a spurious activation blob in the background
        blob = _ellipse(shape, rng.uniform(0, height), rng.uniform(0, width), 6, 8) & (gt == 0)
        pseudo[blob] = int(rng.integers(1, num_classes))
    # SAM-like masks from the ground truth and image (sepl_tree.synth: objects, parts, envelopes,
    # merges, stuff, misses, jitter; every record tagged with its kind and synthetic: true)
    masks = synthesize_masks(gt, image, rng, DEMO_SYNTH).masks
    return DemoScene(image, gt, pseudo, masks)


def write_demo(root: Path, n_images: int = 16, seed: int = 0, num_classes: int = 21) -> list[str]:
    """Write a demo dataset under ``root``: ``images/``, ``gt/``, ``pseudo/`` and ``masks/``.

    Masks are in the RLE layout, except every fourth image in amg.py's PNG-folder layout, so
    both readers are exercised; ``masks/synth.json`` says how they were made (``run`` keys its
    resume on it, so a demo made another way is not mistaken for this one). Returns the image ids.
    """
    settings = {"sepl_tree": __version__, "generator": "sepl_tree.demo", "images": n_images, "seed": seed,
                "num_classes": num_classes, "config": asdict(DEMO_SYNTH)}
    ids = [f"demo_{n:03d}" for n in range(n_images)]
    if _already_there(root, settings, ids):  # rewritten, the inputs would be newer than the outputs made from them
        return ids
    (root / "masks").mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(root / "masks" / SYNTH_MANIFEST,
                       json.dumps({"settings": settings, "synthetic": True}, indent=2).encode())
    rng = np.random.default_rng(seed)
    for n, image_id in enumerate(ids):
        scene = make_scene(rng, num_classes=num_classes)
        (root / "images").mkdir(parents=True, exist_ok=True)
        Image.fromarray(scene.image).save(root / "images" / f"{image_id}.jpg", quality=95)
        atomic_write_bytes(root / "gt" / f"{image_id}.png", encode_label_png(scene.gt))
        atomic_write_bytes(root / "pseudo" / f"{image_id}.png", encode_label_png(scene.pseudo))
        (root / "masks").mkdir(parents=True, exist_ok=True)
        if n % 4 == 3:  # the records' tags (synthetic, kind, level, ...) as further metadata.csv columns
            write_masks_png_folder(root / "masks" / image_id, scene.masks, _tag_columns(scene.masks.records))
        else:
            write_masks_rle(root / "masks" / f"{image_id}.json", scene.masks)
    return ids


#: The record fields amg.py's ``metadata.csv`` has columns for (``segmentation`` is the PNG itself).
_AMG_FIELDS = ("segmentation", "area", "bbox", "point_coords", "predicted_iou", "stability_score", "crop_box")


def _tag_columns(records: list[dict]) -> dict[str, list]:
    """The fields of ``records`` that amg.py's ``metadata.csv`` has no column for, one column each,
    those that hold one value per mask (a merge's lists of instances and classes have no column)."""
    names = [k for k in dict.fromkeys(k for r in records for k in r) if k not in _AMG_FIELDS
             and all(isinstance(r.get(k, ""), (bool, int, float, str)) for r in records)]
    return {k: [r.get(k, "") for r in records] for k in names}


def _already_there(root: Path, settings: dict, ids: list[str]) -> bool:
    """Whether ``root`` holds this very demo, every file of it (the demo is the same for the same settings)."""
    try:
        made = json.loads((root / "masks" / SYNTH_MANIFEST).read_text()).get("settings")
    except (OSError, ValueError, AttributeError):
        return False
    if made != json.loads(json.dumps(settings)):
        return False
    return all((root / "images" / f"{i}.jpg").is_file() and (root / "gt" / f"{i}.png").is_file()
               and (root / "pseudo" / f"{i}.png").is_file()
               and ((root / "masks" / i).is_dir() if n % 4 == 3 else (root / "masks" / f"{i}.json").is_file())
               for n, i in enumerate(ids))
