"""Pseudo-label and CAM readers: fixtures written exactly as each baseline's code writes them.

Every fixture holds the same two score maps on a 2x3 image, for aeroplane (0-based key 0, class 1)
and dog (0-based key 11, class 12). The expected label maps below were worked out by hand, pixel by
pixel, from each method's rule (constant background score or (1 - max)^p), not by the code under test.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sepl_tree.errors import InputError
from sepl_tree.files import PNG_GREY, PNG_PALETTE, png_colour_type
from sepl_tree.label_maps import voc_palette
from sepl_tree.plugins import load_host
from sepl_tree.readers.cam import cam_to_label
from sepl_tree.readers.sniff import identify, suggest_reader
from sepl_tree.registry import ReadContext

AERO = np.array([[0.9, 0.1, 0.0], [0.5, 0.14, 0.3]], np.float32)
DOG = np.array([[0.2, 0.8, 0.1], [0.6, 0.0, 0.16]], np.float32)
SCORES = np.stack([AERO, DOG])  # (2, 2, 3), no background channel

# Constant background 0.15 .. 0.29: pixel (0,2) and (1,1) stay below, (1,2) is aeroplane at 0.3.
LOW_BG = [[1, 12, 0], [12, 0, 1]]
# Background 0.42 or 0.55, or (1 - max)^2: (1,2) becomes background too.
HIGH_BG = [[1, 12, 0], [12, 0, 0]]
# (1 - max)^16 (PSA): (1,1) bg 0.86^16 = 0.089 < 0.14 and (1,2) bg 0.7^16 = 0.003 -> aeroplane.
POWER16 = [[1, 12, 0], [12, 1, 1]]
# Only dog allowed (image-level labels), background 0.15: dog wherever it beats 0.15.
DOG_ONLY = [[12, 12, 0], [12, 0, 12]]

VOC = ReadContext(num_classes=21)


@pytest.fixture(scope="module")
def host():
    return load_host(autoload=False)


def read(host, name: str, folder: Path, image_id: str = "2007_000032", ctx: ReadContext = VOC, **params):
    return host.reader(name).read(folder, image_id, ctx, **params)


def save_npy(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, obj)
    return path


# --- fixture writers, one per baseline, following its saving code -------------------------------

def write_irn(folder: Path, image_id: str = "2007_000032") -> Path:
    """IRN step/make_cam.py: keys = torch.nonzero(label)[:, 0] (0-based LongTensor), cam a torch tensor."""
    label = torch.zeros(20)
    label[[0, 11]] = 1
    valid_cat = torch.nonzero(label)[:, 0]
    return save_npy(folder / f"{image_id}.npy",
                    {"keys": valid_cat, "cam": torch.from_numpy(SCORES[:, :1, :1].copy()), "high_res": SCORES.copy()})


def write_amn(folder: Path) -> Path:
    """AMN step/make_amn_cam.py: IRN's keys (0-based LongTensor), high_res with the background map first."""
    label = torch.zeros(20)
    label[[0, 11]] = 1
    saved_bg = np.full_like(AERO, 0.95)  # (AMN's own background, which its eval_amn_cam.py drops)
    return save_npy(folder / "2007_000032.npy", {"keys": torch.nonzero(label)[:, 0],
                                                 "cam": torch.from_numpy(SCORES[:, :1, :1].copy()),
                                                 "high_res": np.stack([saved_bg, AERO, DOG])})


def write_sipe(folder: Path) -> Path:
    """SIPE make_cam.py: keys include background 0 (label padded with 1); IS_CAM has the bg map first."""
    bg = np.array([[0.1, 0.1, 0.5], [0.1, 0.9, 0.2]], np.float32)
    return save_npy(folder / "2007_000032.npy",
                    {"keys": np.array([0, 1, 12]), "IS_CAM": np.stack([bg, AERO, DOG])})


def write_puzzlecam(folder: Path, rw: bool = False) -> Path:
    """PuzzleCAM inference_classification.py: keys = pad(keys + 1) -> [0, 1, 12]; hr_cam numpy, cam torch."""
    keys = np.pad(torch.tensor([0, 11]) + 1, (1, 0), mode="constant")
    obj = {"keys": keys, "cam": torch.from_numpy(SCORES.copy()), "hr_cam": SCORES.copy()}
    if rw:  # inference_rw.py keeps the keys and saves the random-walk scores as 'rw'
        obj = {"keys": keys, "rw": SCORES * 0.5}
    return save_npy(folder / "2007_000032.npy", obj)


