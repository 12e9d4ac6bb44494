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
from sepl_tree.coco import CocoInstances, annotation_mask, semantic_label
from sepl_tree.errors import InputError
from sepl_tree.files import MAX_PIXELS, write_label_png

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


# recam: the dog (17), later in the file, is painted over the person (1); the crowd (toothbrush) is not painted.
EXPECTED_9 = [
    [1, 1, 1, 0, 0],
    [1, 17, 17, 17, 0],
    [1, 17, 17, 17, 0],
    [1, 1, 1, 0, 0],
]
# smaller-wins: the smaller dog wins over the person; the crowd is 255 only where no instance covers it.
EXPECTED_9_SMALLER_WINS = [
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
    assert coco.label("COCO_val2014_000000000009", "smaller-wins").tolist() == EXPECTED_9_SMALLER_WINS
    assert coco.label("COCO_val2014_000000000025").tolist() == [[16, 16, 16], [16, 16, 16], [0, 0, 0]]
    chair = coco.label("COCO_val2014_000000000030")
    assert chair[5, 5] == 57 and chair[0, 0] == 0 and chair[11, 11] == 0  # COCO id 62 is chair, class 57
    assert COCO_CLASSES[57] == "chair"
    assert coco.label("COCO_val2014_000000000042").tolist() == [[0, 0], [0, 0]]
    with pytest.raises(InputError, match="no image 'nope'"):
        coco.label("nope")


def test_smaller_wins_with_equal_areas_the_later_annotation_id_wins():
    a = box(2, 3, slice(0, 2), slice(0, 2))
    b = box(2, 3, slice(0, 2), slice(1, 3))
    assert semantic_label([(5, 2, False, a), (4, 3, False, b)], 2, 3, "smaller-wins").tolist() == [[2, 2, 3], [2, 2, 3]]


def test_recam_paints_in_the_files_order_whatever_the_ids_and_sizes():
    big, small = box(2, 3, slice(0, 2), slice(0, 3)), box(2, 3, slice(0, 1), slice(0, 1))
    assert semantic_label([(9, 2, False, small), (1, 3, False, big)], 2, 3).tolist() == [[3, 3, 3], [3, 3, 3]]
    assert semantic_label([(1, 3, False, big), (9, 2, False, small)], 2, 3).tolist() == [[2, 3, 3], [3, 3, 3]]
    with pytest.raises(ValueError, match="unknown COCO ground-truth rule 'largest'"):
        semantic_label([], 2, 3, "largest")


def recam_reference(path: Path) -> dict[int, np.ndarray]:
    """ReCAM's mscoco/annToMask.py rule through pycocotools' COCO API: per image, its non-crowd
    annotations in the file's order, each mask painted over the map with its class (1..80)."""
    from pycocotools.coco import COCO

    coco = COCO(str(path))
    classes = {cat_id: n for n, cat_id in enumerate(sorted(coco.getCatIds()), start=1)}
    maps = {}
    for image_id, image in coco.imgs.items():
        label = np.zeros((image["height"], image["width"]), np.uint8)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False)):
            label[coco.annToMask(ann) == 1] = classes[ann["category_id"]]
        maps[image_id] = label
    return maps


def test_recam_labels_are_those_of_the_pycocotools_reference(tmp_path):
    path = write_instances(tmp_path / "instances_val2014.json")
    data = json.loads(path.read_text())
    # one more image where three instances overlap, listed out of id order, with a crowd over them
    data["images"].append({"id": 50, "file_name": "COCO_val2014_000000000050.jpg", "height": 6, "width": 7})
    for ann_id, cat, crowd, rows, cols in [(12, 3, 0, slice(0, 6), slice(0, 7)), (10, 44, 0, slice(1, 4), slice(2, 6)),
                                           (11, 1, 1, slice(0, 3), slice(0, 4)), (13, 18, 0, slice(2, 5), slice(0, 3))]:
        data["annotations"].append({"id": ann_id, "image_id": 50, "category_id": cat, "iscrowd": crowd,
                                    "segmentation": uncompressed_rle(box(6, 7, rows, cols))})
    path.write_text(json.dumps(data))
    reference = recam_reference(path)
    coco = CocoInstances.load(path)
    assert sorted(reference) == sorted(img["id"] for img in coco.images.values())
    for stem, img in coco.images.items():
        assert np.array_equal(coco.label(stem), reference[img["id"]]), stem
    # the bottle (10) over the car (12), listed before it: the file's order, not the ids'; the dog over the
    # bottle; under the crowd, the car
    assert (reference[50][1, 2], reference[50][2, 2], reference[50][0, 0]) == (40, 17, 3)


