"""``convert`` and ``run --reader`` through the CLI, including appendix C.1 (SEPL on raw IRN CAMs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from typer.testing import CliRunner

from sepl_tree.cli import app
from tests.helpers import VOC_SAMPLE, needs_voc_sample

runner = CliRunner()


def irn_cam(folder: Path, image_id: str, keys: list[int], high_res: np.ndarray) -> None:
    """A CAM file as IRN's step/make_cam.py saves it (keys a torch LongTensor, cam a torch tensor)."""
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / f"{image_id}.npy", {"keys": torch.tensor(keys, dtype=torch.long),
                                         "cam": torch.from_numpy(high_res[:, ::4, ::4].copy()),
                                         "high_res": high_res.astype(np.float32)})


def blob_cams(h: int = 6, w: int = 8) -> np.ndarray:
    """Aeroplane (key 0) strong on rows 0-2 x cols 0-2, weak elsewhere."""
    cam = np.full((1, h, w), 0.05, np.float32)
    cam[0, :3, :3] = 0.9
    return cam


def png(path: Path) -> np.ndarray:
    return np.array(Image.open(path))


def test_convert_irn_cams(tmp_path):
    cams = tmp_path / "cams"
    irn_cam(cams, "2007_000032", [0], blob_cams())
    two = np.stack([blob_cams()[0], np.full((6, 8), 0.1, np.float32)])
    two[1, 4:, 4:] = 0.7
    irn_cam(cams, "2007_000033", [0, 14], two)
    out = tmp_path / "labels"
    result = runner.invoke(app, ["convert", "--reader", "irn", "--input", str(cams), "--out", str(out)])
    assert result.exit_code == 0, result.output
    first = np.zeros((6, 8), np.uint8)
    first[:3, :3] = 1
    second = first.copy()
    second[4:, 4:] = 15  # person (key 14) above 0.15 only there
    assert png(out / "2007_000032.png").tolist() == first.tolist()
    assert png(out / "2007_000033.png").tolist() == second.tolist()
    assert Image.open(out / "2007_000032.png").mode == "P"
    assert "aeroplane" in result.output and "person" in result.output  # class names, not indices
    pooled = runner.invoke(app, ["convert", "-r", "irn", "-i", str(cams), "-o", str(tmp_path / "pooled"), "-j", "2"])
    assert pooled.exit_code == 0, pooled.output  # the same files from a process pool
    for name in ("2007_000032.png", "2007_000033.png"):
        assert (out / name).read_bytes() == (tmp_path / "pooled" / name).read_bytes(), name

    # a rerun resumes; one with another --param is refused, naming the change, unless --overwrite
    same = runner.invoke(app, ["convert", "-r", "irn", "-i", str(cams), "-o", str(out)])
    assert same.exit_code == 0 and "0 written, 2 skipped" in same.output
    again = runner.invoke(app, ["convert", "-r", "irn", "-i", str(cams), "-o", str(out), "-p", "bg=0.95"])
    assert again.exit_code == 1 and "made with other settings (reader_params.bg 0.15 -> 0.95)" in again.output
    assert png(out / "2007_000032.png").tolist() == first.tolist()
    redo = runner.invoke(app, ["convert", "-r", "irn", "-i", str(cams), "-o", str(out), "-p", "bg=0.95", "--overwrite"])
    assert redo.exit_code == 0, redo.output
    assert png(out / "2007_000032.png").tolist() == np.zeros((6, 8)).tolist()


