"""Reading and writing segment-anything's two mask layouts."""

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from sepl_tree.errors import InputError
from sepl_tree.masks import AMG_CSV_HEADER, MaskSet, masks_to_bbox_xywh, read_masks, write_masks_png_folder, write_masks_rle


def _random_masks(rng, n=5, shape=(7, 9)):
    return rng.random((n, *shape)) < 0.4


def test_rle_round_trip_keeps_masks_and_scores(tmp_path):
    rng = np.random.default_rng(0)
    masks = _random_masks(rng)
    records = [{"predicted_iou": 0.9 + i / 100, "stability_score": 0.95, "level": i % 3} for i in range(5)]
    write_masks_rle(tmp_path / "a.json", MaskSet(masks, records))
    back = read_masks(tmp_path, "a")
    assert np.array_equal(back.masks, masks)
    assert back.score("predicted_iou").tolist() == pytest.approx([0.9, 0.91, 0.92, 0.93, 0.94])
    assert [r["level"] for r in back.records] == [0, 1, 2, 0, 1]
    assert [r["area"] for r in back.records] == masks.sum(axis=(1, 2)).tolist()


def test_reads_amg_rle_written_independently(tmp_path):
    # Records as segment-anything's amg.py writes them (counts as str, XYWH bbox).
    mask = np.zeros((4, 6), np.uint8)
    mask[1:3, 2:5] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    record = {"segmentation": {"size": [4, 6], "counts": rle["counts"].decode()}, "area": 6,
              "bbox": [2, 1, 3, 2], "predicted_iou": 0.97, "point_coords": [[3.0, 2.0]],
              "stability_score": 0.99, "crop_box": [0, 0, 6, 4]}
    (tmp_path / "x.json").write_text(json.dumps([record]))
    ms = read_masks(tmp_path, "x")
    assert ms.masks.shape == (1, 4, 6) and np.array_equal(ms.masks[0], mask.astype(bool))
    assert ms.records[0]["bbox"] == [2, 1, 3, 2] and ms.records[0]["stability_score"] == 0.99


def test_png_folder_round_trip_with_metadata(tmp_path):
    rng = np.random.default_rng(1)
    masks = _random_masks(rng, n=12)  # more than 10: '10.png' must sort after '9.png'
    write_masks_png_folder(tmp_path / "img", MaskSet(masks, [{"predicted_iou": i / 20} for i in range(12)]))
    header = (tmp_path / "img" / "metadata.csv").read_text().splitlines()[0]
    assert header == AMG_CSV_HEADER
    back = read_masks(tmp_path, "img")
    assert np.array_equal(back.masks, masks)
    assert back.score("predicted_iou")[11] == pytest.approx(0.55)
    assert back.records[3]["bbox"] == masks_to_bbox_xywh(masks)[3].tolist()


def test_png_folder_without_metadata(tmp_path):
    folder = tmp_path / "img"
    folder.mkdir()
    Image.fromarray(np.array([[0, 255], [255, 255]], np.uint8)).save(folder / "0.png")
    ms = read_masks(tmp_path, "img")
    assert ms.masks[0].tolist() == [[False, True], [True, True]] and ms.records == [{}]
    assert np.isnan(ms.score("predicted_iou")[0])


def test_empty_mask_list_is_valid(tmp_path):
    (tmp_path / "e.json").write_text("[]")
    ms = read_masks(tmp_path, "e", shape=(3, 4))
    assert len(ms) == 0 and ms.shape == (3, 4)


def test_bbox_xywh():
    m = np.zeros((2, 5, 6), bool)
    m[0, 1:3, 2:6] = True
    assert masks_to_bbox_xywh(m).tolist() == [[2, 1, 4, 2], [0, 0, 0, 0]]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a readable JSON file"),
        ('{"a": 1}', "must be a list"),
        ('[{"area": 3}]', "record 0 has no COCO RLE"),
        ('[{"segmentation": {"size": [2, 2], "counts": "zz~~"}}]', "corrupt RLE"),
    ],
)
def test_corrupt_json_names_the_file(tmp_path, content, message):
    (tmp_path / "bad.json").write_text(content)
    with pytest.raises(InputError, match=message) as info:
        read_masks(tmp_path, "bad", shape=(2, 2))
    assert str(info.value).startswith(str(tmp_path / "bad.json"))