def write_recurseed(folder: Path) -> Path:
    """RecurSeed infer_rsepm.py: pickle of {'keys': [0, c + 1, ...], 'seed': (n, H, W)}."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "2007_000032.pkl"
    with open(path, "wb") as f:
        pickle.dump({"keys": np.pad(np.array([0, 11]) + 1, (1, 0), "constant"), "seed": SCORES.copy()}, f)
    return path


def write_clip_es(folder: Path) -> Path:
    """CLIP-ES generate_cams_voc12.py: keys 0-based (numpy int64), attn_highres float16."""
    return save_npy(folder / "2007_000032.npy",
                    {"keys": torch.tensor([0, 11]).numpy(), "attn_highres": SCORES.astype(np.float16)})


def write_class_dict(folder: Path) -> Path:
    """PSA infer_cls.py / SEAM / EPS / PPC / TransCAM: {0-based class: (H, W)} for labelled classes."""
    return save_npy(folder / "2007_000032.npy", {0: AERO.copy(), 11: DOG.copy()})


def write_crf_dict(folder: Path) -> Path:
    """PSA _crf_with_alpha: {0: background, key + 1: map}, CRF probabilities summing to 1."""
    aero = np.array([[0.9, 0.1, 0.1], [0.3, 0.1, 0.5]], np.float32)
    dog = np.array([[0.05, 0.8, 0.1], [0.6, 0.1, 0.3]], np.float32)
    return save_npy(folder / "2007_000032.npy", {0: 1 - aero - dog, 1: aero, 12: dog})


# 8-bit per-class maps (L2G writes norm_cam * 255 with cv2.imwrite): value / 255 is close to SCORES.
AERO_U8 = np.array([[230, 26, 0], [128, 36, 77]], np.uint8)
DOG_U8 = np.array([[51, 204, 26], [153, 0, 41]], np.uint8)


def write_per_class(folder: Path, image_id: str = "2007_000032") -> None:
    """L2G test_l2g_voc.py / RCA res.py: <id>_<0-based class>.png, greyscale."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(AERO_U8, mode="L").save(folder / f"{image_id}_0.png")
    Image.fromarray(DOG_U8, mode="L").save(folder / f"{image_id}_11.png")


def write_rca_final(folder: Path, label, image_id: str = "2007_000032") -> Path:
    """RCA gen_labels.py: Image.fromarray(uint8, mode='P'), putpalette(the 21 VOC colours), <id>.png."""
    folder.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.asarray(label, np.uint8), mode="P")
    img.putpalette(voc_palette(21).reshape(-1).tolist())  # 63 values: only the 21 classes have a colour
    img.save(folder / f"{image_id}.png")
    return folder / f"{image_id}.png"


# RCA's final label: classes 1 and 12, background, and 255 where two classes conflict.
RCA_FINAL = [[1, 12, 0], [255, 0, 1]]


# --- each reader on its own format ---------------------------------------------------------------

def test_irn_torch_keys_and_default_threshold(host, tmp_path):
    write_irn(tmp_path)
    assert read(host, "irn", tmp_path).tolist() == LOW_BG
    assert read(host, "clims", tmp_path).tolist() == LOW_BG
    assert read(host, "irn", tmp_path, bg=0.55).tolist() == HIGH_BG
    assert read(host, "irn", tmp_path, bg=2.0).tolist() == HIGH_BG  # 1 or more: (1 - max)^p
    out = read(host, "irn", tmp_path)
    assert out.dtype == np.uint8 and out.shape == (2, 3)


def test_irn_restricted_by_image_labels(host, tmp_path):
    write_irn(tmp_path)
    ctx = ReadContext(num_classes=21, image_labels={"2007_000032": frozenset({12})})
    assert read(host, "irn", tmp_path, ctx=ctx).tolist() == DOG_ONLY
    missing = ReadContext(num_classes=21, image_labels={"2007_000033": frozenset({12})})
    with pytest.raises(InputError, match="no entry in the image-level labels"):
        read(host, "irn", tmp_path, ctx=missing)