def test_convert_restricted_by_cls_labels(tmp_path):
    cams = tmp_path / "cams"
    two = np.stack([blob_cams()[0], np.full((6, 8), 0.1, np.float32)])
    two[1, 4:, 4:] = 0.7
    irn_cam(cams, "2007_000033", [0, 14], two)
    only_aeroplane = np.zeros(20, np.float32)
    only_aeroplane[0] = 1
    labels = tmp_path / "cls_labels.npy"
    np.save(labels, {2007000033: only_aeroplane})
    out = tmp_path / "labels"
    result = runner.invoke(app, ["convert", "-r", "irn", "-i", str(cams), "-o", str(out), "--labels", str(labels)])
    assert result.exit_code == 0, result.output
    expected = np.zeros((6, 8), np.uint8)
    expected[:3, :3] = 1
    assert png(out / "2007_000033.png").tolist() == expected.tolist()


def test_convert_wrong_reader_is_one_line(tmp_path):
    cams = tmp_path / "cams"
    cams.mkdir()
    np.save(cams / "2007_000032.npy", {"keys": np.array([0, 1]), "hr_cam": blob_cams()})
    result = runner.invoke(app, ["convert", "-r", "irn", "-i", str(cams), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "this looks like a PuzzleCAM file; try --reader puzzlecam" in result.output
    assert "Traceback" not in result.output


def test_convert_folder_of_other_files_suggests_reader(tmp_path):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    import pickle

    with open(seeds / "2007_000032.pkl", "wb") as f:
        pickle.dump({"keys": np.array([0, 1]), "seed": blob_cams()}, f)
    result = runner.invoke(app, ["convert", "-r", "irn", "-i", str(seeds), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert "try --reader recurseed" in result.output


def test_convert_unknown_reader_and_parameter(tmp_path):
    result = runner.invoke(app, ["convert", "-r", "nope", "-i", str(tmp_path), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "unknown reader 'nope'" in result.output and "puzzlecam" in result.output
    irn_cam(tmp_path / "cams", "a", [0], blob_cams())
    result = runner.invoke(app, ["convert", "-r", "irn", "-i", str(tmp_path / "cams"), "-o", str(tmp_path / "o"),
                                 "-p", "threshold=0.3"])
    assert result.exit_code == 1 and "has no parameter 'threshold'" in result.output


def amg_json(path: Path, masks: list[np.ndarray]) -> None:
    """SAM masks as segment-anything's scripts/amg.py writes <id>.json (COCO RLE records)."""
    records = []
    for m in masks:
        rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        ys, xs = np.nonzero(m)
        records.append({"segmentation": rle, "area": int(m.sum()),
                        "bbox": [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)],
                        "predicted_iou": 0.95, "point_coords": [[1.0, 1.0]], "stability_score": 0.97,
                        "crop_box": [0.0, 0.0, float(m.shape[1]), float(m.shape[0])]})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records))


@pytest.mark.parametrize("strategy", ["threshold"])
def test_run_on_raw_irn_cams_appendix_c1(tmp_path, strategy):
    """SEPL straight on the initial CAMs: run --reader irn --pseudo-labels CAM_DIR --masks ..."""
    cams = tmp_path / "cams"
    irn_cam(cams, "2007_000032", [0], blob_cams())  # pseudo-label: aeroplane on rows 0-2 x cols 0-2 (9 px)
    sam = np.zeros((6, 8), bool)
    sam[:4, :4] = True  # 16 px, 9 inside the aeroplane: o_s = 9/16 > t1 = 0.5, so the mask is kept
    amg_json(tmp_path / "masks" / "2007_000032.json", [sam])
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", "--reader", "irn", "--pseudo-labels", str(cams), "--masks",
                                 str(tmp_path / "masks"), "--out", str(out), "--strategy", strategy])
    assert result.exit_code == 0, result.output
    expected = np.zeros((6, 8), np.uint8)
    expected[:4, :4] = 1  # the SAM mask replaces the CAM blob
    assert png(out / "2007_000032.png").tolist() == expected.tolist()


DATA = VOC_SAMPLE


@needs_voc_sample
def test_real_transcam_pngs(tmp_path):
    """The released TransCAM pseudo-labels are greyscale label PNGs: the png reader, not the CAM reader."""
    pseudo = DATA / "pseudo_labels" / "transcam"
    wrong = runner.invoke(app, ["convert", "-r", "transcam", "-i", str(pseudo), "-o", str(tmp_path / "x")])
    assert wrong.exit_code == 1 and "label PNG: try --reader png" in wrong.output
    ids = sorted(p.stem for p in pseudo.glob("*.png"))[:5]
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    out = tmp_path / "out"
    result = runner.invoke(app, ["convert", "-r", "png", "-i", str(pseudo), "-o", str(out), "--ids", str(tmp_path / "ids.txt")])
    assert result.exit_code == 0, result.output
    for image_id in ids:
        assert Image.open(out / f"{image_id}.png").mode == "P"
        assert np.array_equal(png(out / f"{image_id}.png"), png(pseudo / f"{image_id}.png"))


def test_convert_rca_final_labels_and_attention_maps(tmp_path):
    """RCA's two outputs, each written as its script writes it, in one folder and in two."""
    cv2 = pytest.importorskip("cv2")
    from sepl_tree.label_maps import voc_palette

    orig, proxy = tmp_path / "orig", tmp_path / "proxy_label"
    orig.mkdir()
    proxy.mkdir()
    # res.py: cv2.imwrite of the resized attention map as float32 (saved as 8-bit greyscale)
    attention = np.zeros((6, 8), np.float32)
    attention[:3, :3] = 200.0
    attention[3:, 5:] = 20.0
    cv2.imwrite(str(orig / "2007_000033_14.png"), attention)  # person, 0-based 14
    # gen_labels.py: a palette PNG of class indices and 255, the 21 VOC colours as palette
    final = np.zeros((6, 8), np.uint8)
    final[2:5, 2:6] = 8
    final[0, :] = 255
    img = Image.fromarray(final, mode="P")
    img.putpalette(voc_palette(21).reshape(-1).tolist())
    img.save(proxy / "2007_000032.png")
    # min-max: 1.0 on the block, 0.1 on the weak corner, (1 - 0.1)^4 = 0.66 > 0.1: background there
    person = np.zeros((6, 8), np.uint8)
    person[:3, :3] = 15
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for path in [*orig.iterdir(), *proxy.iterdir()]:
        (mixed / path.name).write_bytes(path.read_bytes())
    for folder, expected in ((orig, {"2007_000033": person}), (proxy, {"2007_000032": final}),
                             (mixed, {"2007_000032": final, "2007_000033": person})):
        out = tmp_path / f"out-{folder.name}"
        result = runner.invoke(app, ["convert", "--reader", "rca", "--input", str(folder), "--out", str(out)])
        assert result.exit_code == 0, result.output
        assert sorted(p.stem for p in out.glob("*.png")) == sorted(expected)
        for image_id, label in expected.items():
            assert png(out / f"{image_id}.png").tolist() == label.tolist()
    # the same image in both kinds: one line naming both files, exit code 1
    (mixed / "2007_000032_14.png").write_bytes((orig / "2007_000033_14.png").read_bytes())
    result = runner.invoke(app, ["convert", "-r", "rca", "-i", str(mixed), "-o", str(tmp_path / "out-both")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "2007_000032.png" in result.output and "2007_000032_14.png" in result.output


@pytest.mark.parametrize("kind", ["folder", "broken link"])
@pytest.mark.parametrize(("reader", "name"), [("l2g", "2007_000033_3.png"), ("rca", "2007_000033_3.png"),
                                              ("rca", "2007_000034.png")])  # (rca also reads final labels <id>.png)
def test_a_per_class_input_that_is_not_a_file_is_named_not_left_out(tmp_path, reader, kind, name):
    """(A per-class map that is a folder or a broken link left its class, or its whole image, out
    of the run without a word; the png reader already refused it.)"""
    folder = tmp_path / "cams"
    folder.mkdir()
    Image.fromarray(np.full((6, 8), 200, np.uint8)).save(folder / "2007_000033_14.png")  # a greyscale map
    if kind == "folder":
        (folder / name).mkdir()
    else:
        (folder / name).symlink_to(tmp_path / "gone.png")
    result = runner.invoke(app, ["convert", "-r", reader, "-i", str(folder), "-o", str(tmp_path / "out")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    said = " ".join(result.output.split())
    assert f"{name}: is a folder, not a .png file" in said if kind == "folder" else (
        f"{name}: is not a readable .png file (a broken link?)" in said)


def test_labels_are_read_once_per_command(tmp_path, monkeypatch):
    """(COCO train's instances JSON takes tens of seconds to parse: not once per worker or strip.)"""
    import sepl_tree.image_labels as image_labels
    from tests.helpers import write_dataset

    ids = ["2007_000033", "2007_000034"]
    pseudo, masks = np.zeros((6, 8), np.uint8), np.zeros((1, 6, 8), bool)
    masks[0, :3, :3] = True
    _, masks_dir, gt_dir = write_dataset(tmp_path, {i: (pseudo, masks, pseudo) for i in ids})
    cams, images = tmp_path / "cams", tmp_path / "images"
    images.mkdir()
    for i in ids:
        irn_cam(cams, i, [0], blob_cams())
        Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(images / f"{i}.jpg")
    labels = tmp_path / "cls_labels.npy"
    np.save(labels, {int(i.replace("_", "")): np.eye(20, dtype=np.float32)[0] for i in ids})
    reads = []
    load = image_labels.load_image_labels
    monkeypatch.setattr(image_labels, "load_image_labels", lambda *a: reads.append(a) or load(*a))
    common = ["--reader", "irn", "--pseudo-labels", str(cams), "--masks", str(masks_dir), "--labels", str(labels)]
    result = runner.invoke(app, ["run", *common, "--out", str(tmp_path / "run"), "--gt", str(gt_dir)])
    assert result.exit_code == 0, result.output
    assert len(reads) == 1
    result = runner.invoke(app, ["compare", "-s", "threshold,official", *common, "--gt", str(gt_dir),
                                 "--out", str(tmp_path / "cmp"), "--images", str(images), "--subset", "all"])
    assert result.exit_code == 0, result.output
    assert len(reads) == 2 and list((tmp_path / "cmp").rglob("*.png"))
    assert "may change nothing here" not in result.output  # irn restricts its argmax to the labels


def test_labels_a_reader_does_not_use_are_said_to_change_nothing(tmp_path):
    from tests.helpers import write_dataset

    ids = ["2007_000033", "2007_000034"]
    pseudo, masks = np.zeros((6, 8), np.uint8), np.zeros((1, 6, 8), bool)
    pseudo_dir, masks_dir, gt_dir = write_dataset(tmp_path, {i: (pseudo, masks, pseudo) for i in ids})
    labels = tmp_path / "cls_labels.npy"
    np.save(labels, {int(i.replace("_", "")): np.eye(20, dtype=np.float32)[0] for i in ids})
    said = (f"--labels {labels}: reader 'png' did not look at the image-level labels for '2007_000033'; "
            "they may change nothing here")
    for command in (["run", "--pseudo-labels", str(pseudo_dir), "--masks", str(masks_dir), "--out", str(tmp_path / "r")],
                    ["compare", "-s", "threshold", "--pseudo-labels", str(pseudo_dir), "--masks", str(masks_dir),
                     "--gt", str(gt_dir), "--out", str(tmp_path / "c"), "--subset", "all"],
                    ["convert", "-r", "png", "-i", str(pseudo_dir), "-o", str(tmp_path / "v")]):
        result = runner.invoke(app, [*command, "--labels", str(labels)])
        assert result.exit_code == 0, result.output
        assert " ".join(result.output.split()).count(said) == 1, (command[0], result.output)
        assert "change nothing" not in runner.invoke(app, command + ["--overwrite"]).output  # no --labels, no line