@pytest.mark.parametrize("value", ['"0.93"', "true", "[0.9]"])
@pytest.mark.parametrize("key", ["predicted_iou", "stability_score"])
def test_a_score_that_is_not_a_number_is_an_error(tmp_path, key, value):
    """(It read as "no score": tree-prompt then quietly ranked that mask last.)"""
    good = mask_utils.encode(np.asfortranarray(np.ones((2, 2), np.uint8)))
    seg = {"size": [2, 2], "counts": good["counts"].decode()}
    (tmp_path / "a.json").write_text(f'[{{"segmentation": {json.dumps(seg)}, "predicted_iou": 0.9}}, '
                                     f'{{"segmentation": {json.dumps(seg)}, "{key}": {value}}}]')
    with pytest.raises(InputError, match=rf"a\.json: record 1: {key} .* is not a number"):
        read_masks(tmp_path, "a", shape=(2, 2))
    for fine in ("NaN", "null", "1"):  # (no score, no score, a number)
        (tmp_path / "a.json").write_text(f'[{{"segmentation": {json.dumps(seg)}, "{key}": {fine}}}]')
        assert len(read_masks(tmp_path, "a", shape=(2, 2)).records) == 1


def test_size_mismatch_and_missing_masks(tmp_path):
    write_masks_rle(tmp_path / "a.json", MaskSet(np.ones((1, 3, 3), bool)))
    with pytest.raises(InputError, match="masks are 3x3 .* pseudo-label is 4x4"):
        read_masks(tmp_path, "a", shape=(4, 4))
    with pytest.raises(InputError, match="no masks for this image"):
        read_masks(tmp_path, "zzz")