def test_amn_drops_its_saved_background_and_pads_its_threshold(host, tmp_path):
    write_amn(tmp_path)
    assert read(host, "amn", tmp_path).tolist() == LOW_BG  # 0.25 (cam_eval_thres in AMN's run_sample.py)
    assert read(host, "amn", tmp_path, bg=0.45).tolist() == HIGH_BG
    # IR labels (amn_cam_to_ir_label.py's 0.45 / 0.15): aeroplane's 0.3 at (1, 2) is between: uncertain
    assert read(host, "amn", tmp_path, bg=0.45, bg_low=0.15).tolist() == [[1, 12, 0], [12, 0, 255]]
    ctx = ReadContext(num_classes=21, image_labels={"2007_000032": frozenset({12})})
    assert read(host, "amn", tmp_path, ctx=ctx, bg=0.15).tolist() == DOG_ONLY
    save_npy(tmp_path / "2007_000032.npy", {"keys": np.array([0, 11]), "high_res": np.zeros((4, 2, 3), np.float32)})
    with pytest.raises(InputError, match=r"2007_000032.npy: AMN's high_res holds the background and one map per "
                                         r"key: 3 maps for 2 key\(s\), got 4$"):
        read(host, "amn", tmp_path)


@pytest.mark.parametrize("reader", ["amn", "irn"])
def test_a_keys_only_file_of_an_image_without_classes_is_named(host, tmp_path, reader):
    save_npy(tmp_path / "2007_000032.npy", {"keys": torch.zeros(0, dtype=torch.long)})
    with pytest.raises(InputError, match=r"2007_000032.npy: holds only an empty 'keys': AMN's make_amn_cam_coco.py "
                                         r"writes this for an image without classes"):
        read(host, reader, tmp_path)


def test_sipe_background_channel_argmax(host, tmp_path):
    write_sipe(tmp_path)
    # bg map [[.1,.1,.5],[.1,.9,.2]] against the classes: (0,2) and (1,1) are background, (1,2) aeroplane.
    assert read(host, "sipe", tmp_path).tolist() == LOW_BG
    assert host.reader("sipe").params == {}


@pytest.mark.parametrize(("reader", "suffix", "array", "method"), [
    ("sipe", ".npy", "IS_CAM", "SIPE"), ("puzzlecam", ".npy", "hr_cam", "PuzzleCAM"), ("recurseed", ".pkl", "seed", "RecurSeed"),
])
def test_shifted_keys_must_start_with_background(host, tmp_path, reader, suffix, array, method):
    path = tmp_path / f"2007_000032{suffix}"
    obj = {"keys": np.array([1, 12]), array: np.stack([AERO, DOG])}
    if suffix == ".npy":
        save_npy(path, obj)
    else:
        path.write_bytes(pickle.dumps(obj))
    with pytest.raises(InputError, match=rf"{method} keys must start with the background 0, got \[1, 12\]"):
        read(host, reader, tmp_path)


def test_puzzlecam_shifted_keys_hr_cam_and_rw(host, tmp_path):
    write_puzzlecam(tmp_path)
    assert read(host, "puzzlecam", tmp_path).tolist() == LOW_BG  # default background 0.25
    rw_dir = tmp_path / "rw"
    write_puzzlecam(rw_dir, rw=True)
    # rw = scores / 2 against 0.25: (1,0) 0.3 dog, (1,2) 0.15 background.
    assert read(host, "puzzlecam", rw_dir).tolist() == HIGH_BG
    with pytest.raises(InputError, match="no 'hr_cam' array"):
        read(host, "puzzlecam", rw_dir, key="hr_cam")


def test_recurseed_pickle_with_power_background(host, tmp_path):
    write_recurseed(tmp_path)
    # (1 - max)^2: (1,2) background 0.49 > 0.3.
    assert read(host, "recurseed", tmp_path).tolist() == HIGH_BG
    assert read(host, "recurseed", tmp_path, bg=0.2).tolist() == LOW_BG


def test_clip_es_float16_power_two(host, tmp_path):
    write_clip_es(tmp_path)
    assert read(host, "clip-es", tmp_path).tolist() == HIGH_BG
    assert read(host, "clipes", tmp_path, bg=0.15).tolist() == LOW_BG


@pytest.mark.parametrize(("name", "expected"), [
    ("psa", LOW_BG), ("affinitynet", LOW_BG), ("seam", LOW_BG), ("eps", LOW_BG), ("ppc", LOW_BG),
    ("transcam", HIGH_BG),
])
def test_class_dict_readers_use_their_method_default(host, tmp_path, name, expected):
    write_class_dict(tmp_path)
    assert read(host, name, tmp_path).tolist() == expected


