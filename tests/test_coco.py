"""COCO ground truth from an instances JSON, the coco-gt command, and the dataset presets."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from typer.testing import CliRunner

from sepl_tree.classes import COCO_CATEGORY_IDS, COCO_CLASSES, VOC_CLASSES
from sepl_tree.label_maps import voc_palette
from sepl_tree.cli import app
from sepl_tree.coco import CocoInstances, semantic_label
from sepl_tree.errors import InputError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE, written out by hand: run lengths over the column-major pixels, zeros first."""
    flat = [int(v) for v in np.asarray(mask, bool).T.reshape(-1)]
    counts, current, run = [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def box(h: int, w: int, rows: slice, cols: slice) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[rows, cols] = True
    return m


def write_instances(path: Path) -> Path:
    categories = [{"id": cid, "name": name} for cid, name in zip(COCO_CATEGORY_IDS, COCO_CLASSES[1:])]
    compressed = mask_utils.encode(np.asfortranarray(box(3, 3, slice(0, 2), slice(0, 3)).astype(np.uint8)))
    compressed["counts"] = compressed["counts"].decode("ascii")
    annotations = [
        # image 9 (4 x 5): a big person, a small dog on it, a crowd of toothbrushes top right
        {"id": 1, "image_id": 9, "category_id": 1, "iscrowd": 0,
         "segmentation": uncompressed_rle(box(4, 5, slice(0, 4), slice(0, 3)))},
        {"id": 2, "image_id": 9, "category_id": 18, "iscrowd": 0,
         "segmentation": uncompressed_rle(box(4, 5, slice(1, 3), slice(1, 4)))},
        {"id": 3, "image_id": 9, "category_id": 90, "iscrowd": 1,
         "segmentation": uncompressed_rle(box(4, 5, slice(0, 2), slice(2, 5)))},
        # image 25 (3 x 3): a compressed-RLE cat on the two top rows
        {"id": 4, "image_id": 25, "category_id": 17, "iscrowd": 0, "segmentation": compressed},
        # image 30 (12 x 12): a polygon chair covering the middle
        {"id": 5, "image_id": 30, "category_id": 62, "iscrowd": 0,
         "segmentation": [[2.0, 2.0, 9.0, 2.0, 9.0, 9.0, 2.0, 9.0]]},
    ]
    data = {
        "images": [{"id": 9, "file_name": "COCO_val2014_000000000009.jpg", "height": 4, "width": 5},
                   {"id": 25, "file_name": "COCO_val2014_000000000025.jpg", "height": 3, "width": 3},
                   {"id": 30, "file_name": "COCO_val2014_000000000030.jpg", "height": 12, "width": 12},
                   {"id": 42, "file_name": "COCO_val2014_000000000042.jpg", "height": 2, "width": 2}],
        "annotations": annotations,
        "categories": categories,
    }
    path.write_text(json.dumps(data))
    return path


# Smaller dog (17) wins over the person (1); crowd (toothbrush) is 255 only where no instance covers it.
EXPECTED_9 = [
    [1, 1, 1, 255, 255],
    [1, 17, 17, 17, 255],
    [1, 17, 17, 17, 0],
    [1, 1, 1, 0, 0],
]


def test_instances_to_semantic_labels(tmp_path):
    coco = CocoInstances.load(write_instances(tmp_path / "instances_val2014.json"))
    assert coco.num_classes == 81
    assert coco.ids() == [f"COCO_val2014_0000000000{n}" for n in ("09", "25", "30", "42")]
    assert coco.label("COCO_val2014_000000000009").tolist() == EXPECTED_9
    assert coco.label("COCO_val2014_000000000025").tolist() == [[16, 16, 16], [16, 16, 16], [0, 0, 0]]
    chair = coco.label("COCO_val2014_000000000030")
    assert chair[5, 5] == 57 and chair[0, 0] == 0 and chair[11, 11] == 0  # COCO id 62 is chair, class 57
    assert COCO_CLASSES[57] == "chair"
    assert coco.label("COCO_val2014_000000000042").tolist() == [[0, 0], [0, 0]]
    with pytest.raises(InputError, match="no image 'nope'"):
        coco.label("nope")


def test_equal_areas_later_annotation_wins():
    a = box(2, 3, slice(0, 2), slice(0, 2))
    b = box(2, 3, slice(0, 2), slice(1, 3))
    assert semantic_label([(5, 2, False, a), (4, 3, False, b)], 2, 3).tolist() == [[2, 2, 3], [2, 2, 3]]


def test_malformed_instances_name_the_file(tmp_path):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "height": 2, "width": 2}],
                                "annotations": [{"id": 7, "image_id": 1, "category_id": 1,
                                                 "segmentation": {"size": [3, 3], "counts": [0, 9]}}],
                                "categories": [{"id": 1, "name": "person"}]}))
    with pytest.raises(InputError, match=r"instances.json: annotation 7 of image 'a'"):
        CocoInstances.load(path).label("a")


def test_coco_gt_command(tmp_path):
    path = write_instances(tmp_path / "instances_val2014.json")
    out = tmp_path / "gt"
    runner = CliRunner()
    result = runner.invoke(app, ["coco-gt", "--instances", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = np.array(Image.open(out / "COCO_val2014_000000000009.png"))
    assert written.tolist() == EXPECTED_9
    assert sorted(p.name for p in out.glob("*.png")) == [f"COCO_val2014_0000000000{n}.png" for n in ("09", "25", "30", "42")]
    assert "person" in result.output and "dog" in result.output and "ignore (255)" in result.output
    again = runner.invoke(app, ["coco-gt", "--instances", str(path), "--out", str(out)])
    assert again.exit_code == 0 and "0 written, 4 skipped" in again.output
    by_id = runner.invoke(app, ["coco-gt", "--instances", str(path), "--out", str(tmp_path / "by_id"), "--name-by", "id"])
    assert by_id.exit_code == 0, by_id.output
    assert sorted(p.name for p in (tmp_path / "by_id").glob("*.png")) == ["25.png", "30.png", "42.png", "9.png"]
    assert np.array(Image.open(tmp_path / "by_id" / "9.png")).tolist() == EXPECTED_9
    bad = runner.invoke(app, ["coco-gt", "--instances", str(tmp_path / "missing.json"), "--out", str(out)])
    assert bad.exit_code == 1 and "missing.json: file not found" in bad.output


@pytest.mark.parametrize("name", ["voc", "coco"])
def test_preset_files_agree_with_package_tables(name):
    with open(CONFIGS / f"{name}.toml", "rb") as f:
        preset = tomllib.load(f)
    names = VOC_CLASSES if name == "voc" else COCO_CLASSES
    assert tuple(preset["class_names"]) == names and preset["num_classes"] == len(names) == {"voc": 21, "coco": 81}[name]
    assert preset["palette"] == voc_palette(len(names)).tolist()
    assert preset["palette"][1] == [128, 0, 0] and preset["palette"][15] == [192, 128, 128]


def test_coco_preset_category_ids():
    with open(CONFIGS / "coco.toml", "rb") as f:
        data = tomllib.load(f)
    assert tuple(data["category_ids"]) == COCO_CATEGORY_IDS
    assert len(COCO_CATEGORY_IDS) == 80 and COCO_CATEGORY_IDS[-1] == 90 and 12 not in COCO_CATEGORY_IDS
    assert COCO_CLASSES[COCO_CATEGORY_IDS.index(18) + 1] == "dog"
