"""Image-level labels from IRN's cls_labels.npy, VOC XML annotations and COCO instances JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sepl_tree.classes import COCO_CATEGORY_IDS, COCO_CLASSES
from sepl_tree.errors import InputError
from sepl_tree.image_labels import load_image_labels
from tests.helpers import VOC_SAMPLE, needs_voc_sample

DATA = VOC_SAMPLE


def test_irn_cls_labels(tmp_path):
    a = np.zeros(20, np.float32)
    a[[0, 11]] = 1  # aeroplane, dog
    b = np.zeros(20, np.float32)
    b[14] = 1  # person
    path = tmp_path / "cls_labels.npy"
    np.save(path, {2007000032: a, 2008000005: b, 2010000001: np.zeros(20, np.float32)})
    assert load_image_labels(path, 21) == {
        "2007_000032": frozenset({1, 12}),
        "2008_000005": frozenset({15}),
        "2010_000001": frozenset(),
    }


def test_irn_cls_labels_wrong_length_names_file(tmp_path):
    path = tmp_path / "cls_labels.npy"
    np.save(path, {2007000032: np.ones(20, np.float32)})
    with pytest.raises(InputError, match=r"cls_labels.npy: .*20 class scores, expected 80"):
        load_image_labels(path, 81)
    np.save(path, np.zeros(3))
    with pytest.raises(InputError, match="cls_labels.npy: expected IRN's cls_labels.npy"):
        load_image_labels(path, 21)


def _voc_xml(names: list[str], difficult: int = 0) -> str:
    objects = "".join(
        f"<object><name>{n}</name><pose>Left</pose><truncated>0</truncated><difficult>{difficult}</difficult>"
        f"<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>" for n in names)
    return (f"<annotation><folder>VOC2012</folder><filename>x.jpg</filename>"
            f"<size><width>500</width><height>375</height><depth>3</depth></size>{objects}</annotation>")


def test_voc_annotations_folder(tmp_path):
    (tmp_path / "2007_000032.xml").write_text(_voc_xml(["aeroplane", "aeroplane", "person"]))
    (tmp_path / "2007_000033.xml").write_text(_voc_xml(["tvmonitor"], difficult=1))
    assert load_image_labels(tmp_path, 21) == {"2007_000032": frozenset({1, 15}), "2007_000033": frozenset({20})}


def test_voc_annotations_errors(tmp_path):
    (tmp_path / "2007_000032.xml").write_text(_voc_xml(["unicorn"]))
    with pytest.raises(InputError, match=r"2007_000032.xml: unknown VOC class 'unicorn'"):
        load_image_labels(tmp_path, 21)
    (tmp_path / "2007_000032.xml").write_text("<annotation><object>")
    with pytest.raises(InputError, match="2007_000032.xml: not a readable XML"):
        load_image_labels(tmp_path, 21)
    with pytest.raises(InputError, match="K = 81"):
        load_image_labels(tmp_path, 81)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no VOC annotation files"):
        load_image_labels(empty, 21)


def _coco_json(path: Path) -> Path:
    categories = [{"id": cid, "name": name, "supercategory": "x"}
                  for cid, name in zip(COCO_CATEGORY_IDS, COCO_CLASSES[1:])]
    data = {
        "images": [{"id": 9, "file_name": "COCO_train2014_000000000009.jpg", "height": 4, "width": 4},
                   {"id": 25, "file_name": "COCO_train2014_000000000025.jpg", "height": 4, "width": 4}],
        "annotations": [
            {"id": 1, "image_id": 9, "category_id": 18, "iscrowd": 0, "segmentation": [[0, 0, 2, 0, 2, 2]],
             "area": 2.0, "bbox": [0, 0, 2, 2]},
            {"id": 2, "image_id": 9, "category_id": 90, "iscrowd": 1,
             "segmentation": {"size": [4, 4], "counts": [0, 16]}, "area": 16.0, "bbox": [0, 0, 4, 4]},
            {"id": 3, "image_id": 9, "category_id": 18, "iscrowd": 0, "segmentation": [[1, 1, 3, 1, 3, 3]],
             "area": 2.0, "bbox": [1, 1, 2, 2]},
        ],
        "categories": categories,
    }
    path.write_text(json.dumps(data))
    return path


def test_coco_instances_json(tmp_path):
    path = _coco_json(tmp_path / "instances_train2014.json")
    # COCO id 18 is dog, the 17th category in id order; id 90 (toothbrush, crowd) is the 80th.
    assert load_image_labels(path, 81) == {
        "COCO_train2014_000000000009": frozenset({17, 80}),
        "COCO_train2014_000000000025": frozenset(),
        "9": frozenset({17, 80}), "25": frozenset(),  # for CAM files named by numeric id
    }


def test_coco_json_errors(tmp_path):
    path = _coco_json(tmp_path / "instances.json")
    with pytest.raises(InputError, match="instances.json: 80 categories, but K = 21"):
        load_image_labels(path, 21)
    with pytest.raises(InputError, match=r"instances.json: 80 categories, but K = 91 needs 90 \(set --num-classes\)"):
        load_image_labels(path, 91)  # fewer categories than K needs: the classes would not be COCO's 1..80
    (tmp_path / "bad.json").write_text('{"images": []}')
    with pytest.raises(InputError, match="bad.json: not a COCO instances file"):
        load_image_labels(tmp_path / "bad.json", 81)
    with pytest.raises(InputError, match="nothing.json: image-level label file not found"):
        load_image_labels(tmp_path / "nothing.json", 81)
    (tmp_path / "labels.txt").write_text("2007_000032 0 11\n")
    with pytest.raises(InputError, match="labels.txt: unknown image-level label format"):
        load_image_labels(tmp_path / "labels.txt", 21)


@needs_voc_sample
def test_real_cls_labels_match_ground_truth_classes():
    labels = load_image_labels(DATA / "cls_labels.npy", 21)
    ids = (DATA / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    for image_id in ids[:40]:
        gt = np.array(Image.open(DATA / "SegmentationClass" / f"{image_id}.png"))
        assert labels[image_id] == frozenset(set(np.unique(gt).tolist()) - {0, 255}), image_id


@pytest.mark.parametrize("annotation, message", [
    ({"id": 5, "image_id": 7, "category_id": 18}, "annotation 5 refers to unknown image id 7"),
    ({"id": 5, "image_id": 9, "category_id": 12}, "annotation 5 refers to unknown category id 12"),  # (no COCO 12)
    ({"id": 5, "category_id": 18}, "malformed image-level labels (KeyError: 'image_id')"),
    (5, "malformed image-level labels (TypeError: "),
])
def test_coco_json_labels_name_a_bad_annotation(tmp_path, annotation, message):
    path = _coco_json(tmp_path / "instances.json")
    data = json.loads(path.read_text())
    data["annotations"].append(annotation)
    path.write_text(json.dumps(data))
    with pytest.raises(InputError) as err:
        load_image_labels(path, 81)
    assert str(err.value).startswith(f"{path}: {message}")


def test_coco_json_labels_refuse_two_images_with_one_file_name(tmp_path):
    """(Their image-level labels would merge into one id without a word.)"""
    path = _coco_json(tmp_path / "instances.json")
    data = json.loads(path.read_text())
    data["images"][1]["file_name"] = data["images"][0]["file_name"]
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="instances.json: images 9 and 25 have the same file_name stem"):
        load_image_labels(path, 81)
    data["images"][1]["file_name"], data["images"][1]["id"] = "b.jpg", "25"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=r"instances.json: images\[1\] \(b.jpg\): id '25' is not an integer"):
        load_image_labels(path, 81)


@pytest.mark.parametrize("k", [2, 3, 21, 81, 254, 255])
def test_first_bad_label_is_the_smallest_value_outside_the_labels(k):
    from sepl_tree.label_maps import IGNORE, first_bad_label, label_values

    rng = np.random.default_rng(k)
    for high in (k, k + 1, 256):  # all labels; one value just past K; anything
        label = rng.integers(0, min(high, 256), (23, 31)).astype(np.uint8)
        label[::5] = IGNORE
        values = label_values(label)
        bad = values[(values >= k) & (values != IGNORE)]
        assert first_bad_label(label, k) == (int(bad[0]) if bad.size else None)
    assert first_bad_label(np.full((2, 2), k - 1, np.uint8), k) is None
    assert first_bad_label(np.zeros((0, 4), np.uint8), k) is None
    if k < 255:
        assert first_bad_label(np.array([[0, k, IGNORE]], np.uint8), k) == k
