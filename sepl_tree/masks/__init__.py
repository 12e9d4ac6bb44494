"""SAM masks: the container (:mod:`~sepl_tree.masks.maskset`), a pure RLE/bit codec
(:mod:`~sepl_tree.masks.rle`) and segment-anything's file layouts (:mod:`~sepl_tree.masks.layouts`),
kept apart as segment-anything keeps ``utils/amg.py`` apart from ``scripts/amg.py``.

Everything is re-exported here: ``from sepl_tree.masks import MaskSet, read_masks``.
"""

from sepl_tree.masks.layouts import (
    AMG_CSV_HEADER,
    find_mask_source,
    png_mask_bits,
    read_masks,
    write_masks_png_folder,
    write_masks_rle,
)
from sepl_tree.masks.maskset import MaskSet, flat_masks, masks_to_bbox_xywh, rle_to_masks, rle_to_maskset
from sepl_tree.masks.rle import (
    WORD,
    flat_label,
    mask_to_rle,
    pack_rows,
    popcount,
    popcount_rows,
    rle_to_bits,
    unflatten,
    unpack_rows,
)

__all__ = [
    "AMG_CSV_HEADER",
    "MaskSet",
    "WORD",
    "find_mask_source",
    "flat_label",
    "flat_masks",
    "mask_to_rle",
    "masks_to_bbox_xywh",
    "pack_rows",
    "png_mask_bits",
    "popcount",
    "popcount_rows",
    "read_masks",
    "rle_to_bits",
    "rle_to_masks",
    "rle_to_maskset",
    "unflatten",
    "unpack_rows",
    "write_masks_png_folder",
    "write_masks_rle",
]
