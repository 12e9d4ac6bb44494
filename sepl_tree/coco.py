"""COCO ground truth: semantic label maps from an instances JSON (pycocotools).

Convention (the usual one for COCO semantic segmentation in WSSS, written down here):

- Classes: the categories sorted by COCO id map to 1..80 (K = 81, see
  :data:`sepl_tree.classes.COCO_CATEGORY_IDS`); 0 is background.
- Overlapping instances: non-crowd instances are painted from the largest (by decoded pixel
  count) to the smallest, so where instances overlap **the smaller instance wins** (a cup on a
  dining table stays a cup); equal areas are painted in annotation-id order, the later id winning.
- Crowd regions (``iscrowd = 1``) are 255 (ignore), except where a non-crowd instance covers the
  pixel, which keeps that instance's class.
- Pixels covered by nothing are background (0). Output ``uint8 (H, W)`` of the image's
  ``height`` x ``width``, written as ``<file_name stem>.png``.

Segmentations may be polygons, uncompressed RLE (``counts`` a list) or compressed RLE.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from sepl_tree.errors import InputError
from sepl_tree.label_maps import IGNORE
from sepl_tree.image_labels import coco_category_map, load_coco_json

__all__ = ["CocoInstances", "annotation_mask", "semantic_label"]


def annotation_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """The ``bool (H, W)`` mask of one COCO ``segmentation`` (polygons or RLE)."""
    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if len(p) >= 6]
        if not polygons:
            return np.zeros((height, width), bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    elif isinstance(segmentation, dict) and "counts" in segmentation:
        rle = dict(segmentation)
        if isinstance(rle["counts"], str):
            rle["counts"] = rle["counts"].encode("ascii")
    else:
        raise ValueError(f"unknown segmentation of type {type(segmentation).__name__}")
    decoded = mask_utils.decode(rle)
    if decoded.shape != (height, width):
        raise ValueError(f"segmentation of size {decoded.shape} in an image of size {(height, width)}")
    return np.ascontiguousarray(decoded, dtype=bool)


def semantic_label(instances: list[tuple[int, int, bool, np.ndarray]], height: int, width: int) -> np.ndarray:
    """Paint ``(annotation id, class, iscrowd, mask)`` instances into a label map (module convention).

    >>> big = np.ones((2, 3), bool)
    >>> small = np.zeros((2, 3), bool); small[0, 0] = True
    >>> crowd = np.zeros((2, 3), bool); crowd[1, 2] = True
    >>> semantic_label([(1, 5, False, small), (2, 7, False, big), (3, 9, True, crowd)], 2, 3).tolist()
    [[5, 7, 7], [7, 7, 7]]
    >>> semantic_label([(3, 9, True, crowd)], 2, 3).tolist()
    [[0, 0, 0], [0, 0, 255]]
    """
    label = np.zeros((height, width), np.uint8)
    for _, _, crowd, mask in instances:
        if crowd:
            label[mask] = IGNORE
    things = [(int(m.sum()), ann_id, cls, m) for ann_id, cls, crowd, m in instances if not crowd]
    for _, _, cls, mask in sorted(things, key=lambda t: (-t[0], t[1])):
        label[mask] = cls
    return label


@dataclass
class CocoInstances:
    """An instances JSON indexed for building one semantic label map per image."""

    path: Path
    catmap: dict[int, int]
    images: dict[str, dict[str, Any]]
    annotations: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> CocoInstances:
        """Read and index ``path``; :class:`InputError` naming it if it is not a COCO instances file."""
        data = load_coco_json(Path(path))
        try:
            catmap = coco_category_map(data["categories"])
            images = {Path(img["file_name"]).stem: img for img in data["images"]}
            by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
            for ann in data["annotations"]:
                by_image[int(ann["image_id"])].append(ann)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(path, f"malformed COCO instances ({type(exc).__name__}: {exc})") from None
        if len(catmap) > 254:
            raise InputError(path, f"{len(catmap)} categories do not fit a uint8 label map")
        return cls(Path(path), catmap, images, dict(by_image))

    @property
    def num_classes(self) -> int:
        """K: the categories plus background."""
        return len(self.catmap) + 1

    def ids(self) -> list[str]:
        """Image ids (``file_name`` stems), sorted."""
        return sorted(self.images)

    def label(self, image_id: str) -> np.ndarray:
        """The semantic label map of image ``image_id`` (a ``file_name`` stem)."""
        if image_id not in self.images:
            raise InputError(self.path, f"no image {image_id!r} in this instances file")
        img = self.images[image_id]
        height, width = int(img["height"]), int(img["width"])
        instances = []
        for ann in self.annotations.get(int(img["id"]), []):
            try:
                cls = self.catmap[int(ann["category_id"])]
                mask = annotation_mask(ann["segmentation"], height, width)
            except (KeyError, TypeError, ValueError) as exc:
                raise InputError(self.path, f"annotation {ann.get('id')} of image {image_id!r}: "
                                            f"{type(exc).__name__}: {exc}") from None
            instances.append((int(ann.get("id", 0)), cls, bool(ann.get("iscrowd", 0)), mask))
        return semantic_label(instances, height, width)