def test_corrupt_png_mask_names_the_file(tmp_path):
    folder = tmp_path / "img"
    folder.mkdir()
    (folder / "0.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="0.png: not a PNG file$"):
        read_masks(tmp_path, "img")


_MASK = np.array([[0, 1, 1], [0, 0, 1]], bool)


@pytest.mark.parametrize(
    ("mode", "values"),
    [
        ("1", _MASK),  # a 1-bit PNG reads as True/False: its bits, not "> 127"
        ("L", _MASK.astype(np.uint8)),  # 0/1 greyscale: 1 = mask
        ("P", _MASK.astype(np.uint8)),  # 0/1 palette indices
        ("L", _MASK.astype(np.uint8) * 255),  # amg.py's 0/255
        ("L", np.where(_MASK, 200, 100).astype(np.uint8)),  # soft: > 127 is in the mask
        ("I;16", _MASK.astype(np.uint16)),
        ("I;16", _MASK.astype(np.uint16) * 65535),
    ],
)
def test_png_mask_encodings_read_as_their_mask(tmp_path, mode, values):
    folder = tmp_path / "img"
    folder.mkdir()
    img = Image.fromarray(values)
    img = img.convert("1") if mode == "1" else img.convert("P") if mode == "P" else img
    img.save(folder / "0.png")
    with Image.open(folder / "0.png") as back:
        assert back.mode == mode
    assert read_masks(tmp_path, "img").masks[0].tolist() == _MASK.tolist()


@pytest.mark.parametrize("values", [_MASK.astype(np.uint8) * 100, _MASK.astype(np.uint16) * 255])
def test_png_mask_set_but_below_half_is_an_error_not_an_empty_mask(tmp_path, values):
    folder = tmp_path / "img"
    folder.mkdir()
    Image.fromarray(values).save(folder / "0.png")
    with pytest.raises(InputError, match=r"0.png: mask values are 0\.\.(100|255): none is above (127|32767), so the "
                                         r"mask would read as empty"):
        read_masks(tmp_path, "img")


def test_all_zero_png_mask_is_an_empty_mask(tmp_path):
    folder = tmp_path / "img"
    folder.mkdir()
    Image.fromarray(np.zeros((2, 3), np.uint8)).save(folder / "0.png")
    assert not read_masks(tmp_path, "img").masks.any()


def _png_folder(tmp_path, n=4):
    masks = _random_masks(np.random.default_rng(2), n=n, shape=(5, 6))
    write_masks_png_folder(tmp_path / "img", MaskSet(masks, [{"predicted_iou": i / 10} for i in range(n)]),
                           {"level": [i % 3 for i in range(n)]})
    return tmp_path / "img"


def test_metadata_csv_with_extra_columns_is_read(tmp_path):
    folder = _png_folder(tmp_path)
    back = read_masks(tmp_path, "img")
    # read as the RLE layout's JSON holds them (they were strings, which the tree took for no level)
    assert [r["level"] for r in back.records] == [0, 1, 2, 0]
    from sepl_tree.tree import build_tree

    assert [build_tree(back).nodes[i].get("level") for i in range(4)] == [0, 1, 2, 0]
    assert back.score("predicted_iou").tolist() == pytest.approx([0, 0.1, 0.2, 0.3])
    assert (folder / "metadata.csv").read_text().splitlines()[0] == AMG_CSV_HEADER + ",level"


def _edit_lines(path, edit):
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)))  # amg.py ends the file without a newline


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: (f / "metadata.csv").write_text("garbage,,,\n"), "header 'garbage,,,' has none of amg.py's columns"),
        (lambda f: (f / "metadata.csv").write_text(""), "metadata.csv: is empty"),
        (lambda f: _edit_lines(f / "metadata.csv", lambda ls: [ls[0].replace("predicted_iou", "iou"), *ls[1:]]),
         "header lacks predicted_iou"),
        (lambda f: _edit_lines(f / "metadata.csv", lambda ls: ls[:1]), r"no row for 0.png, 1.png, 2.png \(and 1 more\)"),
        (lambda f: _edit_lines(f / "metadata.csv", lambda ls: ls[:4] + ls[5:]), "no row for 3.png"),
        (lambda f: (f / "2.png").unlink(), r"line 4 \(id 2\) names 2.png, which is not in the folder"),
        (lambda f: _edit_lines(f / "metadata.csv", lambda ls: [*ls, ls[2]]), r"line 6 repeats id 1 \(line 3 has it"),
        (lambda f: _edit_lines(f / "metadata.csv", lambda ls: [*ls[:2], ls[2].rsplit(",", 2)[0], *ls[3:]]),
         "line 3 has 13 fields but the header has 15"),
        (lambda f: _edit_lines(f / "metadata.csv", lambda ls: [*ls[:2], ls[2] + ",9", *ls[3:]]),
         "line 3 has 16 fields but the header has 15"),
        (lambda f: _edit_lines(f / "metadata.csv", lambda ls: [*ls[:2], "x" + ls[2], *ls[3:]]),
         "line 3 has a value that is not a number"),
    ],
)
def test_bad_metadata_csv_names_the_csv_and_the_problem(tmp_path, change, message):
    folder = _png_folder(tmp_path)
    change(folder)
    with pytest.raises(InputError, match=message) as info:
        read_masks(tmp_path, "img")
    assert str(info.value).startswith(str(folder / "metadata.csv") + ": ")


def test_two_names_for_one_mask_number_is_an_error(tmp_path):
    folder = _png_folder(tmp_path)
    (folder / "01.png").write_bytes((folder / "1.png").read_bytes())
    with pytest.raises(InputError, match=r"and 01.png both are mask 1"):
        read_masks(tmp_path, "img")


def test_a_folder_named_like_a_mask_file_says_what_it_is(tmp_path):
    (tmp_path / "a.json").mkdir()
    with pytest.raises(InputError, match=r"a.json: is a folder, not a file \(masks are a.json"):
        read_masks(tmp_path, "a")
    (tmp_path / "b").write_text("[]")
    with pytest.raises(InputError, match=r"/b: is not a folder \(masks are b.json"):
        read_masks(tmp_path, "b")