def test_malformed_instances_name_the_file(tmp_path):
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "height": 2, "width": 2}],
                                "annotations": [{"id": 7, "image_id": 1, "category_id": 1,
                                                 "segmentation": {"size": [3, 3], "counts": [0, 9]}}],
                                "categories": [{"id": 1, "name": "person"}]}))
    with pytest.raises(InputError, match=r"instances.json: annotation 7 of image 'a'"):
        CocoInstances.load(path).label("a")


def test_decoding_is_strict(tmp_path):
    """pycocotools leaves the pixels RLE counts do not reach uninitialised; the decoder refuses them."""
    with pytest.raises(ValueError, match="do not add up to 60x80 pixels"):
        annotation_mask({"size": [60, 80], "counts": "09"}, 60, 80)
    # an entry load would have refused is still one line naming the file, the annotation and the image
    coco = CocoInstances.load(tiny_instances(tmp_path / "inst.json"))
    coco.annotations[1][0]["segmentation"] = {"size": [60, 80], "counts": [0, 9]}
    with pytest.raises(InputError, match=r"inst.json: annotation 1 of image 'im1': RLE counts do not add up"):
        coco.label("im1")


def test_coco_gt_command(tmp_path):
    path = write_instances(tmp_path / "instances_val2014.json")
    out = tmp_path / "gt"
    runner = CliRunner()
    result = runner.invoke(app, ["coco-gt", "--instances", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = np.array(Image.open(out / "COCO_val2014_000000000009.png"))
    assert written.tolist() == EXPECTED_9
    assert sorted(p.name for p in out.glob("*.png")) == [f"COCO_val2014_0000000000{n}.png" for n in ("09", "25", "30", "42")]
    assert "person" in result.output and "dog" in result.output and "ignore (255)" not in result.output
    again = runner.invoke(app, ["coco-gt", "--instances", str(path), "--out", str(out)])
    assert again.exit_code == 0 and "0 written, 4 skipped" in again.output
    by_id = runner.invoke(app, ["coco-gt", "--instances", str(path), "--out", str(tmp_path / "by_id"), "--name-by", "id"])
    assert by_id.exit_code == 0, by_id.output
    assert sorted(p.name for p in (tmp_path / "by_id").glob("*.png")) == ["25.png", "30.png", "42.png", "9.png"]
    assert np.array(Image.open(tmp_path / "by_id" / "9.png")).tolist() == EXPECTED_9
    other = runner.invoke(app, ["coco-gt", "--instances", str(path), "--out", str(out), "--rule", "smaller-wins"])
    assert other.exit_code == 1 and "made with other settings" in other.output and "rule" in other.output
    assert np.array(Image.open(out / "COCO_val2014_000000000009.png")).tolist() == EXPECTED_9  # left as it was
    smaller = runner.invoke(app, ["coco-gt", "--instances", str(path), "--out", str(tmp_path / "smaller"),
                                  "--rule", "smaller-wins"])
    assert smaller.exit_code == 0 and "ignore (255)" in smaller.output
    written = np.array(Image.open(tmp_path / "smaller" / "COCO_val2014_000000000009.png"))
    assert written.tolist() == EXPECTED_9_SMALLER_WINS
    bad = runner.invoke(app, ["coco-gt", "--instances", str(tmp_path / "missing.json"), "--out", str(out)])
    assert bad.exit_code == 1 and "missing.json: file not found" in bad.output


def test_a_folder_made_before_rules_existed_resumes_as_smaller_wins(tmp_path):
    path = tiny_instances(tmp_path / "inst.json")
    out = tmp_path / "gt"
    runner = CliRunner()
    assert runner.invoke(app, ["coco-gt", "--instances", str(path), "--out", str(out), "--rule", "smaller-wins"]).exit_code == 0
    manifest = json.loads((out / "coco-gt.json").read_text())
    del manifest["settings"]["rule"]  # as sepl-tree wrote it before --rule
    (out / "coco-gt.json").write_text(json.dumps(manifest))
    same = runner.invoke(app, ["coco-gt", "--instances", str(path), "--out", str(out), "--rule", "smaller-wins"])
    assert same.exit_code == 0 and "0 written, 2 skipped" in same.output
    other = runner.invoke(app, ["coco-gt", "--instances", str(path), "--out", str(out)], env={"COLUMNS": "300"})
    assert other.exit_code == 1 and "(rule 'smaller-wins' -> 'recam')" in other.output


def test_coco_gt_says_when_the_categories_are_not_cocos_80(tmp_path):
    path = write_instances(tmp_path / "instances_val2014.json")
    full = CliRunner().invoke(app, ["coco-gt", "--instances", str(path), "--out", str(tmp_path / "full")])
    assert full.exit_code == 0 and "not COCO's 80" not in full.output
    tiny = tiny_instances(tmp_path / "inst.json")  # one category
    result = CliRunner().invoke(app, ["coco-gt", "--instances", str(tiny), "--out", str(tmp_path / "one")],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 0 and f"{tiny}: its 1 categories are not COCO's 80, so classes are numbered 1..1" in (
        result.output)
    rows = [line.split("│")[1].strip() for line in result.output.splitlines() if line.count("│") == 4]
    assert rows == ["background", "a"]  # the class table names the file's category, not "class1" or "aeroplane"
    odd = tiny_instances(tmp_path / "odd.json", lambda data: data["categories"][0].update(name="a[/b]"))
    result = CliRunner().invoke(app, ["coco-gt", "--instances", str(odd), "--out", str(tmp_path / "odd")],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 0 and "│ a[/b] " in result.output  # a name, not rich markup (which raised)


def test_coco_gt_makes_label_maps_older_than_the_instances_file_again(tmp_path):
    import os

    path = tiny_instances(tmp_path / "inst.json")
    out = tmp_path / "gt"
    runner = CliRunner()
    assert runner.invoke(app, ["coco-gt", "--instances", str(path), "--out", str(out)]).exit_code == 0
    assert np.array(Image.open(out / "im1.png")).any()
    earlier = (out / "im1.png").stat().st_mtime - 5
    for name in ("im1.png", "im2.png"):
        os.utime(out / name, (earlier, earlier))
    tiny_instances(path, lambda data: data["annotations"].clear())  # the file edited in place
    result = runner.invoke(app, ["coco-gt", "--instances", str(path), "--out", str(out)], env={"COLUMNS": "300"})
    assert result.exit_code == 0 and "2 label map(s) in " in result.output and "are out of date (e.g. im" in result.output
    assert not np.array(Image.open(out / "im1.png")).any()  # the edited file's (empty) label map
    assert json.loads((out / "coco-gt.json").read_text())["counts"]["made_again_inputs_changed"] == 2
    again = runner.invoke(app, ["coco-gt", "--instances", str(path), "--out", str(out)])
    assert again.exit_code == 0 and "0 written, 2 skipped" in again.output


def test_coco_gt_sees_an_instances_file_copied_with_its_old_time(tmp_path):
    """(``cp -p`` of another instances JSON over the one the label maps were made from: its time is
    older than theirs, which make's rule took for "up to date".)"""
    import os

    path = tiny_instances(tmp_path / "inst.json")
    out = tmp_path / "gt"
    runner = CliRunner()
    assert runner.invoke(app, ["coco-gt", "--instances", str(path), "--out", str(out)]).exit_code == 0
    tiny_instances(path, lambda data: data["annotations"].clear())
    old = (out / "im1.png").stat().st_mtime - 3600
    os.utime(path, (old, old))
    result = runner.invoke(app, ["coco-gt", "--instances", str(path), "--out", str(out)], env={"COLUMNS": "300"})
    assert result.exit_code == 0 and "2 label map(s) in " in result.output and "are out of date" in result.output
    assert not np.array(Image.open(out / "im1.png")).any()
    again = runner.invoke(app, ["coco-gt", "--instances", str(path), "--out", str(out)])
    assert again.exit_code == 0 and "0 written, 2 skipped" in again.output


@pytest.mark.parametrize("name_by", ["stem", "id"])
def test_coco_gt_sees_an_instances_file_replaced_while_it_was_read(tmp_path, monkeypatch, name_by):
    """(COCO train's file takes seconds to read: one replaced meanwhile must not be recorded as
    the one the label maps were made from. Its time is taken before it is read.)"""
    import sepl_tree.coco as coco

    path = tiny_instances(tmp_path / "inst.json")
    out = tmp_path / "gt"
    argv = ["coco-gt", "--instances", str(path), "--out", str(out), "--name-by", name_by]
    load = coco.CocoInstances.load

    def load_then_replace(cls, file):
        loaded = load(file)
        tiny_instances(path, lambda data: data["annotations"].clear())  # the new version lands mid-run
        return loaded

    monkeypatch.setattr(coco.CocoInstances, "load", classmethod(load_then_replace))
    assert CliRunner().invoke(app, argv).exit_code == 0
    monkeypatch.undo()
    first = sorted(p.name for p in out.glob("*.png"))
    assert any(np.array(Image.open(out / name)).any() for name in first)  # made from the file as it was read
    result = CliRunner().invoke(app, argv, env={"COLUMNS": "300"})
    assert result.exit_code == 0 and "2 label map(s) in " in result.output, result.output
    assert not any(np.array(Image.open(out / name)).any() for name in first)  # the new version's (empty) maps


def test_coco_gt_says_what_it_reads_and_checks_on_big_inputs(tmp_path, monkeypatch):
    import sepl_tree.cli.coco_gt as coco_gt
    import sepl_tree.cli.common as common

    path = write_instances(tmp_path / "instances_val2014.json")
    runner = CliRunner()
    quiet = runner.invoke(app, ["coco-gt", "--instances", str(path), "--out", str(tmp_path / "a")])
    assert quiet.exit_code == 0 and "reading" not in quiet.stderr and "checking" not in quiet.stderr
    monkeypatch.setattr(coco_gt, "SAY_READING_BYTES", path.stat().st_size)
    monkeypatch.setattr(common, "CHECKING_NOTE_IDS", 4)
    said = runner.invoke(app, ["coco-gt", "--instances", str(path), "--out", str(tmp_path / "b")])
    assert said.exit_code == 0, said.output
    text = " ".join(said.stderr.split())
    assert "reading " in text and "instances_val2014.json (0 MB) ..." in text
    assert "checking 4 ids (label maps already in" in text


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


def tiny_instances(path: Path, edit=None) -> Path:
    """Two 60 x 80 images, one triangle annotation on the first; ``edit(data)`` spoils it."""
    data = {"images": [{"id": k, "file_name": f"im{k}.jpg", "height": 60, "width": 80} for k in (1, 2)],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 1,
                             "bbox": [10, 10, 30, 30], "segmentation": [[10, 10, 40, 10, 40, 40]]}],
            "categories": [{"id": 1, "name": "a"}]}
    if edit:
        edit(data)
    path.write_text(json.dumps(data))
    return path


def image(k: int, **fields):
    return lambda data: data["images"][k - 1].update(fields)


def annotation(**fields):
    return lambda data: data["annotations"][0].update(fields)


def without_segmentation(data):
    del data["annotations"][0]["segmentation"]


def twice_category(data):
    data["categories"].append({"id": 1, "name": "b"})


BAD_INSTANCES = {
    "negative height": (image(2, height=-5), "image 2 (im2.jpg): height -5 is not a positive integer"),
    "zero width": (image(2, width=0), "image 2 (im2.jpg): width 0 is not a positive integer"),
    "fractional height": (image(2, height=6.5), "image 2 (im2.jpg): height 6.5 is not a positive integer"),
    "string id": (image(2, id="2"), "images[1] (im2.jpg): id '2' is not an integer"),
    "too many pixels": (image(2, height=10000, width=10000),
                        f"image 2 (im2.jpg): is 10000x10000 (HxW) = 100000000 pixels, more than the limit "
                        f"of {MAX_PIXELS} (a decompression bomb?)"),
    "same file_name": (image(2, file_name="im1.jpg"),
                       "images 1 and 2 have the same file_name stem 'im1' (im1.jpg, im1.jpg): both label maps "
                       "would be im1.png"),
    "same stem": (image(2, file_name="other/im1.png"), "images 1 and 2 have the same file_name stem 'im1'"),
    "same id": (image(2, id=1), "images im1.jpg and im2.jpg have the same id 1"),
    "unknown image": (annotation(image_id=7), "annotation 1: image_id 7 is not among the file's images"),
    "unknown category": (annotation(category_id=999),
                         "annotation 1 of image 'im1': category_id 999 is not among the file's categories"),
    "no segmentation": (without_segmentation, "annotation 1 of image 'im1': has no segmentation"),
    "category twice": (twice_category, "category id 1 is listed twice"),
    "iscrowd 2": (annotation(iscrowd=2), "annotation 1 of image 'im1': iscrowd 2 is not 0 or 1"),
    "flat polygon": (annotation(segmentation=[10, 10, 40, 10, 40, 40]),
                     "annotation 1 of image 'im1': polygon 1 is not a list of numbers"),
    # NaN or far-away points make pycocotools allocate without bound (the process is killed)
    "NaN in polygon": (annotation(segmentation=[[10, 10, float("nan"), 10, 40, 40]]),
                       "annotation 1 of image 'im1': polygon 1 has a coordinate that is NaN, infinite or outside "
                       "x in [-80, 160], y in [-60, 120]"),
    "far polygon": (annotation(segmentation=[[10, 10, 1e9, 10, 40, 40]]),
                    "annotation 1 of image 'im1': polygon 1 has a coordinate that is NaN"),
    # pycocotools leaves the pixels uncompressed counts do not reach uninitialised (random classes)
    "short RLE": (annotation(segmentation={"size": [60, 80], "counts": [0, 100]}),
                  "annotation 1 of image 'im1': RLE counts add up to 100 pixels, not the image's 4800"),
    "short compressed RLE": (annotation(segmentation={"size": [60, 80], "counts": "09"}),
                             "annotation 1 of image 'im1': compressed RLE: RLE counts do not add up to 60x80 pixels"),
    "RLE size": (annotation(segmentation={"size": [80, 60], "counts": [4800]}),
                 "annotation 1 of image 'im1': RLE size [80, 60] is not the image's [height, width] [60, 80]"),
    "segmentation a string": (annotation(segmentation="abc"),
                              "annotation 1 of image 'im1': segmentation of type str is neither polygons nor RLE"),
    "negative RLE count": (annotation(segmentation={"size": [60, 80], "counts": [4805, -5]}),
                           "annotation 1 of image 'im1': RLE counts are not non-negative integers"),
    "RLE counts a dict": (annotation(segmentation={"size": [60, 80], "counts": {"a": 1}}),
                          "annotation 1 of image 'im1': RLE counts of type dict are neither a list nor a string"),
    "RLE counts not ASCII": (annotation(segmentation={"size": [60, 80], "counts": "é"}),
                             "annotation 1 of image 'im1': compressed RLE counts are not ASCII"),
    "empty file_name": (image(2, file_name=""), "image 2: file_name '' is not a file name"),
    "an image that is a number": (lambda data: data["images"].append(5), "images[2] is not an object"),
    "an annotation that is a number": (lambda data: data["annotations"].append(5), "annotations[1] is not an object"),
    "images not a list": (lambda data: data.update(images={}), "'images' is not a list"),
}


@pytest.mark.parametrize("case", BAD_INSTANCES)
def test_coco_gt_refuses_bad_instances_before_writing(tmp_path, case):
    edit, message = BAD_INSTANCES[case]
    path = tiny_instances(tmp_path / "inst.json", edit)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["coco-gt", "--instances", str(path), "--out", str(out)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert f"error: {path}: {message}" in result.output
    assert not out.exists()  # the whole file is checked before the folder is made


def test_coco_gt_bad_instances_keep_earlier_outputs(tmp_path):
    out = tmp_path / "out"
    runner = CliRunner()
    path = tiny_instances(tmp_path / "inst.json")
    good = runner.invoke(app, ["coco-gt", "--instances", str(path), "--out", str(out)])
    assert good.exit_code == 0, good.output
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(before) == ["coco-gt.json", "im1.png", "im2.png", "made_from.jsonl"]
    tiny_instances(path, annotation(category_id=999))
    bad = runner.invoke(app, ["coco-gt", "--instances", str(path), "--out", str(out), "--overwrite"])
    assert bad.exit_code == 1 and "category_id 999 is not among the file's categories" in bad.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_coco_gt_refuses_ids_not_in_the_file(tmp_path):
    path = tiny_instances(tmp_path / "inst.json")
    ids = tmp_path / "ids.txt"
    ids.write_text("im1\nim9\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["coco-gt", "--instances", str(path), "--out", str(out), "--ids", str(ids)])
    assert result.exit_code == 1, result.output
    assert f"error: {ids}: 1 id(s) are not images of {path} (ids are file_name stems), e.g. 'im9'" in result.output
    assert not out.exists()


@pytest.mark.parametrize("wanted, present, clause", [
    ("COCO_val2014_000000000139", "139.png", "it names images by numeric id, the ids asked for are file stems"),
    ("139", "COCO_val2014_000000000139.png", "it names images by file stem, the ids asked for are numeric"),
    ("000000000139", "139.png", "it pads numeric ids differently"),
])
def test_naming_hint_finds_the_same_image_under_the_other_coco_naming(tmp_path, wanted, present, clause):
    from sepl_tree.files import naming_hint

    (tmp_path / "1390.png").touch()  # another number, and the other naming: no hint from it
    (tmp_path / present).touch()
    assert naming_hint(tmp_path, wanted, (".png",)) == f"; the folder has {present}, maybe the same image: {clause}"


def test_naming_hint_says_nothing_without_a_numeric_twin(tmp_path):
    from sepl_tree.files import naming_hint

    for name in ("2008_000139.png", "139.json", "1390.png"):
        (tmp_path / name).touch()
    assert naming_hint(tmp_path, "2007_000139", (".png",)) == ""  # two stems: VOC's years, not a naming
    (tmp_path / "2008_000139.png").unlink()
    assert naming_hint(tmp_path, "139", (".png",)) == ""  # 139.json is not a .png
    assert naming_hint(tmp_path, "cat", (".png",)) == ""
    assert naming_hint(tmp_path / "absent", "139", (".png",)) == ""


def test_eval_and_run_say_when_gt_names_images_by_numeric_id(tmp_path):
    runner = CliRunner()
    stem = "COCO_val2014_000000000139"
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    write_label_png(pred / f"{stem}.png", np.zeros((2, 2), np.uint8))
    write_label_png(gt / "139.png", np.zeros((2, 2), np.uint8))
    result = runner.invoke(app, ["eval", "--pred", str(pred), "--gt", str(gt), "--num-classes", "81"])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1
    assert (f"{stem}.png: file not found (1 of 1 ground-truth files are missing); the folder has 139.png, "
            "maybe the same image: it names images by numeric id, the ids asked for are file stems") in result.output
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "139.json").write_text("[]")
    result = runner.invoke(app, ["run", "--pseudo-labels", str(pred), "--masks", str(masks), "--out",
                                 str(tmp_path / "out"), "--num-classes", "81", "--workers", "1"])
    assert result.exit_code == 1
    assert "the folder has 139.json, maybe the same image: it names images by numeric id" in result.output
    (masks / f"{stem}.json").write_text("[]")
    result = runner.invoke(app, ["run", "--pseudo-labels", str(pred), "--masks", str(masks), "--out",
                                 str(tmp_path / "out"), "--num-classes", "81", "--workers", "1", "--gt", str(gt)])
    assert result.exit_code == 1
    assert f"no ground truth for image {stem!r}; the folder has 139.png" in result.output
