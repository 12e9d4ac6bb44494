"""SYNTHETIC masks: the generator on a small ground truth, and the ``synth`` command end to end."""

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from sepl_tree.cli import app
from sepl_tree.files import write_label_png
from sepl_tree.masks import read_masks
from sepl_tree.morphology import connected_components, dilate, erode
from sepl_tree.synth import KINDS, SynthConfig, synthesize_masks
from tests.helpers import VOC_SAMPLE, needs_voc_sample

ALWAYS = SynthConfig(envelope_rate=1.0, merge_rate=1.0, miss_rate=0.0, whole_rate=1.0, part_rate=1.0)


def small_scene():
    """Three objects on a two-tone background: classes 3 and 7 touch, class 12 stands apart."""
    gt = np.zeros((64, 96), np.uint8)
    gt[10:40, 8:30] = 3
    gt[10:40, 31:50] = 7  # one pixel of gap with class 3, a 255 band as VOC draws it
    gt[10:40, 30] = 255
    gt[45:60, 65:90] = 12
    image = np.zeros((64, 96, 3), np.uint8)
    image[:32] = (150, 190, 230)  # sky
    image[32:] = (80, 120, 60)  # grass
    image[gt == 3] = (200, 30, 30)
    image[gt == 7] = (30, 30, 200)
    image[gt == 12] = (230, 230, 30)
    return gt, image


def test_every_kind_is_made_and_tagged_synthetic():
    gt, image = small_scene()
    res = synthesize_masks(gt, image, np.random.default_rng(0), ALWAYS)
    kinds = {r["kind"] for r in res.masks.records}
    assert {"object", "part", "envelope", "merge", "stuff"} <= kinds <= set(KINDS)
    assert res.objects == 3 and res.missed == 0
    assert all(r["synthetic"] is True for r in res.masks.records)
    assert sum(res.counts.values()) == len(res.masks)
    for mask, rec in zip(res.masks.dense, res.masks.records):
        assert rec["area"] == int(mask.sum())
        assert 0.86 <= rec["predicted_iou"] <= 1.0


def test_masks_agree_with_the_ground_truth():
    gt, image = small_scene()
    res = synthesize_masks(gt, image, np.random.default_rng(1), ALWAYS)
    for mask, rec in zip(res.masks.dense, res.masks.records):
        values = gt[mask]
        if rec["kind"] in ("object", "part"):
            # jitter flips boundary pixels only: the mask is its instance's class (or the 255 band)
            assert np.isin(values, [rec["gt_class"], 255]).mean() > 0.85, rec
            if rec["kind"] == "object":
                assert (mask & (gt == rec["gt_class"])).sum() > 0.9 * (gt == rec["gt_class"]).sum()
        elif rec["kind"] == "envelope":
            own = gt == rec["gt_class"]
            assert (mask & own).sum() > 0.9 * own.sum()  # the whole object...
            assert (values == 0).sum() > 0.2 * own.sum()  # ...and background around it
        elif rec["kind"] == "merge":
            assert sorted(rec["gt_classes"]) == [3, 7]
            for k in (3, 7):
                assert (mask & (gt == k)).sum() > 0.9 * (gt == k).sum()
        elif rec["kind"] == "stuff":
            assert (values == 0).mean() > 0.9


def test_same_seed_same_masks_and_rates_matter():
    gt, image = small_scene()
    a = synthesize_masks(gt, image, np.random.default_rng(5), ALWAYS)
    b = synthesize_masks(gt, image, np.random.default_rng(5), ALWAYS)
    np.testing.assert_array_equal(a.masks.dense, b.masks.dense)
    assert a.masks.records == b.masks.records
    none = SynthConfig(envelope_rate=0.0, merge_rate=0.0, miss_rate=0.0)
    kinds = {r["kind"] for r in synthesize_masks(gt, image, np.random.default_rng(5), none).masks.records}
    assert "envelope" not in kinds and "merge" not in kinds
    missed = synthesize_masks(gt, image, np.random.default_rng(5), SynthConfig(miss_rate=1.0))
    assert missed.missed == 3
    assert {r["kind"] for r in missed.masks.records} == {"stuff"}


def test_works_without_an_image_and_checks_its_shape():
    gt, image = small_scene()
    res = synthesize_masks(gt, None, np.random.default_rng(0), ALWAYS)
    assert "object" in res.counts
    with pytest.raises(ValueError, match="image is"):
        synthesize_masks(gt, image[:10], np.random.default_rng(0))


def test_morphology_and_components():
    dot = np.zeros((7, 7), bool)
    dot[3, 3] = True
    assert dilate(dot, 1).sum() == 5 and dilate(dot, 2).sum() == 21
    assert (erode(dilate(dot, 2), 2) == dot).all()
    labels, n = connected_components(np.array([[1, 1, 0, 1], [0, 1, 0, 1], [1, 0, 0, 0]], bool))
    assert n == 3 and labels[0, 0] == labels[1, 1] != labels[0, 3]
    u = np.array([[1, 0, 1], [1, 0, 1], [1, 1, 1]], bool)  # a U joins below
    assert connected_components(u)[1] == 1


# ------------------------------------------------------------------------------------- CLI