@pytest.mark.parametrize("name", ["mask_0.png", "0.PNG"])
def test_a_png_not_named_n_png_is_an_error_not_a_mask_left_out(tmp_path, name):
    folder = _png_folder(tmp_path)
    (folder / name).write_bytes((folder / "1.png").read_bytes())
    with pytest.raises(InputError, match=r"is not named <n>.png") as info:
        read_masks(tmp_path, "img")
    assert str(info.value).startswith(str(folder / name))


def test_a_png_folder_is_written_as_amg_py_writes_it(tmp_path):
    """(0/255 PNGs; metadata.csv's point as x, y; a record without crop_box gets the whole image,
    x0, y0, w, h, on a set that is not square.)"""
    masks = np.zeros((2, 3, 5), bool)
    masks[0, :2, 1:4] = True
    masks[1, 2, :] = True
    write_masks_png_folder(tmp_path / "img", MaskSet(masks, [{"point_coords": [[4.0, 1.0]]}, {}]))
    with Image.open(tmp_path / "img" / "0.png") as img:
        assert sorted(np.unique(np.array(img)).tolist()) == [0, 255]
    row = (tmp_path / "img" / "metadata.csv").read_text().splitlines()[1].split(",")
    header = AMG_CSV_HEADER.split(",")
    assert [float(row[header.index(k)]) for k in ("point_input_x", "point_input_y")] == [4.0, 1.0]
    assert [float(row[header.index(f"crop_box_{k}")]) for k in ("x0", "y0", "w", "h")] == [0, 0, 5, 3]
    back = read_masks(tmp_path, "img")
    assert np.array_equal(back.dense, masks) and back.records[0]["point_coords"] == [[4.0, 1.0]]


def test_a_generator_record_is_written_the_same_whatever_types_its_batch_gave_it():
    """(An empty batch turns a crop's boxes into floats, and numpy scalars are not JSON: the same
    mask must write the same bytes however the work was batched.)"""
    import json

    from sepl_tree.sam.writing import amg_record

    rle = {"size": [4, 5], "counts": "abc"}
    ints = {"segmentation": rle, "area": np.int64(6), "bbox": [1, 2, 3, 2], "predicted_iou": np.float32(0.75),
            "point_coords": [[np.int64(2), 3]], "stability_score": 1, "crop_box": [0, 0, 5, 4], "level": 2}
    floats = {"level": 2, "crop_box": [0.0, 0.0, 5.0, 4.0], "stability_score": 1.0, "point_coords": [[2.0, 3.0]],
              "predicted_iou": 0.75, "bbox": [1.0, 2.0, 3.0, 2.0], "area": 6.0, "segmentation": rle}
    a, b = amg_record(ints), amg_record(floats)
    assert json.dumps(a) == json.dumps(b)
    assert list(a) == ["segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score",
                       "crop_box", "level"]  # amg.py's order, extra fields after
    assert type(a["area"]) is int and all(type(v) is float for v in [*a["bbox"], *a["crop_box"], *a["point_coords"][0]])
    assert a["segmentation"] is rle  # written as the generator gave it, never decoded


def test_a_further_column_with_a_comma_is_quoted_and_read_back(tmp_path):
    masks = np.zeros((2, 4, 5), bool)
    masks[0, :2], masks[1, 2:] = True, True
    write_masks_png_folder(tmp_path / "a", MaskSet(masks, [{}, {}]), {"note": ["x, y", "z"], "level": [0, 2]})
    records = read_masks(tmp_path, "a").records
    assert [(r["note"], r["level"]) for r in records] == [("x, y", 0), ("z", 2)]


def test_every_demo_mask_folder_reads_back_whatever_its_seed(tmp_path):
    """(A merge's record holds lists, its instances and classes: written as further metadata.csv
    columns, their commas gave rows more fields than the header, and run refused the demo.)"""
    from sepl_tree.demo import write_demo

    ids = write_demo(tmp_path, n_images=16, seed=1)
    for image_id in ids[3::4]:
        records = read_masks(tmp_path / "masks", image_id).records
        assert records and all(r["synthetic"] is True for r in records)
