"""SAM masks: the :class:`MaskSet` container and segment-anything's two on-disk layouts.

Conventions
-----------
- ``MaskSet.masks`` is ``bool (L, H, W)``; it may be a view whose last two axes are swapped
  in memory (masks decoded from COCO RLE are column-major), so use :func:`flat_masks` for
  pixel-order-independent work instead of assuming C order.
- Boxes are XYWH in pixels, as ``scripts/amg.py`` writes them.
- RLE is COCO's compressed RLE (``{"size": [H, W], "counts": str}``), Fortran order inside.
- The two layouts, detected per image, exactly as ``scripts/amg.py`` writes them:

  * folder: ``MASKS/<id>/<n>.png`` (255 = mask) and an optional ``metadata.csv`` with header
    ``id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,point_input_y,predicted_iou,
    stability_score,crop_box_x0,crop_box_y0,crop_box_w,crop_box_h``;
  * RLE: ``MASKS/<id>.json``, a list of records ``{segmentation, area, bbox, predicted_iou,
    point_coords, stability_score, crop_box}`` (extra keys, such as ``level`` or ``kind``,
    are kept).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from sepl_tree.errors import InputError
from sepl_tree.io import atomic_write_bytes, read_png

__all__ = [
    "AMG_CSV_HEADER",
    "MaskSet",
    "find_mask_source",
    "flat_masks",
    "list_mask_ids",
    "mask_to_rle",
    "masks_to_bbox_xywh",
    "read_masks",
    "rle_to_masks",
    "write_masks_png_folder",
    "write_masks_rle",
]

AMG_CSV_HEADER = (
    "id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,point_input_y,predicted_iou,"
    "stability_score,crop_box_x0,crop_box_y0,crop_box_w,crop_box_h"
)


@dataclass
class MaskSet:
    """The SAM masks of one image.

    Attributes
    ----------
    masks
        ``bool (L, H, W)``.
    records
        One dict per mask with whatever metadata the source had (``area``, ``bbox``,
        ``predicted_iou``, ``stability_score``, ``point_coords``, ``crop_box``, ``level``, ...).
    """

    masks: np.ndarray
    records: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.masks.ndim != 3 or self.masks.dtype != bool:
            raise ValueError(f"masks must be bool (L, H, W), got {self.masks.dtype} {self.masks.shape}")
        if not self.records:
            self.records = [{} for _ in range(len(self.masks))]
        if len(self.records) != len(self.masks):
            raise ValueError("one record per mask is required")

    @classmethod
    def empty(cls, height: int, width: int) -> MaskSet:
        return cls(np.zeros((0, height, width), bool), [])

    def __len__(self) -> int:
        return len(self.masks)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    def score(self, key: str) -> np.ndarray:
        """A per-mask metadata field as float64, NaN where a record lacks it."""
        return np.array([float(r.get(key, np.nan)) for r in self.records], dtype=np.float64)


def flat_masks(masks: np.ndarray, label: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``masks`` as ``(L, H*W)`` without copying, and ``label`` flattened in the same pixel order.

    Masks decoded from RLE are column-major; flattening them column-major (and the label map
    likewise) avoids a transposing copy. Only order-independent results (counts, unions that
    are reshaped back with :func:`unflatten`) may be computed on the flat arrays.
    """
    n = masks.shape[0]
    if masks.flags.c_contiguous or not masks.transpose(0, 2, 1).flags.c_contiguous:
        flat = np.ascontiguousarray(masks).reshape(n, masks.shape[1] * masks.shape[2])
        return flat, (None if label is None else label.reshape(-1))
    flat = masks.transpose(0, 2, 1).reshape(n, masks.shape[1] * masks.shape[2])
    return flat, (None if label is None else np.ascontiguousarray(label.T).reshape(-1))