def write_voc(root, ids, listed):
    gt, image = small_scene()
    (root / "JPEGImages").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    for n, image_id in enumerate(ids):
        Image.fromarray(np.roll(image, 5 * n, axis=1)).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        write_label_png(root / "SegmentationClass" / f"{image_id}.png", np.roll(gt, 5 * n, axis=1))
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(listed) + "\n")
    return gt


@pytest.fixture
def voc(tmp_path, monkeypatch):
    monkeypatch.setenv("SEPL_TREE_NO_PROGRESS", "1")
    root = tmp_path / "voc"
    write_voc(root, ["a", "b", "c"], ["a", "b"])
    return root


def test_synth_command_writes_tagged_rle_and_a_manifest(voc, tmp_path):
    out = tmp_path / "masks"
    result = CliRunner().invoke(app, ["synth", "--dataset", str(voc), "--out", str(out), "--seed", "3",
                                      "--envelope-rate", "1.0", "--merge-rate", "1.0", "--miss-rate", "0"])
    assert result.exit_code == 0, result.output
    assert "SYNTHETIC" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "b.json", "synth.json"]  # c is not listed
    manifest = json.loads((out / "synth.json").read_text())
    assert manifest["synthetic"] is True and "SYNTHETIC" in manifest["notice"]
    assert manifest["settings"]["seed"] == 3 and manifest["settings"]["config"]["envelope_rate"] == 1.0
    masks = read_masks(out, "a", shape=(64, 96))
    kinds = {r["kind"] for r in masks.records}
    assert {"object", "envelope", "merge", "stuff"} <= kinds
    gt = np.array(Image.open(voc / "SegmentationClass" / "a.png"))
    for mask, rec in zip(masks.dense, masks.records):
        assert rec["synthetic"] is True
        if rec["kind"] == "object":  # decoded RLE still matches the GT object
            assert np.isin(gt[mask], [rec["gt_class"], 255]).mean() > 0.85


def test_synth_command_resumes_and_overwrites(voc, tmp_path):
    out = tmp_path / "masks"
    args = ["synth", "--dataset", str(voc), "--out", str(out)]
    assert CliRunner().invoke(app, args).exit_code == 0
    first = (out / "b.json").read_bytes()
    (out / "a.json").write_text("[]")  # a stand-in for an earlier output: resume must keep it
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0 and "0 to write, 2 already there" in result.output
    assert (out / "a.json").read_text() == "[]"
    assert CliRunner().invoke(app, [*args, "--overwrite"]).exit_code == 0
    assert (out / "a.json").read_text() != "[]" and (out / "b.json").read_bytes() == first


def test_synth_command_refuses_to_mix_settings(voc, tmp_path):
    out = tmp_path / "masks"
    assert CliRunner().invoke(app, ["synth", "--dataset", str(voc), "--out", str(out)]).exit_code == 0
    result = CliRunner().invoke(app, ["synth", "--dataset", str(voc), "--out", str(out), "--seed", "9"])
    assert result.exit_code == 1 and "other settings (seed 0 -> 9)" in result.output and "--overwrite" in result.output


def test_synth_command_uses_every_gt_file_without_lists(tmp_path, monkeypatch):
    monkeypatch.setenv("SEPL_TREE_NO_PROGRESS", "1")
    root = tmp_path / "voc"
    write_voc(root, ["x", "y"], [])
    (root / "ImageSets" / "Segmentation" / "train.txt").unlink()
    out = tmp_path / "m"
    result = CliRunner().invoke(app, ["synth", "--dataset", str(root), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.glob("*.json")} == {"x.json", "y.json", "synth.json"}


def test_synth_command_reports_a_missing_dataset(tmp_path):
    result = CliRunner().invoke(app, ["synth", "--dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "SegmentationClass" in result.output


def test_demo_scenes_use_the_synthetic_generator_and_have_a_tree():
    import networkx as nx

    from sepl_tree.demo import make_scene
    from sepl_tree.tree import build_tree

    rng = np.random.default_rng(0)
    scenes = [make_scene(rng) for _ in range(8)]
    kinds = {r["kind"] for s in scenes for r in s.masks.records}
    assert {"object", "part", "stuff", "envelope"} <= kinds
    assert all(r["synthetic"] for s in scenes for r in s.masks.records)
    trees = [build_tree(s.masks) for s in scenes]
    assert all(nx.is_branching(t) for t in trees)
    assert max(max(dict(t.nodes(data="depth")).values(), default=0) for t in trees) >= 2  # object > part > sub-part


SHARED_VOC = VOC_SAMPLE


@needs_voc_sample
def test_synth_on_a_real_voc_image():
    from sepl_tree.synth_dataset import synth_image, voc_ids

    image_id = voc_ids(SHARED_VOC)[0]
    res = synth_image(SHARED_VOC, image_id, 0, SynthConfig(envelope_rate=1.0, miss_rate=0.0))
    gt = np.array(Image.open(SHARED_VOC / "SegmentationClass" / f"{image_id}.png"))
    assert res.objects >= 1 and {"object", "envelope", "stuff"} <= set(res.counts)
    for mask, rec in zip(res.masks.dense, res.masks.records):
        if rec["kind"] == "object":
            assert np.isin(gt[mask], [rec["gt_class"], 255]).mean() > 0.85
        if rec["kind"] == "stuff":
            assert (gt[mask] == 0).mean() > 0.9
