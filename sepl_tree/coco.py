"""COCO ground truth: semantic label maps from an instances JSON (pycocotools).

Convention (COCO's instances as WSSS methods score them; the published scripts differ, so the
rule is named):

- Classes: the categories sorted by COCO id map to 1..80 (K = 81, see
  :data:`sepl_tree.classes.COCO_CATEGORY_IDS`); 0 is background. Output ``uint8 (H, W)`` of
  the image's ``height`` x ``width``, written as ``<file_name stem>.png``.
- Where instances overlap, and crowds (``iscrowd = 1``), by :data:`RULES`:

  - ``recam`` (the default): the rule of ReCAM's ``mscoco/annToMask.py``, the one public
    script of a WSSS method that makes COCO label maps (CLIMS's COCO loaders read its files;
    LPCAM and SPCL-WSSS tell their users to run it). Non-crowd instances are painted in the
    file's order, a later one over an earlier; crowds are not painted (their pixels stay
    background); nothing is 255.
  - ``smaller-wins``: non-crowd instances are painted from the largest (by decoded pixel count)
    to the smallest, so the smaller instance wins (a cup on a dining table stays a cup); equal
    areas in annotation-id order, the later id winning. Crowd regions are 255 (ignore), except
    where a non-crowd instance covers the pixel, which keeps that instance's class.

- Pixels covered by nothing are background (0).

Segmentations may be polygons, uncompressed RLE (``counts`` a list) or compressed RLE.

:meth:`CocoInstances.load` checks every image, category and annotation before any label map is
made (sizes, ids, references, segmentation structure; see ``docs/readers.md``), so a bad file
is refused in one line naming it and the entry before anything is written.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from sepl_tree.errors import InputError
from sepl_tree.files import check_pixels
from sepl_tree.label_maps import IGNORE
from sepl_tree.masks import rle_to_bits, rle_to_masks
from sepl_tree.image_labels import coco_category_map, load_coco_json

__all__ = ["RULES", "CocoInstances", "annotation_mask", "check_categories", "index_images", "semantic_label"]


def annotation_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """The ``bool (H, W)`` mask of one COCO ``segmentation`` (polygons or RLE).

    ``ValueError`` if it is not of size ``height`` x ``width``, or its RLE counts do not cover
    exactly its pixels.
    """
    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if len(p) >= 6]
        if not polygons:
            return np.zeros((height, width), bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    elif isinstance(segmentation, dict) and "counts" in segmentation:
        rle = segmentation  # compressed: the codec reads str and bytes counts
    else:
        raise ValueError(f"unknown segmentation of type {type(segmentation).__name__}")
    # Strict, unlike pycocotools' decode, which leaves the pixels counts do not reach uninitialised
    return np.ascontiguousarray(rle_to_masks([rle], height, width)[0])


#: The ways instances become one label map (``coco-gt --rule``; see the module's doc).
RULES = ("recam", "smaller-wins")


def semantic_label(instances: list[tuple[int, int, bool, np.ndarray]], height: int, width: int,
                   rule: str = "recam") -> np.ndarray:
    """Paint ``(annotation id, class, iscrowd, mask)`` instances, in the file's order, into a
    label map by ``rule`` (one of :data:`RULES`).

    >>> big = np.ones((2, 3), bool)
    >>> small = np.zeros((2, 3), bool); small[0, 0] = True
    >>> crowd = np.zeros((2, 3), bool); crowd[1, 2] = True
    >>> instances = [(1, 5, False, small), (2, 7, False, big), (3, 9, True, crowd)]
    >>> semantic_label(instances, 2, 3).tolist()  # recam: the later instance wins, crowds unpainted
    [[7, 7, 7], [7, 7, 7]]
    >>> semantic_label(instances, 2, 3, "smaller-wins").tolist()
    [[5, 7, 7], [7, 7, 7]]
    >>> semantic_label([(3, 9, True, crowd)], 2, 3, "smaller-wins").tolist()
    [[0, 0, 0], [0, 0, 255]]
    """
    if rule not in RULES:
        raise ValueError(f"unknown COCO ground-truth rule {rule!r}; known: {', '.join(RULES)}")
    label = np.zeros((height, width), np.uint8)
    things = [(ann_id, cls, m) for ann_id, cls, crowd, m in instances if not crowd]
    if rule == "smaller-wins":
        for _, _, crowd, mask in instances:
            if crowd:
                label[mask] = IGNORE
        things.sort(key=lambda t: (-int(t[2].sum()), t[0]))
    for _, cls, mask in things:
        label[mask] = cls
    return label


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _image_name(img: Any, n: int) -> str:
    """How messages name entry ``n`` of ``images``: its id and file name where it has them."""
    if not isinstance(img, dict):
        return f"images[{n}]"
    name = f"image {img['id']}" if _is_int(img.get("id")) else f"images[{n}]"
    return f"{name} ({img['file_name']})" if isinstance(img.get("file_name"), str) and img["file_name"] else name


def _check_image(path: Path, n: int, img: Any) -> None:
    """Refuse an ``images`` entry without an integer id, a file name, or a sane positive size."""
    name = _image_name(img, n)
    if not isinstance(img, dict):
        raise InputError(path, f"{name} is not an object")
    if not _is_int(img.get("id")):
        raise InputError(path, f"{name}: id {img.get('id')!r} is not an integer")
    file_name = img.get("file_name")
    if not isinstance(file_name, str) or Path(file_name).stem in ("", ".", ".."):
        raise InputError(path, f"{name}: file_name {file_name!r} is not a file name")
    for key in ("height", "width"):
        if not _is_int(img.get(key)) or img[key] <= 0:
            raise InputError(path, f"{name}: {key} {img.get(key)!r} is not a positive integer")
    check_pixels(path, img["height"], img["width"], f"{name}: is")


def index_images(path: Path, images: list[Any]) -> dict[str, dict[str, Any]]:
    """``images`` by ``file_name`` stem, each checked; two images with one stem or one id are refused
    (their label maps would be written to one file, by either ``--name-by``)."""
    by_stem: dict[str, dict[str, Any]] = {}
    by_id: dict[int, dict[str, Any]] = {}
    for n, img in enumerate(images):
        _check_image(path, n, img)
        stem = Path(img["file_name"]).stem
        if stem in by_stem:
            first = by_stem[stem]
            raise InputError(path, f"images {first['id']} and {img['id']} have the same file_name stem {stem!r} "
                                   f"({first['file_name']}, {img['file_name']}): both label maps would be {stem}.png")
        if img["id"] in by_id:
            first = by_id[img["id"]]
            raise InputError(path, f"images {first['file_name']} and {img['file_name']} have the same id {img['id']}")
        by_stem[stem], by_id[img["id"]] = img, img
    return by_stem


def check_categories(path: Path, categories: list[Any]) -> dict[int, int]:
    """:func:`coco_category_map` of ``categories``, each with an integer id, no id twice."""
    seen: set[int] = set()
    for n, cat in enumerate(categories):
        cat_id = cat.get("id") if isinstance(cat, dict) else None
        if not _is_int(cat_id):
            raise InputError(path, f"categories[{n}]: id {cat_id!r} is not an integer")
        if cat_id in seen:
            raise InputError(path, f"category id {cat_id} is listed twice")
        seen.add(cat_id)
    if len(seen) > 254:
        raise InputError(path, f"{len(seen)} categories do not fit a uint8 label map")
    return coco_category_map(categories)


def _segmentation_problem(segmentation: Any, height: int, width: int) -> str | None:
    """What is wrong with a ``segmentation`` in an image of ``height`` x ``width``, or ``None``.

    Checked so that pycocotools never sees what it would crash on or fill with uninitialised
    memory: polygons of finite coordinates within the image widened by its size on every side,
    RLE of the image's size whose counts cover it exactly.
    """
    if isinstance(segmentation, list):
        for k, polygon in enumerate(segmentation, start=1):
            if not isinstance(polygon, list) or not set(map(type, polygon)) <= {int, float}:
                return f"polygon {k} is not a list of numbers"
            # NaN fails every comparison, so this also refuses NaN and infinity
            if not (all(-width <= x <= 2 * width for x in polygon[0::2])
                    and all(-height <= y <= 2 * height for y in polygon[1::2])):
                return (f"polygon {k} has a coordinate that is NaN, infinite or outside x in [{-width}, {2 * width}], "
                        f"y in [{-height}, {2 * height}] (the image widened by its size on every side)")
        return None
    if not isinstance(segmentation, dict) or "counts" not in segmentation:
        return f"segmentation of type {type(segmentation).__name__} is neither polygons nor RLE"
    size = segmentation.get("size")
    if not isinstance(size, list) or not all(_is_int(v) for v in size) or size != [height, width]:
        return f"RLE size {size!r} is not the image's [height, width] [{height}, {width}]"
    counts = segmentation["counts"]
    if isinstance(counts, list):
        if not all(_is_int(c) and c >= 0 for c in counts):
            return "RLE counts are not non-negative integers"
        if sum(counts) != height * width:
            return f"RLE counts add up to {sum(counts)} pixels, not the image's {height * width}"
    elif not isinstance(counts, str):
        return f"RLE counts of type {type(counts).__name__} are neither a list nor a string"
    elif not counts.isascii():
        return "compressed RLE counts are not ASCII"
    else:  # decoded here (COCO has them only for crowds) so that a bad one is refused before any work
        try:
            rle_to_bits([segmentation], height, width)
        except ValueError as exc:
            return f"compressed RLE: {exc}"
    return None


def _index_annotations(path: Path, annotations: list[Any], images: dict[str, dict[str, Any]],
                       catmap: dict[int, int]) -> dict[int, list[dict[str, Any]]]:
    """``annotations`` by image id, each checked against its image and the categories."""
    stems = {img["id"]: stem for stem, img in images.items()}
    by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for n, ann in enumerate(annotations):
        if not isinstance(ann, dict):
            raise InputError(path, f"annotations[{n}] is not an object")
        if "id" in ann and not _is_int(ann["id"]):
            raise InputError(path, f"annotations[{n}]: id {ann['id']!r} is not an integer")
        name = f"annotation {ann['id']}" if "id" in ann else f"annotations[{n}] (no id)"
        image_id = ann.get("image_id")
        if not _is_int(image_id) or image_id not in stems:
            raise InputError(path, f"{name}: image_id {image_id!r} is not among the file's images")
        name = f"{name} of image {stems[image_id]!r}"
        if not _is_int(ann.get("category_id")) or ann["category_id"] not in catmap:
            raise InputError(path, f"{name}: category_id {ann.get('category_id')!r} is not among the file's categories")
        crowd = ann.get("iscrowd", 0)
        if not isinstance(crowd, int) or crowd not in (0, 1):  # True and False are accepted
            raise InputError(path, f"{name}: iscrowd {crowd!r} is not 0 or 1")
        if "segmentation" not in ann:
            raise InputError(path, f"{name}: has no segmentation")
        img = images[stems[image_id]]
        problem = _segmentation_problem(ann["segmentation"], img["height"], img["width"])
        if problem:
            raise InputError(path, f"{name}: {problem}")
        by_image[image_id].append(ann)
    return dict(by_image)


@dataclass
class CocoInstances:
    """An instances JSON indexed for building one semantic label map per image."""

    path: Path
    catmap: dict[int, int]
    images: dict[str, dict[str, Any]]
    annotations: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    #: Each class's name, by label value: ``background``, then the categories' ``name``.
    class_names: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> CocoInstances:
        """Read, check and index ``path``: every image and annotation is checked here, before any
        label map is made, and the first problem is an :class:`InputError` naming the file."""
        path = Path(path)
        data = load_coco_json(path)
        for key in ("images", "annotations", "categories"):
            if not isinstance(data[key], list):
                raise InputError(path, f"{key!r} is not a list")
        catmap = check_categories(path, data["categories"])
        images = index_images(path, data["images"])
        names = ["background"] + [f"class{k}" for k in range(1, len(catmap) + 1)]
        for cat in data["categories"]:
            if isinstance(cat.get("name"), str) and cat["name"]:
                names[catmap[cat["id"]]] = cat["name"]
        return cls(path, catmap, images, _index_annotations(path, data["annotations"], images, catmap), names)

    @property
    def num_classes(self) -> int:
        """K: the categories plus background."""
        return len(self.catmap) + 1

    def ids(self) -> list[str]:
        """Image ids (``file_name`` stems), sorted."""
        return sorted(self.images)

    def label(self, image_id: str, rule: str = "recam") -> np.ndarray:
        """The semantic label map of image ``image_id`` (a ``file_name`` stem), by ``rule``."""
        if image_id not in self.images:
            raise InputError(self.path, f"no image {image_id!r} in this instances file")
        img = self.images[image_id]
        height, width = img["height"], img["width"]  # all checked by load
        instances = []
        for ann in self.annotations.get(img["id"], []):
            try:
                mask = annotation_mask(ann["segmentation"], height, width)
            except ValueError as exc:  # load checked the file; this keeps one line for what slips past
                raise InputError(self.path, f"annotation {ann.get('id')} of image {image_id!r}: {exc}") from None
            instances.append((ann.get("id", 0), self.catmap[ann["category_id"]], bool(ann.get("iscrowd", 0)), mask))
        return semantic_label(instances, height, width, rule)
