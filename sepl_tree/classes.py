"""Dataset presets: class names, K and palette of VOC and COCO (kept in sync with ``configs/voc.toml``
and ``configs/coco.toml``; a test checks they agree).

Index 0 is background; VOC has K = 21, COCO K = 81 (the 80 categories in COCO's category-id
order mapped to 1..80, see :data:`COCO_CATEGORY_IDS`). The tables live here as Python constants
so an installed package has them without the repository's ``configs/`` folder.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from sepl_tree.errors import SeplError
from sepl_tree.label_maps import voc_palette

__all__ = [
    "COCO_CATEGORY_IDS",
    "COCO_CLASSES",
    "PRESETS",
    "VOC_CLASSES",
    "DatasetPreset",
    "dataset_preset",
    "default_class_names",
    "load_preset_file",
]

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

COCO_CLASSES: tuple[str, ...] = (
    "background", "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck",
    "boat", "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant",
    "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)

#: COCO's category ids of :data:`COCO_CLASSES` 1..80 (ids 12, 26, 29, 30, 45, 66, 68, 69, 71, 83 are unused).
COCO_CATEGORY_IDS: tuple[int, ...] = tuple(
    i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83))


@dataclass(frozen=True)
class DatasetPreset:
    """A dataset's classes: names (index 0 background), K and the colour of each class."""

    name: str
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


def _preset(name: str, names: tuple[str, ...]) -> DatasetPreset:
    palette = tuple(tuple(int(v) for v in row) for row in voc_palette(len(names)))
    return DatasetPreset(name, names, palette)  # type: ignore[arg-type]


#: The built-in presets, by name.
PRESETS: dict[str, DatasetPreset] = {"voc": _preset("voc", VOC_CLASSES), "coco": _preset("coco", COCO_CLASSES)}


def dataset_preset(name: str) -> DatasetPreset:
    """The built-in preset ``voc`` or ``coco``."""
    try:
        return PRESETS[name]
    except KeyError:
        raise SeplError(f"unknown dataset preset {name!r}; valid choices: {', '.join(PRESETS)}") from None


def load_preset_file(path: Path) -> DatasetPreset:
    """A preset from a TOML file with ``name``, ``num_classes``, ``class_names`` and ``palette``."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise SeplError(f"{path}: cannot read preset ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SeplError(f"{path}: invalid TOML ({exc})") from None
    names = tuple(data.get("class_names", ()))
    palette = tuple(tuple(int(v) for v in row) for row in data.get("palette", ()))
    if int(data.get("num_classes", -1)) != len(names) or len(palette) != len(names):
        raise SeplError(f"{path}: num_classes, class_names and palette disagree "
                        f"({data.get('num_classes')}, {len(names)}, {len(palette)})")
    return DatasetPreset(str(data.get("name", Path(path).stem)), names, palette)  # type: ignore[arg-type]


def default_class_names(num_classes: int) -> list[str]:
    """VOC names for K = 21, COCO names for K = 81, else ``background, class1, class2, ...``."""
    for table in (VOC_CLASSES, COCO_CLASSES):
        if len(table) == num_classes:
            return list(table)
    return ["background", *(f"class{k}" for k in range(1, num_classes))]
