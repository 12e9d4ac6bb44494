"""Dataset presets: class names, K and palette of VOC and COCO (kept in sync with ``configs/voc.toml``
and ``configs/coco.toml``; a test checks they agree).

Index 0 is background; VOC has K = 21, COCO K = 81 (the 80 categories in COCO's category-id
order mapped to 1..80, see :data:`COCO_CATEGORY_IDS`). The tables live here as Python constants
so an installed package has them without the repository's ``configs/`` folder.
"""

from __future__ import annotations


__all__ = [
    "COCO_CATEGORY_IDS",
    "COCO_CLASSES",
    "VOC_CLASSES",
    "default_class_names",
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


def default_class_names(num_classes: int) -> list[str]:
    """VOC names for K = 21, COCO names for K = 81, else ``background, class1, class2, ...``."""
    for table in (VOC_CLASSES, COCO_CLASSES):
        if len(table) == num_classes:
            return list(table)
    return ["background", *(f"class{k}" for k in range(1, num_classes))]