def test_psa_default_is_its_cam_label_rule_and_bg_16_its_random_walk_background(host, tmp_path):
    """PSA's infer_cls.py --out_cam_pred labels CAMs over a constant 0.2; (1 - max)^16 is infer_aff.py's."""
    write_class_dict(tmp_path)
    assert host.reader("psa").params["bg"].default == 0.2
    assert read(host, "psa", tmp_path, bg=16).tolist() == POWER16


def test_clip_es_float16_maps_break_ties_as_clip_es_does(host, tmp_path):
    """CLIP-ES keeps attn_highres in float16 and builds its background there (eval_cam.py): every
    float16 value in [0, 1] as a pixel, our labels are its labels, ties included."""
    values = np.arange(0, 0x3C01, dtype=np.uint16).view(np.float16)  # 0 .. 1.0, every float16 between
    cams = values.reshape(1, 1, -1)
    save_npy(tmp_path / "x.npy", {"keys": np.array([11]), "attn_highres": cams})
    for bg in (2, 1, 0.15, 0.3, 0.35):
        background = (np.power(1 - cams.max(axis=0, keepdims=True), bg) if bg >= 1
                      else np.full((1, *cams.shape[1:]), bg, np.float16))
        theirs = np.array([0, 12])[np.argmax(np.concatenate([background, cams]), axis=0)]
        assert background.dtype == np.float16
        assert np.array_equal(read(host, "clip-es", tmp_path, "x", bg=bg), theirs), bg


def test_crf_dict_argmax(host, tmp_path):
    write_crf_dict(tmp_path)
    # background = 1 - aero - dog = [[.05,.1,.8],[.1,.8,.2]]
    assert read(host, "psa-crf", tmp_path).tolist() == LOW_BG
    assert read(host, "eps-crf", tmp_path).tolist() == LOW_BG


def test_l2g_per_class_pngs(host, tmp_path):
    write_per_class(tmp_path)
    assert host.reader("l2g").ids(tmp_path) == ["2007_000032"]
    # value / 255 against 0.25: (0,2) 0.10 and (1,1) 0.14 background, (1,2) 77/255 = 0.30 aeroplane.
    assert read(host, "l2g", tmp_path).tolist() == LOW_BG
    # Only dog allowed: 51/255 = 0.2 and 41/255 = 0.16 fall below 0.25, so only 204 and 153 stay dog.
    ctx = ReadContext(num_classes=21, image_labels={"2007_000032": frozenset({12})})
    assert read(host, "l2g", tmp_path, ctx=ctx).tolist() == [[0, 12, 0], [12, 0, 0]]


def test_rca_min_max_and_power_four(host, tmp_path):
    write_per_class(tmp_path)
    # aeroplane / 230 and dog / 204, background (1 - max)^4: (0,2) 0.873^4 = 0.58 and (1,1) 0.843^4 = 0.51
    # are background; (1,2) 0.665^4 = 0.196 < 77/230 = 0.335 is aeroplane.
    assert read(host, "rca", tmp_path).tolist() == LOW_BG


def test_rca_final_labels_are_read_as_stored(host, tmp_path):
    path = write_rca_final(tmp_path, RCA_FINAL)
    assert png_colour_type(path) == PNG_PALETTE and len(Image.open(path).getpalette()) == 63
    assert host.reader("rca").ids(tmp_path) == ["2007_000032"]
    out = read(host, "rca", tmp_path)
    assert out.tolist() == RCA_FINAL and out.dtype == np.uint8
    # image-level labels and bg are for attention maps; a final label is what RCA decided
    ctx = ReadContext(num_classes=21, image_labels={"2007_000032": frozenset({12})})
    assert read(host, "rca", tmp_path, ctx=ctx, bg=0.9).tolist() == RCA_FINAL
    # under 1% of the image labelled: gen_labels.py sets every pixel to 255
    write_rca_final(tmp_path, np.full((2, 3), 255), image_id="2007_000033")
    assert read(host, "rca", tmp_path, image_id="2007_000033").tolist() == [[255] * 3] * 2