def masks_to_bbox_xywh(masks: np.ndarray) -> np.ndarray:
    """Tight XYWH boxes (int64 ``(L, 4)``) of ``bool (L, H, W)`` masks; zeros for empty masks."""
    boxes = np.zeros((len(masks), 4), np.int64)
    if len(masks) == 0:
        return boxes
    rows = masks.any(axis=2)
    cols = masks.any(axis=1)
    nonempty = rows.any(axis=1)
    y0 = rows.argmax(axis=1)
    y1 = rows.shape[1] - rows[:, ::-1].argmax(axis=1)
    x0 = cols.argmax(axis=1)
    x1 = cols.shape[1] - cols[:, ::-1].argmax(axis=1)
    boxes[:] = np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)
    boxes[~nonempty] = 0
    return boxes


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE of one ``bool (H, W)`` mask, with ``counts`` as ``str`` (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _rle_counts(strings: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Run lengths of COCO compressed RLE strings, all strings at once.

    Returns ``(counts, per_string)``: the int64 run lengths of every string, concatenated, and
    how many belong to each string. The format (pycocotools' ``rleFrString``): each value is
    written in 5-bit groups, least significant first, as characters ``48 + group`` with bit
    0x20 set on all but the last group and bit 0x10 of the last group as the sign; from the
    fourth value on, each is stored as the difference to the value two places before it.
    """
    lengths = np.fromiter((len(s) for s in strings), np.int64, len(strings))
    chars = np.frombuffer(b"".join(strings), np.uint8).astype(np.int64) - 48
    if ((chars < 0) | (chars > 63)).any():
        raise ValueError("RLE counts contain characters outside '0'..'o'")
    last = (chars & 0x20) == 0  # the last group of a value
    ends = np.flatnonzero(last)
    string_ends = np.cumsum(lengths)
    if not last[string_ends[lengths > 0] - 1].all():
        raise ValueError("an RLE string ends in the middle of a value")
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    groups = ends - starts + 1
    if groups.size and groups.max() > 7:
        raise ValueError("an RLE value has more than 7 groups")
    shift = 5 * (np.arange(chars.size) - np.repeat(starts, groups))
    values = np.add.reduceat((chars & 0x1F) << shift, starts) if ends.size else np.zeros(0, np.int64)
    negative = (chars[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * groups[negative])
    per_string = np.diff(np.searchsorted(ends, string_ends - 1, side="right"), prepend=0)
    # Undo the delta coding: value m (m > 2) adds value m - 2, i.e. running sums over the odd
    # places from 1 and over the even places from 2, restarted for every string.
    first = np.repeat(np.cumsum(per_string) - per_string, per_string)
    place = np.arange(values.size) - first
    for parity, start in ((1, 1), (0, 2)):
        sel = np.flatnonzero((place >= start) & (place % 2 == parity))
        if sel.size:
            running = np.cumsum(values[sel])
            owner = first[sel]
            new_owner = np.flatnonzero(np.diff(owner, prepend=-1))
            before = np.concatenate([[0], running[new_owner[1:] - 1]])
            values[sel] = running - np.repeat(before, np.diff(np.append(new_owner, sel.size)))
    return values, per_string


def rle_to_masks(rles: Sequence[dict[str, Any]], height: int, width: int) -> np.ndarray:
    """Decode COCO RLEs into ``bool (L, H, W)`` (a column-major view, see :func:`flat_masks`).

    Decoded with numpy (every mask at once: the runs are parsed together and expanded with one
    ``np.repeat``), several times faster than ``pycocotools.mask.decode`` on SAM-sized sets and
    strict: counts that do not cover exactly ``height * width`` pixels raise ``ValueError``.

    >>> rle = mask_to_rle(np.array([[1, 0], [1, 1]], bool))
    >>> rle_to_masks([rle], 2, 2)[0].astype(int).tolist()
    [[1, 0], [1, 1]]
    """
    if not rles:
        return np.zeros((0, height, width), bool)
    for r in rles:
        if [int(v) for v in r["size"]] != [height, width]:
            raise ValueError(f"an RLE has size {list(r['size'])}, expected {[height, width]}")
        if not isinstance(r["counts"], (str, bytes)):
            raise ValueError("RLE counts must be a compressed string (as amg.py writes them)")
    counts, per_mask = _rle_counts([r["counts"].encode("ascii") if isinstance(r["counts"], str) else r["counts"]
                                    for r in rles])
    if (per_mask == 0).any() or (counts < 0).any():
        raise ValueError("corrupt RLE counts")
    first = np.cumsum(per_mask) - per_mask
    if (np.add.reduceat(counts, first) != height * width).any():
        raise ValueError(f"RLE counts do not add up to {height}x{width} pixels")
    on = ((np.arange(counts.size) - np.repeat(first, per_mask)) % 2).astype(bool)  # runs alternate 0, 1, ...
    flat = np.repeat(on, counts)  # every mask, column by column
    return flat.reshape(len(rles), width, height).transpose(0, 2, 1)


# ---------------------------------------------------------------------------------------- read


def find_mask_source(masks_dir: Path, image_id: str) -> Path | None:
    """``<id>.json`` if it exists, else the ``<id>/`` folder if it exists, else ``None``."""
    rle = masks_dir / f"{image_id}.json"
    if rle.is_file():
        return rle
    folder = masks_dir / image_id
    if folder.is_dir():
        return folder
    return None


def list_mask_ids(masks_dir: Path) -> list[str]:
    """Image ids with masks in ``masks_dir`` (either layout), sorted."""
    ids = {p.stem for p in masks_dir.glob("*.json") if p.is_file()}
    ids |= {p.name for p in masks_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
    return sorted(ids)


def _read_rle_json(path: Path, shape: tuple[int, int] | None) -> MaskSet:
    try:
        records = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise InputError(path, f"cannot read mask JSON: {exc}") from None
    if not isinstance(records, list):
        raise InputError(path, "mask JSON must be a list of records (as segment-anything's amg.py writes)")
    rles = []
    for n, rec in enumerate(records):
        seg = rec.get("segmentation") if isinstance(rec, dict) else None
        if not isinstance(seg, dict) or "size" not in seg or "counts" not in seg:
            raise InputError(path, f"record {n} has no COCO RLE 'segmentation' with 'size' and 'counts'")
        rles.append(seg)
    sizes = {tuple(r["size"]) for r in rles}
    if len(sizes) > 1:
        raise InputError(path, f"masks have different sizes: {sorted(sizes)}")
    if rles:
        height, width = (int(v) for v in rles[0]["size"])
    elif shape is not None:
        height, width = shape
    else:
        raise InputError(path, "no masks and no image size to give them")
    if shape is not None and (height, width) != tuple(shape):
        raise InputError(path, f"masks are {height}x{width} (HxW) but the pseudo-label is {shape[0]}x{shape[1]}")
    try:
        masks = rle_to_masks(rles, height, width)
    except Exception as exc:  # pycocotools raises bare exceptions on corrupt counts
        raise InputError(path, f"corrupt RLE: {exc}") from None
    meta = [{k: v for k, v in rec.items() if k != "segmentation"} for rec in records]
    return MaskSet(masks, meta)


def _read_csv(path: Path) -> dict[int, dict[str, Any]]:
    try:
        rows = list(csv.DictReader(io.StringIO(path.read_text())))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(path, f"cannot read metadata.csv: {exc}") from None
    out: dict[int, dict[str, Any]] = {}
    for row in rows:
        try:
            n = int(row["id"])
            rec: dict[str, Any] = {
                "area": int(float(row["area"])),
                "bbox": [float(row[f"bbox_{k}"]) for k in ("x0", "y0", "w", "h")],
                "point_coords": [[float(row["point_input_x"]), float(row["point_input_y"])]],
                "predicted_iou": float(row["predicted_iou"]),
                "stability_score": float(row["stability_score"]),
                "crop_box": [float(row[f"crop_box_{k}"]) for k in ("x0", "y0", "w", "h")],
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(path, f"bad row {row!r}: expected columns {AMG_CSV_HEADER}") from exc
        rec.update({k: v for k, v in row.items() if k not in AMG_CSV_HEADER.split(",") and k})
        out[n] = rec
    return out


_PNG_NAME = re.compile(r"^(\d+)\.png$")


def _read_png_folder(folder: Path, shape: tuple[int, int] | None) -> MaskSet:
    files = sorted(((int(m.group(1)), p) for p in folder.iterdir() if (m := _PNG_NAME.match(p.name))))
    meta = _read_csv(folder / "metadata.csv") if (folder / "metadata.csv").is_file() else {}
    masks: np.ndarray | None = None  # filled in place: no per-mask temporaries, no stacking copy
    records = []
    for index, (n, path) in enumerate(files):
        m = read_png(path)
        if m.ndim != 2:
            raise InputError(path, f"a mask PNG must have one channel, got shape {m.shape}")
        if shape is None:
            shape = m.shape
        if m.shape != tuple(shape):
            raise InputError(path, f"mask is {m.shape[0]}x{m.shape[1]} (HxW) but expected {shape[0]}x{shape[1]}")
        if masks is None:
            masks = np.empty((len(files), *m.shape), bool)
        np.greater(m, 127, out=masks[index])
        records.append(meta.get(n, {}))
    if masks is None:
        if shape is None:
            raise InputError(folder, "no masks and no image size to give them")
        return MaskSet.empty(*shape)
    return MaskSet(masks, records)


def read_masks(masks_dir: Path, image_id: str, shape: tuple[int, int] | None = None) -> MaskSet:
    """The masks of ``image_id`` from ``masks_dir``, in whichever amg.py layout is there.

    Raises ``InputError`` when neither layout exists or a file is corrupt or of the wrong size
    (``shape`` is the expected ``(H, W)``, usually the pseudo-label's). An empty list of masks is
    valid.
    """
    source = find_mask_source(masks_dir, image_id)
    if source is None:
        raise InputError(masks_dir / f"{image_id}.json", "no masks for this image (neither <id>.json nor <id>/)")
    if source.suffix == ".json" and source.is_file():
        return _read_rle_json(source, shape)
    return _read_png_folder(source, shape)


# --------------------------------------------------------------------------------------- write


def _complete_record(mask: np.ndarray, rec: dict[str, Any], box: np.ndarray) -> dict[str, Any]:
    h, w = mask.shape
    out = {
        "area": int(rec.get("area", int(mask.sum()))),
        "bbox": [float(v) for v in rec.get("bbox", box.tolist())],
        "predicted_iou": float(rec.get("predicted_iou", 1.0)),
        "point_coords": rec.get("point_coords", [[0.0, 0.0]]),
        "stability_score": float(rec.get("stability_score", 1.0)),
        "crop_box": [float(v) for v in rec.get("crop_box", [0, 0, w, h])],
    }
    out.update({k: v for k, v in rec.items() if k not in out and k != "segmentation"})
    return out


def write_masks_rle(path: Path, maskset: MaskSet) -> None:
    """Write ``<id>.json`` as amg.py does (atomic); missing metadata gets amg.py-style defaults."""
    boxes = masks_to_bbox_xywh(maskset.masks)
    records = []
    for mask, rec, box in zip(maskset.masks, maskset.records, boxes):
        out = {"segmentation": mask_to_rle(mask)}
        out.update(_complete_record(mask, rec, box))
        records.append(out)
    atomic_write_bytes(path, json.dumps(records).encode())


def write_masks_png_folder(folder: Path, maskset: MaskSet) -> None:
    """Write ``<n>.png`` files and ``metadata.csv`` into ``folder`` as amg.py does.

    The folder is filled under a temporary name and renamed into place, so a reader never sees
    half of it.
    """
    tmp = folder.with_name(f".{folder.name}.tmp")
    if tmp.exists():
        for p in tmp.iterdir():
            p.unlink()
    tmp.mkdir(parents=True, exist_ok=True)
    boxes = masks_to_bbox_xywh(maskset.masks)
    lines = [AMG_CSV_HEADER]
    for n, (mask, rec, box) in enumerate(zip(maskset.masks, maskset.records, boxes)):
        Image.fromarray(mask.astype(np.uint8) * 255).save(tmp / f"{n}.png")
        r = _complete_record(mask, rec, box)
        (px, py), = r["point_coords"][:1] or [[0.0, 0.0]]
        row = [n, r["area"], *r["bbox"], px, py, r["predicted_iou"], r["stability_score"], *r["crop_box"]]
        lines.append(",".join(str(v) for v in row))
    (tmp / "metadata.csv").write_text("\n".join(lines) + "\n")
    if folder.exists():
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()
    tmp.rename(folder)
