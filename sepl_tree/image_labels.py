"""Image-level labels: which classes each image contains, from the three files WSSS code uses.

Returns ``{image id: frozenset of classes in 1..K-1}``; background (0) is never listed.

- IRN/AffinityNet ``cls_labels.npy``: ``np.save`` of ``{int id: float32[K-1]}``, the id being the
  VOC name without its underscore (``2007000032`` for ``2007_000032``) and index 0 of the vector
  the first foreground class (aeroplane -> class 1). String keys are taken as they are.
- A VOC ``Annotations`` folder: one ``<id>.xml`` per image; every ``<object><name>`` counts
  (``difficult`` and ``truncated`` objects too), mapped through the VOC class names.
- A COCO instances JSON: the categories sorted by COCO id map to 1..80; every annotation, crowd
  included, marks its category present; the image id is the ``file_name`` stem, and images
  without annotations have no classes.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from sepl_tree.classes import VOC_CLASSES
from sepl_tree.errors import InputError

__all__ = ["coco_category_map", "decode_irn_id", "load_coco_json", "load_image_labels"]


def decode_irn_id(key: Any) -> str:
    """IRN's integer image id back to the VOC name.

    >>> decode_irn_id(2007000032)
    '2007_000032'
    >>> decode_irn_id("COCO_val2014_000000000042")
    'COCO_val2014_000000000042'
    """
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        text = str(int(key))
        return f"{text[:4]}_{text[4:]}" if len(text) == 10 else text
    return str(key)


def _from_cls_labels(path: Path, num_classes: int) -> dict[str, frozenset[int]]:
    from sepl_tree.readers.cam import load_pickled

    table = load_pickled(path)
    if not isinstance(table, Mapping):
        raise InputError(path, f"expected IRN's cls_labels.npy, a dict {{image id: vector}}, got {type(table).__name__}")
    labels: dict[str, frozenset[int]] = {}
    for key, vector in table.items():
        values = np.asarray(vector, dtype=np.float64).reshape(-1)
        if values.size != num_classes - 1:
            raise InputError(path, f"image {key!r} has {values.size} class scores, expected {num_classes - 1} "
                                   f"(K = {num_classes}; set --num-classes)")
        labels[decode_irn_id(key)] = frozenset(int(i) + 1 for i in np.flatnonzero(values > 0))
    return labels


def _from_voc_xml(folder: Path, num_classes: int) -> dict[str, frozenset[int]]:
    if num_classes != len(VOC_CLASSES):
        raise InputError(folder, f"VOC annotations name the {len(VOC_CLASSES) - 1} VOC classes, but K = {num_classes}")
    index = {name: i for i, name in enumerate(VOC_CLASSES) if i}
    files = sorted(folder.glob("*.xml"))
    if not files:
        raise InputError(folder, "no VOC annotation files (*.xml) in this folder")
    labels: dict[str, frozenset[int]] = {}
    for path in files:
        try:
            root = ET.parse(path).getroot()
        except (ET.ParseError, OSError) as exc:
            raise InputError(path, f"not a readable XML file ({exc})") from None
        present = set()
        for obj in root.iter("object"):
            name = (obj.findtext("name") or "").strip()
            if name not in index:
                raise InputError(path, f"unknown VOC class {name!r}")
            present.add(index[name])
        labels[path.stem] = frozenset(present)
    return labels


def coco_category_map(categories: list[dict[str, Any]]) -> dict[int, int]:
    """COCO category id -> class index 1..N, in increasing id order (COCO's own order).

    >>> coco_category_map([{"id": 90, "name": "toothbrush"}, {"id": 1, "name": "person"}])
    {1: 1, 90: 2}
    """
    ids = sorted(int(c["id"]) for c in categories)
    return {cat_id: i + 1 for i, cat_id in enumerate(ids)}


def load_coco_json(path: Path) -> dict[str, Any]:
    """A COCO instances JSON as a dict, checked for ``images``, ``annotations`` and ``categories``."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(path, f"not a readable JSON file ({exc})") from None
    if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations", "categories")):
        raise InputError(path, "not a COCO instances file (needs 'images', 'annotations' and 'categories')")
    return data


def _from_coco_json(path: Path, num_classes: int) -> dict[str, frozenset[int]]:
    from sepl_tree.coco import check_categories, index_images  # (coco imports this module)

    data = load_coco_json(path)
    catmap = check_categories(path, data["categories"])
    if len(catmap) != num_classes - 1:
        raise InputError(path, f"{len(catmap)} categories, but K = {num_classes} needs {num_classes - 1} "
                               "(set --num-classes)")
    # ids, file names and sizes checked, no two images with one file name stem (their labels would merge)
    stems = {img["id"]: stem for stem, img in index_images(path, data["images"]).items()}
    present: dict[str, set[int]] = {stem: set() for stem in stems.values()}
    for ann in data["annotations"]:
        image, cat = int(ann["image_id"]), int(ann["category_id"])
        if image not in stems:
            raise InputError(path, f"annotation {ann.get('id')} refers to unknown image id {image}")
        if cat not in catmap:
            raise InputError(path, f"annotation {ann.get('id')} refers to unknown category id {cat}")
        present[stems[image]].add(catmap[cat])
    labels = {stem: frozenset(classes) for stem, classes in present.items()}
    # CAM files named by numeric image id (9.npy) find theirs too, where no stem is that number
    labels.update({str(image): labels[stem] for image, stem in stems.items() if str(image) not in labels})
    return labels


def load_image_labels(path: Path, num_classes: int) -> dict[str, frozenset[int]]:
    """Image id -> classes (1..K-1) present, from ``cls_labels.npy``, VOC ``Annotations/`` or COCO JSON.

    Parameters
    ----------
    path
        IRN's ``cls_labels.npy``, a folder of VOC XML annotations, or a COCO instances ``.json``.
    num_classes
        K, background included.

    Raises
    ------
    InputError
        Naming the file that is missing, unreadable or inconsistent with ``num_classes``.
    """
    path = Path(path)
    if path.is_dir():
        return _from_voc_xml(path, num_classes)
    if not path.exists():
        raise InputError(path, "image-level label file not found")
    try:
        if path.suffix.lower() == ".json":
            return _from_coco_json(path, num_classes)
        if path.suffix.lower() in (".npy", ".pkl"):
            return _from_cls_labels(path, num_classes)
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(path, f"malformed image-level labels ({type(exc).__name__}: {exc})") from None
    raise InputError(path, "unknown image-level label format (expected cls_labels.npy, a VOC Annotations "
                           "folder or a COCO instances .json)")