def test_rca_final_labels_and_attention_maps_in_one_folder(host, tmp_path):
    write_rca_final(tmp_path, RCA_FINAL, image_id="2007_000032")
    write_per_class(tmp_path, image_id="2007_000033")
    assert host.reader("rca").ids(tmp_path) == ["2007_000032", "2007_000033"]
    assert read(host, "rca", tmp_path, image_id="2007_000032").tolist() == RCA_FINAL
    assert read(host, "rca", tmp_path, image_id="2007_000033").tolist() == LOW_BG


def test_rca_image_with_both_kinds_is_one_error_naming_both_files(host, tmp_path):
    final = write_rca_final(tmp_path, RCA_FINAL)
    write_per_class(tmp_path)
    assert host.reader("rca").ids(tmp_path) == ["2007_000032"]
    with pytest.raises(InputError) as info:
        read(host, "rca", tmp_path)
    message = str(info.value)
    assert message.startswith(f"{final}: ") and str(tmp_path / "2007_000032_0.png") in message
    assert "both" in message and "\n" not in message


def test_rca_kinds_are_told_apart_by_content_not_only_by_name(host, tmp_path):
    # a palette x_3.png is the final label of image x_3; a greyscale y_3.png the class-3 map of image y
    write_rca_final(tmp_path, RCA_FINAL, image_id="x_3")
    write_rca_final(tmp_path, [[0, 1, 1], [0, 0, 1]], image_id="x")
    Image.fromarray(AERO_U8, mode="L").save(tmp_path / "y_3.png")
    assert png_colour_type(tmp_path / "y_3.png") == PNG_GREY
    assert host.reader("rca").ids(tmp_path) == ["x", "x_3", "y"]
    assert read(host, "rca", tmp_path, image_id="x_3").tolist() == RCA_FINAL
    assert read(host, "rca", tmp_path, image_id="x").tolist() == [[0, 1, 1], [0, 0, 1]]  # x_3.png is no map of x
    # y's only map is class 3 (0-based) = boat, 4: min-max 1.0 .. 0.0, background (1 - score)^4
    assert read(host, "rca", tmp_path, image_id="y").tolist() == [[4, 0, 0], [4, 0, 4]]
    assert identify(tmp_path / "x_3.png") == "png" and identify(tmp_path / "y_3.png") == "l2g"


def test_rca_greyscale_plain_png_is_a_label_only_if_its_values_are(host, tmp_path):
    Image.fromarray(np.array(RCA_FINAL, np.uint8), mode="L").save(tmp_path / "a.png")
    assert read(host, "rca", tmp_path, image_id="a").tolist() == RCA_FINAL
    Image.fromarray(AERO_U8, mode="L").save(tmp_path / "b.png")  # an attention map that lost its class
    with pytest.raises(InputError, match=r"b.png: a greyscale PNG with values up to 230 is not a label map.*"
                                         r"named <id>_<class>.png"):
        read(host, "rca", tmp_path, image_id="b")


