"""segment-anything's two on-disk layouts of SAM masks, read and written exactly as
``scripts/amg.py`` does, detected per image:

- folder: ``MASKS/<id>/<n>.png`` (255 = mask) and an optional ``metadata.csv`` with header
  ``id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,point_input_y,predicted_iou,
  stability_score,crop_box_x0,crop_box_y0,crop_box_w,crop_box_h`` (more columns may follow,
  such as our ``level``, read as numbers where they are) and one row per ``<n>.png``, ``id`` = n: a header without these
  columns, a PNG without a row, or a row (or a repeated id) without its PNG is an ``InputError``;
- RLE: ``MASKS/<id>.json``, a list of records ``{segmentation, area, bbox, predicted_iou,
  point_coords, stability_score, crop_box}`` (extra keys, such as ``level`` or ``kind``, are kept).

Masks are read into a :class:`~sepl_tree.masks.maskset.MaskSet` (RLE straight into bits);
boxes are XYWH. Every write is atomic.

A mask PNG is one channel; which pixels are in the mask (:func:`png_mask_bits`):

- 1-bit (mode ``"1"``): the set bits;
- values only 0 and 1 (8- or 16-bit greyscale, or palette indices): 1;
- otherwise more than half the depth's range: > 127 for 8-bit (amg.py's 0/255; a soft mask
  cut at one half), > 32767 for 16-bit. Values none of which pass (0..100, say) would read
  as an empty mask: that is an ``InputError``, never an empty mask.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sepl_tree.errors import InputError
from sepl_tree.files import atomic_folder, atomic_write_bytes, read_json, read_png
from sepl_tree.masks.maskset import MaskSet, rle_to_maskset
from sepl_tree.masks.rle import mask_to_rle

__all__ = [
    "AMG_CSV_HEADER",
    "find_mask_source",
    "png_mask_bits",
    "read_masks",
    "write_masks_png_folder",
    "write_masks_rle",
]

AMG_CSV_HEADER = (
    "id,area,bbox_x0,bbox_y0,bbox_w,bbox_h,point_input_x,point_input_y,predicted_iou,"
    "stability_score,crop_box_x0,crop_box_y0,crop_box_w,crop_box_h"
)
_AMG_COLUMNS = tuple(AMG_CSV_HEADER.split(","))

# ---------------------------------------------------------------------------------------- read


#: The most bits a set of masks read without a known size may take (1 GiB: 45,000 masks of a
#: 500x375 VOC image); a file claiming more is refused before anything is allocated.
MAX_MASK_BYTES = 1 << 30


def find_mask_source(masks_dir: Path, image_id: str) -> Path | None:
    """``<id>.json`` or the ``<id>/`` folder, whichever exists, else ``None``.

    Both at once is an ``InputError`` naming both: which one holds the masks would be a guess.
    So is, when neither is there, a folder named ``<id>.json`` or a file named ``<id>``.
    """
    rle, folder = masks_dir / f"{image_id}.json", masks_dir / image_id
    has_rle, has_folder = rle.is_file(), folder.is_dir()
    if has_rle and has_folder:
        raise InputError(rle, f"both this file and {folder}/ hold masks for image {image_id!r}; keep one of them")
    if not (has_rle or has_folder):  # something there under either name is not what it should be
        if rle.is_dir():
            raise InputError(rle, f"is a folder, not a file (masks are {image_id}.json, a file of RLE "
                                  f"records, or {image_id}/, a folder of <n>.png)")
        if os.path.lexists(folder):
            raise InputError(folder, f"is not a folder (masks are {image_id}.json, a file of RLE records, "
                                     f"or {image_id}/, a folder of <n>.png)")
    return rle if has_rle else folder if has_folder else None


def _rle_size(path: Path, n: int, seg: dict[str, Any]) -> tuple[int, int]:
    size = seg["size"]
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in size)):
        raise InputError(path, f"record {n} has RLE size {size!r}; expected [height, width] (two integers)")
    return int(size[0]), int(size[1])


def _check_claimed_size(path: Path, masks: int, height: int, width: int) -> None:
    """Refuse what a file claims before allocating it: at most ``MAX_PIXELS`` pixels an image
    and ``MAX_MASK_BYTES`` of bits."""
    from sepl_tree.files import check_pixels

    check_pixels(path, height, width, "masks claim")
    need = masks * -(-height * width // 64) * 8
    if need > MAX_MASK_BYTES:
        raise InputError(path, f"{masks} masks of {height}x{width} would take {need / 2**30:.1f} GiB, more than "
                               f"the limit of {MAX_MASK_BYTES / 2**30:.0f} GiB")


#: The per-mask scores SAM writes; a record's value must be a number (NaN or null: no score).
SCORE_FIELDS = ("predicted_iou", "stability_score")


def _read_rle_json(path: Path, shape: tuple[int, int] | None) -> MaskSet:
    records = read_json(path)
    if not isinstance(records, list):
        raise InputError(path, "mask JSON must be a list of records (as segment-anything's amg.py writes)")
    rles = []
    for n, rec in enumerate(records):
        seg = rec.get("segmentation") if isinstance(rec, dict) else None
        if not isinstance(seg, dict) or "size" not in seg or "counts" not in seg:
            raise InputError(path, f"record {n} has no COCO RLE 'segmentation' with 'size' and 'counts'")
        for key in SCORE_FIELDS:  # (a string or bool would read as "no score", quietly changing tree-prompt's pick)
            if (value := rec.get(key)) is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise InputError(path, f"record {n}: {key} {value!r} is not a number")
        rles.append(seg)
    sizes = {_rle_size(path, n, seg) for n, seg in enumerate(rles)}
    if len(sizes) > 1:
        raise InputError(path, f"masks have different sizes: {sorted(sizes)}")
    if rles:
        height, width = sizes.pop()
    elif shape is not None:
        height, width = shape
    else:
        raise InputError(path, "no masks and no image size to give them")
    if shape is not None and (height, width) != tuple(shape):
        raise InputError(path, f"masks are {height}x{width} (HxW) but the pseudo-label is {shape[0]}x{shape[1]}")
    _check_claimed_size(path, len(rles), height, width)
    meta = [{k: v for k, v in rec.items() if k != "segmentation"} for rec in records]
    try:
        return rle_to_maskset(rles, height, width, meta)
    except (ValueError, TypeError, UnicodeError) as exc:
        raise InputError(path, f"corrupt RLE: {exc}") from None


def _csv_value(text: str) -> bool | int | float | str:
    """A further ``metadata.csv`` column's value as the RLE layout's JSON would hold it: a bool
    where Python or JSON spells one (the demo's ``synthetic``), an integer (our ``level``) or a
    number where it reads as one, else the text.

    >>> [_csv_value(v) for v in ("2", "-1", "0.5", "1e-3", "object", "", "True", "false")]
    [2, -1, 0.5, 0.001, 'object', '', True, False]
    """
    if text in ("True", "true", "False", "false"):
        return text in ("True", "true")
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _read_csv(path: Path, pngs: Mapping[int, Path]) -> dict[int, dict[str, Any]]:
    """The records of ``metadata.csv``, id -> record, checked one for one against ``pngs``
    (n -> ``<n>.png``): amg.py's columns in the header (more may follow), one row per PNG."""
    try:
        reader = csv.DictReader(io.StringIO(path.read_text()))
        header = reader.fieldnames or []
        if not header:
            raise InputError(path, f"is empty; amg.py writes the header {AMG_CSV_HEADER}")
        lacks = [c for c in _AMG_COLUMNS if c not in header]
        if len(lacks) == len(_AMG_COLUMNS):
            raise InputError(path, f"header {','.join(header)!r} has none of amg.py's columns {AMG_CSV_HEADER}")
        if lacks:
            raise InputError(path, f"header lacks {', '.join(lacks)} (amg.py writes {AMG_CSV_HEADER})")
        out: dict[int, dict[str, Any]] = {}
        lines: dict[int, int] = {}
        for row in reader:
            line = reader.line_num
            extra, short = row.get(None, ()), sum(v is None for v in row.values())  # DictReader's fill-ins
            if extra or short:
                raise InputError(path, f"line {line} has {len(header) + len(extra) - short} fields but the header "
                                        f"has {len(header)}")
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
            except ValueError as exc:
                raise InputError(path, f"line {line} has a value that is not a number ({exc})") from None
            if n in lines:
                raise InputError(path, f"line {line} repeats id {n} (line {lines[n]} has it too)")
            if n not in pngs:
                raise InputError(path, f"line {line} (id {n}) names {n}.png, which is not in the folder")
            lines[n] = line
            rec.update({k: _csv_value(v) for k, v in row.items() if k not in _AMG_COLUMNS and k})
            out[n] = rec
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(path, f"cannot read metadata.csv: {exc}") from None
    if len(out) != len(pngs):
        missing = [pngs[n].name for n in pngs if n not in out]
        more = f" (and {len(missing) - 3} more)" if len(missing) > 3 else ""
        raise InputError(path, f"no row for {', '.join(missing[:3])}{more} (one row per <n>.png, id = n)")
    return out


_PNG_NAME = re.compile(r"^(\d+)\.png$")


def png_mask_bits(path: Path, values: np.ndarray, out: np.ndarray) -> None:
    """Fill ``out`` (bool, of ``values``' shape) with the mask a PNG's pixel ``values`` hold.

    ``values`` as :func:`sepl_tree.files.read_png` gives them: ``bool`` from a 1-bit PNG (the
    bits), else integers: 0/1 gives 1 = mask; anything else more than half the depth's range
    (> 127 for 8-bit). Values that are set but none of which pass are an ``InputError``.

    >>> out = np.empty((1, 3), bool)
    >>> png_mask_bits(Path("0.png"), np.array([[0, 1, 1]], np.uint8), out); out.tolist()
    [[False, True, True]]
    >>> png_mask_bits(Path("0.png"), np.array([[0, 200, 255]], np.uint8), out); out.tolist()
    [[False, True, True]]
    """
    if values.dtype == bool:
        np.copyto(out, values)
        return
    top = int(values.max()) if values.size else 0
    half = 127 if values.dtype == np.uint8 else 32767  # PNGs are 8- or 16-bit
    if 1 < top <= half:
        raise InputError(path, f"mask values are 0..{top}: none is above {half}, so the mask would read as "
                               f"empty (a mask PNG is 0/255 as amg.py writes, 0/1, or 1-bit)")
    np.greater(values, 0 if top <= 1 else half, out=out)


def _list_pngs(folder: Path) -> dict[int, Path]:
    """``<n>.png`` in ``folder`` by n, sorted; two names for one n (``1.png``, ``01.png``) are an error."""
    pngs: dict[int, Path] = {}
    found = []
    for p in folder.iterdir():
        if m := _PNG_NAME.match(p.name):
            found.append((int(m.group(1)), p))
        elif p.name.lower().endswith(".png"):  # a mask it would leave out without a word
            raise InputError(p, "is not named <n>.png as the masks of amg.py's folder layout are (0.png, 1.png, ...)")
    for n, path in sorted(found):
        if n in pngs:
            raise InputError(path, f"and {pngs[n].name} both are mask {n}; keep one of them")
        pngs[n] = path
    return pngs


def _read_png_folder(folder: Path, shape: tuple[int, int] | None) -> MaskSet:
    pngs = _list_pngs(folder)
    csv_path = folder / "metadata.csv"
    meta = _read_csv(csv_path, pngs) if os.path.lexists(csv_path) else {}
    masks: np.ndarray | None = None  # filled in place: no per-mask temporaries, no stacking copy
    records = []
    for index, (n, path) in enumerate(pngs.items()):
        m = read_png(path)
        if m.ndim != 2:
            raise InputError(path, f"a mask PNG must have one channel, got shape {m.shape}")
        if shape is None:
            shape = m.shape
        if m.shape != tuple(shape):
            raise InputError(path, f"mask is {m.shape[0]}x{m.shape[1]} (HxW) but expected {shape[0]}x{shape[1]}")
        if masks is None:
            _check_claimed_size(folder, len(pngs), *m.shape)
            masks = np.empty((len(pngs), *m.shape), bool)
        png_mask_bits(path, m, masks[index])
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
        raise InputError(masks_dir / f"{image_id}.json",
                         f"no masks for this image (neither {image_id}.json nor {image_id}/)")
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
    records = []
    for mask, rec, box in zip(maskset.dense, maskset.records, maskset.boxes):
        out = {"segmentation": mask_to_rle(mask)}
        out.update(_complete_record(mask, rec, box))
        records.append(out)
    atomic_write_bytes(path, json.dumps(records).encode())


def write_masks_png_folder(folder: Path, maskset: MaskSet,
                           columns: Mapping[str, Sequence[Any]] | None = None) -> None:
    """Write ``<n>.png`` files and ``metadata.csv`` into ``folder`` as amg.py does.

    ``columns`` (name -> one value per mask) are appended to ``metadata.csv`` after amg.py's
    (the SAM writers add ``level``). The folder is filled under a temporary name and renamed
    into place (:func:`sepl_tree.files.atomic_folder`), so a reader never sees half of it. Its
    files and the folder get the modes the umask gives (as
    :func:`sepl_tree.files.atomic_write_bytes` files do).
    """
    columns = dict(columns or {})
    text = io.StringIO()
    rows = csv.writer(text, lineterminator="\n")  # (a further column's text may hold a comma: quoted)
    rows.writerow([*_AMG_COLUMNS, *columns])
    with atomic_folder(folder) as tmp:
        for n, (mask, rec, box) in enumerate(zip(maskset.dense, maskset.records, maskset.boxes)):
            Image.fromarray(mask.astype(np.uint8) * 255).save(tmp / f"{n}.png")
            r = _complete_record(mask, rec, box)
            (px, py), = r["point_coords"][:1] or [[0.0, 0.0]]
            row = [n, r["area"], *r["bbox"], px, py, r["predicted_iou"], r["stability_score"], *r["crop_box"],
                   *(values[n] for values in columns.values())]
            rows.writerow(row)
        (tmp / "metadata.csv").write_text(text.getvalue())
