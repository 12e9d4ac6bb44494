"""Outputs get the mode a plain write of a new file would, ``0o666 & ~umask``, not mkstemp's 0600."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from sepl_tree import files
from sepl_tree.files import atomic_write_bytes, new_file_mode, process_umask

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def umask():
    """Set the umask for one test (and forget the remembered one before and after)."""
    old = os.umask(0o022)
    os.umask(old)
    process_umask.cache_clear()

    def set_to(mask: int) -> None:
        os.umask(mask)
        process_umask.cache_clear()

    yield set_to
    os.umask(old)
    process_umask.cache_clear()


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o027, 0o002])
def test_atomic_write_gives_the_mode_of_a_plain_write(tmp_path, umask, mask):
    umask(mask)
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    (tmp_path / "plain.bin").write_bytes(b"x")
    assert mode(tmp_path / "a.bin") == mode(tmp_path / "plain.bin") == 0o666 & ~mask
    assert new_file_mode() == 0o666 & ~mask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "plain.bin"]  # no temporary left


def test_overwriting_replaces_the_mode_too(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")
    path.chmod(0o600)
    atomic_write_bytes(path, b"new")
    assert (path.read_bytes(), mode(path)) == (b"new", 0o644)


def test_the_umask_is_read_once_and_left_as_it_was(umask):
    umask(0o027)
    assert files._umask_from_proc() == 0o027  # Linux says it without changing it
    assert files._umask_by_setting() == 0o027  # the portable way puts it back
    assert process_umask() == 0o027
    os.umask(0o077)  # remembered: a later change is not seen (and the lookup costs nothing)
    assert process_umask() == 0o027
    assert os.umask(0o027) == 0o077  # ... and nothing the lookups did changed the umask


def test_without_proc_the_umask_is_read_by_setting_it(umask, monkeypatch):
    umask(0o037)
    monkeypatch.setattr(files, "_umask_from_proc", lambda: None)
    assert process_umask() == 0o037 and new_file_mode() == 0o640
    assert os.umask(0o037) == 0o037


def test_writes_from_many_threads_all_get_the_mode(tmp_path, umask):
    umask(0o077)

    def write(n: int) -> None:
        for i in range(20):
            atomic_write_bytes(tmp_path / f"{n}-{i}.bin", b"x")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {mode(p) for p in tmp_path.iterdir()} == {0o600} and len(list(tmp_path.iterdir())) == 160
    assert os.umask(0o077) == 0o077


# --- every command's outputs, under umask 022 and 077 -------------------------------------------

DRIVER = """
import sys
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from sepl_tree.cli import app
from sepl_tree.demo import write_demo
from sepl_tree.masks import MaskSet, write_masks_png_folder, write_masks_rle