def test_rca_bad_final_labels_are_named(host, tmp_path):
    write_rca_final(tmp_path, [[1, 30, 0], [0, 0, 0]])
    with pytest.raises(InputError, match=r"2007_000032.png: label value 30 is out of range 0..20 or 255"):
        read(host, "rca", tmp_path)
    Image.fromarray(np.zeros((2, 3, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(InputError, match="rgb.png: a PNG of colour type 2: RCA's final labels are palette PNGs"):
        read(host, "rca", tmp_path, image_id="rgb")
    with pytest.raises(InputError, match=r"none.png: file not found, nor any attention map none_<class>.png"):
        read(host, "rca", tmp_path, image_id="none")


# --- wrong formats are named, not turned into garbage --------------------------------------------

@pytest.mark.parametrize(("writer", "reader", "suggestion"), [
    (write_puzzlecam, "irn", "puzzlecam"),
    (write_irn, "puzzlecam", "irn"),
    (write_sipe, "irn", "sipe"),
    (write_clip_es, "sipe", "clip-es"),
    (write_class_dict, "irn", "psa"),
    (write_crf_dict, "psa", "psa-crf"),
    (write_class_dict, "psa-crf", "psa"),
    (write_irn, "eps", "irn"),
    (write_amn, "irn", "amn"),  # (it was "3 score maps but 2 class keys")
    (write_irn, "amn", "irn"),
])
def test_wrong_format_names_the_right_reader(host, tmp_path, writer, reader, suggestion):
    path = writer(tmp_path)
    with pytest.raises(InputError) as info:
        read(host, reader, tmp_path)
    message = str(info.value)
    assert message.startswith(str(path))
    assert f"try --reader {suggestion}" in message and "\n" not in message


def test_puzzlecam_file_message(host, tmp_path):
    write_puzzlecam(tmp_path)
    with pytest.raises(InputError, match=r"this looks like a PuzzleCAM file; try --reader puzzlecam$"):
        read(host, "irn", tmp_path)


def test_label_png_given_to_per_class_reader(host, tmp_path):
    Image.fromarray(np.array(LOW_BG, np.uint8), mode="L").save(tmp_path / "2007_000032.png")
    with pytest.raises(InputError, match="label PNG; try --reader png"):
        read(host, "l2g", tmp_path)


def test_per_class_map_given_to_the_png_reader_names_the_per_class_readers(host, tmp_path):
    """(The png reader lists an L2G folder's ``<id>_<class>.png`` as ids of their own, and called a
    score of 230 a label out of range, with the hint to set --num-classes.)"""
    Image.fromarray(AERO_U8, mode="L").save(tmp_path / "2007_000032_0.png")
    with pytest.raises(InputError, match=r"2007_000032_0.png: this looks like a per-class CAM PNG \(L2G, RCA\); "
                                         r"try --reader l2g$"):
        read(host, "png", tmp_path, image_id="2007_000032_0")
    Image.fromarray(np.array([[0, 30]], np.uint8), mode="L").save(tmp_path / "2007_000033_0.png")
    with pytest.raises(InputError, match=r"2007_000033_0.png: label value 30 is out of range"):  # could be labels
        read(host, "png", tmp_path, image_id="2007_000033_0")


def test_unrecognised_npy_keeps_the_plain_problem(host, tmp_path):
    save_npy(tmp_path / "2007_000032.npy", np.zeros((2, 3)))
    with pytest.raises(InputError, match="expected IRN's dictionary"):
        read(host, "irn", tmp_path)


def test_missing_file_is_named(host, tmp_path):
    with pytest.raises(InputError, match="2007_000099.npy: file not found"):
        read(host, "irn", tmp_path, image_id="2007_000099")


@pytest.mark.parametrize(("writer", "expected"), [
    (write_irn, "irn"), (write_amn, "amn"), (write_sipe, "sipe"), (write_puzzlecam, "puzzlecam"), (write_recurseed, "recurseed"),
    (write_clip_es, "clip-es"), (write_class_dict, "psa"), (write_crf_dict, "psa-crf"),
])
def test_identify_each_format(tmp_path, writer, expected):
    assert identify(writer(tmp_path)) == expected
    assert suggest_reader(tmp_path) == expected


def test_identify_pngs_and_garbage(tmp_path):
    write_per_class(tmp_path)
    assert identify(tmp_path / "2007_000032_11.png") == "l2g"
    assert identify(tmp_path / "2007_000032.png") == "png"  # VOC ids end in six digits, not a class
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    assert identify(tmp_path / "junk.npy") is None
    # a greyscale label map named like a per-class map (ids of the real dev set end in __<class>)
    Image.fromarray(np.array([[0, 15, 255]], np.uint8), mode="L").save(tmp_path / "2007_000559__20.png")
    assert identify(tmp_path / "2007_000559__20.png") == "png"


# --- the shared CAM rule -----------------------------------------------------------------------

def test_cam_to_label_rejects_bad_input(tmp_path):
    path = tmp_path / "x.npy"
    with pytest.raises(InputError, match="class 21 is out of range 1..20"):
        cam_to_label(path, SCORES, [1, 21], 21, bg=0.2)
    with pytest.raises(InputError, match="2 score maps but 3 class keys"):
        cam_to_label(path, SCORES, [1, 2, 3], 21, bg=0.2)
    bad = SCORES.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        cam_to_label(path, bad, [1, 2], 21, bg=0.2)


def test_cam_to_label_no_classes_is_background(tmp_path):
    out = cam_to_label(tmp_path / "x.npy", np.zeros((0, 2, 3)), [], 21, bg=2.0)
    assert out.tolist() == [[0, 0, 0], [0, 0, 0]]


def test_coco_sized_keys(host, tmp_path):
    # CLIMS on COCO: the same IRN layout with 80 classes; key 79 (toothbrush) -> class 80 with K = 81.
    save_npy(tmp_path / "COCO_train2014_000000000009.npy",
             {"keys": torch.tensor([79]), "high_res": AERO[None].copy()})
    coco = ReadContext(num_classes=81)
    out = read(host, "irn", tmp_path, image_id="COCO_train2014_000000000009", ctx=coco)
    assert out.tolist() == [[80, 0, 0], [80, 0, 80]]
    with pytest.raises(InputError, match="out of range 1..20"):
        read(host, "irn", tmp_path, image_id="COCO_train2014_000000000009")


def test_irn_and_puzzlecam_uncertain_band(host, tmp_path):
    # IR labels without CRF: a class above 0.55, background where nothing beats 0.12, 255 between.
    # (0,2) max 0.1 -> 0; (1,1) max 0.14 -> 255; (1,2) max 0.3 -> 255; the rest beat 0.55.
    expected = [[1, 12, 0], [12, 255, 255]]
    write_irn(tmp_path / "irn")
    assert read(host, "irn", tmp_path / "irn", bg=0.55, bg_low=0.12).tolist() == expected
    write_puzzlecam(tmp_path / "pc")
    assert read(host, "puzzlecam", tmp_path / "pc", bg=0.55, bg_low=0.12).tolist() == expected
    assert read(host, "puzzlecam", tmp_path / "pc").tolist() == LOW_BG  # off by default


def test_a_file_of_another_format_names_the_reader_to_use(host, tmp_path):
    write_class_dict(tmp_path)
    for name in ("seam", "transcam"):  # these read the class-dict layout
        assert read(host, name, tmp_path).shape == AERO.shape
    for name in ("irn", "psa-crf"):
        with pytest.raises(InputError, match="PSA-style .* dictionary .*; try --reader psa$"):
            read(host, name, tmp_path)


@pytest.mark.parametrize(("name", "write"), [
    ("irn", write_irn), ("sipe", write_sipe), ("puzzlecam", write_puzzlecam), ("recurseed", write_recurseed),
    ("clip-es", write_clip_es), ("psa", write_class_dict), ("seam", write_class_dict),
    ("transcam", write_class_dict), ("l2g", write_per_class),
])
def test_every_cam_reader_keeps_to_the_image_level_labels(host, tmp_path, name, write):
    """(With --labels saying the image holds only a dog, no pixel may be an aeroplane.)"""
    write(tmp_path)
    free = read(host, name, tmp_path)
    assert 1 in free and 12 in free  # both classes win somewhere without the labels
    only_dog = read(host, name, tmp_path, ctx=ReadContext(num_classes=21, image_labels={"2007_000032": frozenset({12})}))
    assert 1 not in only_dog and 12 in only_dog


def test_each_reader_declares_its_methods_default():
    """The defaults docs/readers.md gives for each baseline (its own script's setting)."""
    from sepl_tree.plugins import load_host

    host = load_host(autoload=False)
    declared = {name: {k: p.default for k, p in host.reader(name).params.items()}
                for name in ("psa", "seam", "eps", "ppc", "transcam", "clip-es", "irn", "puzzlecam", "recurseed",
                             "l2g", "rca")}
    assert declared == {
        "psa": {"bg": 0.2}, "seam": {"bg": 0.26}, "eps": {"bg": 0.2}, "ppc": {"bg": 0.2}, "transcam": {"bg": 0.42},
        "clip-es": {"bg": 2.0, "key": "attn_highres"}, "irn": {"bg": 0.15, "bg_low": -1.0},
        "puzzlecam": {"bg": 0.25, "key": "auto", "bg_low": -1.0}, "recurseed": {"bg": 2.0}, "l2g": {"bg": 0.25},
        "rca": {"bg": 4.0},
    }


def test_puzzlecam_auto_takes_the_random_walk_scores_when_a_file_has_both(host, tmp_path):
    keys = np.pad(torch.tensor([0, 11]) + 1, (1, 0), mode="constant")
    save_npy(tmp_path / "2007_000032.npy", {"keys": keys, "hr_cam": SCORES.copy(), "rw": SCORES * 0.5})
    assert read(host, "puzzlecam", tmp_path).tolist() == HIGH_BG  # rw's halved scores
    assert read(host, "puzzlecam", tmp_path, key="hr_cam").tolist() == LOW_BG
