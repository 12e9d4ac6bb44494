"""Writing one image's masks in amg.py's layouts, from records whose ``segmentation`` is COCO RLE.

The generators hand over COCO RLE (``{"size": [H, W], "counts": str}``) and it goes into
``<id>.json`` as it is; only the PNG layout decodes it (straight into bits, then the PNG files).
Both writes are atomic: a reader never sees half of an image's output.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sepl_tree.files import atomic_write_bytes
from sepl_tree.masks import MaskSet, rle_to_maskset, write_masks_png_folder

__all__ = ["FORMATS", "amg_record", "records_to_maskset", "write_png_folder_with_levels", "write_records"]

#: Output layouts: one COCO-RLE ``<id>.json`` per image, or amg.py's ``<id>/`` PNG folder.
FORMATS = ("rle", "png")


def amg_record(record: dict[str, Any]) -> dict[str, Any]:
    """A generator record typed as sepl-tree has always written it: ``area`` an int, the rest floats.

    The libraries' records hold ints or floats for the boxes depending on the batches (an
    empty batch turns a crop's boxes into floats); written this way, a file does not depend
    on how the work was batched. Extra fields (``level``) follow, unchanged.
    """
    out = {"segmentation": record["segmentation"], "area": int(record["area"]),
           "bbox": [float(v) for v in record["bbox"]], "predicted_iou": float(record["predicted_iou"]),
           "point_coords": [[float(v) for v in p] for p in record["point_coords"]],
           "stability_score": float(record["stability_score"]), "crop_box": [float(v) for v in record["crop_box"]]}
    out.update({k: v for k, v in record.items() if k not in out})
    return out


def records_to_maskset(records: Sequence[dict[str, Any]], height: int, width: int) -> MaskSet:
    """A :class:`MaskSet` (bits) of RLE records; the records keep every field but ``segmentation``."""
    rles = [r["segmentation"] for r in records]
    rest = [{k: v for k, v in r.items() if k != "segmentation"} for r in records]
    return rle_to_maskset(rles, height, width, rest)


def write_png_folder_with_levels(folder: Path, maskset: MaskSet) -> None:
    """amg.py's PNG folder, with a ``level`` column appended to ``metadata.csv`` when every
    record has one; atomic (:func:`sepl_tree.files.atomic_folder`)."""
    levels = [r.get("level") for r in maskset.records]
    write_masks_png_folder(folder, maskset, {"level": levels} if levels and None not in levels else None)


def write_records(out: Path, image_id: str, records: Sequence[dict[str, Any]], size: tuple[int, int],
                  fmt: str = "rle") -> None:
    """Write one image's records as ``out/<id>.json`` (``rle``) or ``out/<id>/`` (``png``)."""
    if fmt == "png":
        write_png_folder_with_levels(out / image_id, records_to_maskset(records, *size))
    else:
        atomic_write_bytes(out / f"{image_id}.json", json.dumps(list(records)).encode())