def main():
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    demo = root / "demo"
    ids = write_demo(demo, n_images=3, seed=1)
    voc = root / "voc"  # the demo as a VOC-layout dataset, for synth
    (voc / "JPEGImages").mkdir(parents=True)
    (voc / "SegmentationClass").mkdir()
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    for image_id in ids:
        (voc / "JPEGImages" / f"{image_id}.jpg").write_bytes((demo / "images" / f"{image_id}.jpg").read_bytes())
        (voc / "SegmentationClass" / f"{image_id}.png").write_bytes((demo / "gt" / f"{image_id}.png").read_bytes())
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("\\n".join(ids) + "\\n")
    sys.path.insert(0, sys.argv[3])
    import tiny_sam
    checkpoint = tiny_sam.save_tiny_checkpoint(root / "tiny.pth")

    d = {"pseudo": demo / "pseudo", "masks": demo / "masks", "gt": demo / "gt", "images": demo / "images"}
    commands = {
        "run": ["run", "--pseudo-labels", d["pseudo"], "--masks", d["masks"], "--gt", d["gt"], "--out", out / "run"],
        "run-2": ["run", "--pseudo-labels", d["pseudo"], "--masks", d["masks"], "--out", out / "run-2", "--workers", "2"],
        "compare": ["compare", "--strategies", "threshold,official", "--pseudo-labels", d["pseudo"], "--masks", d["masks"],
                    "--gt", d["gt"], "--images", d["images"], "--out", out / "compare"],
        "synth": ["synth", "--dataset", voc, "--out", out / "synth"],
        "convert": ["convert", "--reader", "png", "--input", d["pseudo"], "--out", out / "convert"],
        "eval": ["eval", "--pred", d["pseudo"], "--gt", d["gt"], "--json", out / "eval" / "scores.json"],
    }
    for fmt in ("rle", "png"):
        commands[f"masks-{fmt}"] = ["masks", "--images", d["images"], "--checkpoint", checkpoint, "--model-type", "tiny",
                                    "--plugin", Path(sys.argv[3]) / "tiny_sam.py", "--out", out / f"masks-{fmt}",
                                    "--format", fmt, "-p", "points_per_side=4", "-p", "pred_iou_thresh=0",
                                    "-p", "stability_score_thresh=0"]
    for name, args in commands.items():
        result = CliRunner().invoke(app, [str(a) for a in args])
        assert result.exit_code == 0, (name, result.output)
    rng = np.random.default_rng(0)
    maskset = MaskSet(rng.random((3, 20, 30)) < 0.5)
    write_masks_rle(out / "writers" / "a.json", maskset)
    write_masks_png_folder(out / "writers" / "a", maskset)
    print("ok")


if __name__ == "__main__":  # the pool's fork server imports this file too
    main()
"""


@pytest.mark.slow  # every command once, in a subprocess per umask (a process pool, a tiny SAM)
@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_every_command_writes_outputs_others_can_read_as_the_umask_allows(tmp_path, mask):
    out = tmp_path / "out"
    driver = tmp_path / "driver.py"
    driver.write_text(textwrap.dedent(DRIVER))
    env = {**os.environ, "SEPL_TREE_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, str(driver), str(tmp_path / "in"), str(out), str(REPO / "tests")],
                            cwd=REPO, env=env, umask=mask, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stdout + result.stderr
    found = {p.relative_to(out).as_posix(): mode(p) for p in out.rglob("*")}
    want_file, want_dir = 0o666 & ~mask, 0o777 & ~mask
    wrong = {name: oct(m) for name, m in found.items()
             if m != (want_dir if (out / name).is_dir() else want_file)}
    assert not wrong, f"umask {mask:04o}: expected {want_file:04o} files, {want_dir:04o} folders; got {wrong}"
    # every kind of output is among them
    for name in ("run/run.json", "run-2/run.json", "compare/compare.json", "compare/report.md", "synth/synth.json",
                 "convert", "eval/scores.json", "masks-rle/masks_run.jsonl", "masks-png", "writers/a.json",
                 "writers/a/metadata.csv", "writers/a/0.png"):
        assert name in found, name
    demo_ids = [p.stem for p in (tmp_path / "in" / "demo" / "pseudo").glob("*.png")]
    for image_id in demo_ids:
        for name in (f"run/{image_id}.png", f"run-2/{image_id}.png", f"compare/threshold/{image_id}.png",
                     f"synth/{image_id}.json", f"convert/{image_id}.png"):
            assert name in found, name
    assert any(n.startswith("masks-rle/") and n.endswith(".json") for n in found)
    assert any(n.startswith("masks-png/") and n.endswith("/metadata.csv") for n in found)
    assert json.loads((out / "run" / "run.json").read_text())["counts"]["written"] == len(demo_ids)


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch, failure):
    import sepl_tree.files as files
    from sepl_tree.errors import SeplError

    path = tmp_path / "a.png"
    path.write_bytes(b"old")

    def fail(*_):
        raise failure

    monkeypatch.setattr(files.os, "replace", fail)
    expected = SeplError if isinstance(failure, OSError) else KeyboardInterrupt
    with pytest.raises(expected) as err:
        atomic_write_bytes(path, b"new")
    if expected is SeplError:
        assert str(err.value) == f"{path}: cannot write the file (No space left on device)"
    assert path.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]
