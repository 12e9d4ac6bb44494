"""``masks`` remakes the masks of an image that changed, and keeps those of one only copied
(``OUT/masks_made_from.jsonl``, :mod:`sepl_tree.sam.images_log`)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image
from typer.testing import CliRunner

pytest.importorskip("torch", reason="SAM needs the sam extra: pip install 'sepl-tree[sam]'")
pytest.importorskip("segment_anything", reason="SAM needs the sam extra: pip install 'sepl-tree[sam]'")

from sepl_tree.cli import app  # noqa: E402
from sepl_tree.masks import find_mask_source, read_masks  # noqa: E402
from sepl_tree.sam.images_log import IMAGES_LOG, ImagesLog, stat_of  # noqa: E402
from sepl_tree.sam.run import MaskRun, MaskRunSummary  # noqa: E402
from sepl_tree.sam.workers import MaskResult  # noqa: E402
from tests.tiny_sam_helpers import TINY, blobs, load_plugin, masks_args  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return load_plugin(TINY).save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pth")


@pytest.fixture(autouse=True)
def _quiet(single_torch_thread):
    yield


def _masks(images: Path, checkpoint: Path, out: Path, *extra: str, code: int = 0):
    result = runner.invoke(app, masks_args(images, checkpoint, out, "tiny", TINY, *extra))
    assert result.exit_code == code, result.output
    return result


def _made(out: Path, image_id: str) -> int:
    """When the image's masks (``<id>.json`` or ``<id>/``) were written."""
    return os.stat(find_mask_source(out, image_id)).st_mtime_ns


@pytest.mark.parametrize("fmt", ["rle", "png"])
def test_a_changed_image_gets_new_masks_and_a_copied_one_keeps_its_own(images: Path, checkpoint: Path,
                                                                        tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "masks"
    _masks(images, checkpoint, out, "--format", fmt)
    records = ImagesLog(out).read()
    assert sorted(records) == ["img0", "img1", "img2", "img3"]
    assert records["img2"]["sha1"] == hashlib.sha1((images / "img2.png").read_bytes()).hexdigest()
    before = {i: _made(out, i) for i in records}
    copied, changed = images / "img0.png", images / "img1.png"
    shutil.copyfile(copied, tmp_path / "copy.png")
    shutil.copyfile(tmp_path / "copy.png", copied)  # the same bytes, a new time (cp without -p)
    os.utime(copied, ns=(records["img0"]["mtime_ns"] + 10**9,) * 2)
    Image.fromarray(blobs(7)).save(changed)  # another photo under the same name
    result = _masks(images, checkpoint, out, "--format", fmt)
    flat = " ".join(result.output.split())
    assert f"1 image(s) changed since their masks were made (e.g. {changed}): their masks are made again" in flat
    after = {i: _made(out, i) for i in records}
    assert after["img1"] != before["img1"] and len(read_masks(out, "img1")) == 48
    assert {i: after[i] for i in ("img0", "img2", "img3")} == {i: before[i] for i in ("img0", "img2", "img3")}
    now = ImagesLog(out).read()
    assert now["img0"]["mtime_ns"] == stat_of(copied)[1]  # the copy's new time is recorded: no hashing next time
    assert now["img1"]["sha1"] == hashlib.sha1(changed.read_bytes()).hexdigest()
    third = _masks(images, checkpoint, out, "--format", fmt)
    assert "image(s) changed since" not in third.output and {i: _made(out, i) for i in records} == after


def test_masks_from_before_the_log_are_kept_and_recorded(images: Path, checkpoint: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import sepl_tree.cli.masks as masks_cli

    out = tmp_path / "masks"
    _masks(images, checkpoint, out)
    (out / IMAGES_LOG).unlink()  # a folder made before the log existed
    (out / "img0.json").write_text("[]")  # a marker: kept, not remade
    Image.fromarray(blobs(8)).save(images / "img2.png")  # changed, but nothing says what its masks were made from
    monkeypatch.setattr(masks_cli, "HASHING_NOTE_IMAGES", 4)
    result = _masks(images, checkpoint, out)
    assert (out / "img0.json").read_text() == "[]" and "image(s) changed since" not in result.output
    assert "reading 4 images with masks to tell whether they changed since" in " ".join(result.output.split())
    assert sorted(ImagesLog(out).read()) == ["img0", "img1", "img2", "img3"]  # from now on, watched
    Image.fromarray(blobs(9)).save(images / "img2.png")
    assert "1 image(s) changed since" in " ".join(_masks(images, checkpoint, out).output.split())


def _one_image_run(tmp_path: Path, stats) -> tuple[MaskRun, Path, Path]:
    image, out = tmp_path / "a.png", tmp_path / "out"
    Image.fromarray(blobs(1)).save(image)
    out.mkdir()
    (out / "a.json").write_text("[]")  # what the worker wrote
    job = SimpleNamespace(images={"a": image}, out=out, fmt="rle")
    run = MaskRun(job, ["a"], MaskRunSummary(total=1, skipped=0), out / "errors.log", stats={"a": stats(image)})
    return run, image, out


def test_an_image_changed_while_its_masks_were_made_fails_and_leaves_no_masks(tmp_path: Path) -> None:
    run, image, out = _one_image_run(tmp_path, lambda image: (1, 2))  # not its size and time now
    counted = run.add(MaskResult("a", n_masks=3))
    assert counted.error.startswith(f"{image}: the image changed while its masks were made")
    assert not (out / "a.json").exists() and run.summary.failed == 1 and run.summary.done == 0
    assert (out / "errors.log").read_text().startswith("a\t") and ImagesLog(out).read() == {}


def test_an_image_left_alone_is_recorded_as_its_masks_are_written(tmp_path: Path) -> None:
    run, image, out = _one_image_run(tmp_path, stat_of)
    assert run.add(MaskResult("a", n_masks=3)).error is None
    assert (out / "a.json").exists() and run.summary.done == 1
    record = json.loads((out / IMAGES_LOG).read_text())
    assert record == {"id": "a", "size": image.stat().st_size, "mtime_ns": image.stat().st_mtime_ns,
                      "sha1": hashlib.sha1(image.read_bytes()).hexdigest()}


def test_an_image_touched_while_its_masks_were_made_keeps_them(tmp_path: Path) -> None:
    """(The driver could not tell a touch from an edit: it failed the image, and its masks were removed.)"""
    run, image, out = _one_image_run(tmp_path, lambda image: (1, 2))  # its time moved since the run read it
    read = hashlib.sha1(image.read_bytes()).hexdigest()  # what the worker decoded: the same bytes
    counted = run.add(MaskResult("a", n_masks=3, sha1=read))
    assert counted.error is None and (out / "a.json").exists() and run.summary.done == 1
    assert ImagesLog(out).read()["a"] == {"size": image.stat().st_size, "mtime_ns": image.stat().st_mtime_ns,
                                          "sha1": read}


@pytest.mark.parametrize("stats", [stat_of, lambda image: (1, 2)])
def test_masks_made_from_other_bytes_than_the_image_holds_now_fail(tmp_path: Path, stats) -> None:
    run, image, out = _one_image_run(tmp_path, stats)
    os.utime(image, ns=(image.stat().st_mtime_ns + 10**9,) * 2)  # rewritten after the worker read it
    counted = run.add(MaskResult("a", n_masks=3, sha1="0" * 40))
    assert counted.error.startswith(f"{image}: the image changed while its masks were made")
    assert not (out / "a.json").exists() and ImagesLog(out).read() == {}


@pytest.mark.parametrize("engine", ["fast", "stock"])
def test_the_recorded_hash_is_of_the_bytes_the_worker_decoded(images: Path, checkpoint: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch, engine: str) -> None:
    """A touch while the model works (here: right after each image is read) keeps the masks."""
    import sepl_tree.sam.workers as workers

    read = workers.load_image_with_sha1

    def read_then_touch(path):
        decoded = read(path)
        os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
        return decoded

    monkeypatch.setattr(workers, "load_image_with_sha1", read_then_touch)
    out = tmp_path / "masks"
    result = _masks(images, checkpoint, out, "--executor", "serial", "--engine", engine)
    log = out / "errors.log"
    assert "image(s) failed" not in result.output and (not log.exists() or not log.read_text().strip())
    records = ImagesLog(out).read()
    assert sorted(records) == ["img0", "img1", "img2", "img3"]
    for path in sorted(images.iterdir()):
        assert records[path.stem] == {"size": path.stat().st_size, "mtime_ns": path.stat().st_mtime_ns,
                                      "sha1": hashlib.sha1(path.read_bytes()).hexdigest()}


def _stored(path: Path, seed: int) -> None:
    """An uncompressed PNG: its size depends on its dimensions only, so an edit keeps the size."""
    Image.fromarray(blobs(seed)).save(path, compress_level=0)


def test_an_edit_that_keeps_the_size_is_found_by_its_hash(images: Path, checkpoint: Path, tmp_path: Path) -> None:
    _stored(images / "img1.png", 1)
    out = tmp_path / "masks"
    _masks(images, checkpoint, out)
    size = (images / "img1.png").stat().st_size
    _stored(images / "img1.png", 11)  # other pixels, the same number of bytes
    os.utime(images / "img1.png", ns=(ImagesLog(out).read()["img1"]["mtime_ns"] + 10**9,) * 2)
    assert (images / "img1.png").stat().st_size == size
    before = _made(out, "img1")
    result = _masks(images, checkpoint, out)
    assert "1 image(s) changed since" in " ".join(result.output.split()) and _made(out, "img1") != before


def test_the_stale_masks_of_a_changed_image_go_even_when_this_run_cannot_make_new_ones(
        images: Path, checkpoint: Path, tmp_path: Path) -> None:
    """(No run may read masks of another image meanwhile; a changed image's old masks are worth nothing.)"""
    out = tmp_path / "masks"
    _masks(images, checkpoint, out)
    (images / "img2.png").write_bytes(b"not a png any more")  # changed, and this run cannot make its masks
    failed = _masks(images, checkpoint, out, code=1)
    assert "img2" in (out / "errors.log").read_text() and "1 image(s) failed" in " ".join(failed.output.split())
    assert find_mask_source(out, "img2") is None
    Image.fromarray(blobs(12)).save(images / "img2.png")
    again = _masks(images, checkpoint, out)
    assert "image(s) changed since" not in again.output and len(read_masks(out, "img2")) == 48


def test_a_relative_out_keeps_the_new_masks_of_a_changed_image(images: Path, checkpoint: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _masks(images, checkpoint, Path("masks"))
    Image.fromarray(blobs(14)).save(images / "img1.png")
    _masks(images, checkpoint, Path("masks"))
    assert len(read_masks(tmp_path / "masks", "img1")) == 48
    assert ImagesLog(tmp_path / "masks").read()["img1"]["sha1"] == hashlib.sha1((images / "img1.png").read_bytes()).hexdigest()


def test_masks_written_but_not_recorded_are_made_again(images: Path, checkpoint: Path, tmp_path: Path) -> None:
    """(A run killed between writing an image's masks and recording them: what they were made from is unknown.)"""
    out = tmp_path / "masks"
    _masks(images, checkpoint, out)
    log = out / IMAGES_LOG
    lines = log.read_text().splitlines()
    assert json.loads(lines[0]).keys() == {"since"}
    log.write_text("\n".join(line for line in lines if '"img2"' not in line) + "\n")
    before = {i: _made(out, i) for i in ("img0", "img2")}
    result = _masks(images, checkpoint, out)
    flat = " ".join(result.output.split())
    assert f"1 image(s) have masks that no line of {IMAGES_LOG} accounts for" in flat and "e.g. img2" in flat
    assert _made(out, "img2") != before["img2"] and _made(out, "img0") == before["img0"]
    assert "img2" in ImagesLog(out).read()


def test_a_changed_image_in_the_other_layout_is_replaced_by_the_new_one(images: Path, checkpoint: Path,
                                                                         tmp_path: Path) -> None:
    out = tmp_path / "masks"
    _masks(images, checkpoint, out)  # RLE
    Image.fromarray(blobs(13)).save(images / "img0.png")
    _masks(images, checkpoint, out, "--format", "png")
    assert (out / "img0").is_dir() and not (out / "img0.json").exists() and len(read_masks(out, "img0")) == 48
    assert (out / "img1.json").is_file() and not (out / "img1").exists()  # unchanged: kept in its layout


@pytest.mark.parametrize("count", [5, 6])
def test_most_images_changed_is_taken_for_a_wrong_images_folder(checkpoint: Path, tmp_path: Path, count: int) -> None:
    out = tmp_path / "masks"
    names = [f"im{n}.png" for n in range(count)]
    first, other = tmp_path / "first", tmp_path / "other"
    for folder, offset in ((first, 0), (other, 20)):
        folder.mkdir()
        for n, name in enumerate(names):
            Image.fromarray(blobs(n + offset, 24, 32)).save(folder / name)
    _masks(first, checkpoint, out)
    before = {p.name: p.read_bytes() for p in out.glob("*.json")}
    if count == 5:  # (a few changed images are simply remade)
        assert f"{count} image(s) changed since" in " ".join(_masks(other, checkpoint, out).output.split())
    else:
        refused = _masks(other, checkpoint, out, code=1)
        flat = " ".join(refused.output.split())
        assert f"and {count - 1} more of the {count} images with masks" in flat
        assert "is --images the folder they were made from?" in flat
        assert {p.name: p.read_bytes() for p in out.glob("*.json")} == before  # no masks removed or made
        _masks(other, checkpoint, out, "--remake-changed")
    assert all((out / f"im{n}.json").read_bytes() != before[f"im{n}.json"] for n in range(count))


def test_an_image_that_cannot_be_read_to_check_keeps_its_masks(images: Path, checkpoint: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import sepl_tree.sam.run as sam_run

    out = tmp_path / "masks"
    _masks(images, checkpoint, out)
    os.utime(images / "img3.jpg", ns=(1, 1))  # to be hashed ...
    real = sam_run.judge

    def judge(path, record):
        if path.name == "img3.jpg":
            raise PermissionError(13, "Permission denied")  # ... and it cannot be read
        return real(path, record)

    monkeypatch.setattr(sam_run, "judge", judge)
    before = _made(out, "img3")
    result = _masks(images, checkpoint, out)
    flat = " ".join(result.output.split())
    assert "1 image(s) with masks could not be read to tell whether they changed" in flat
    assert "Permission denied): their masks are kept as they are" in flat and _made(out, "img3") == before


def test_the_log_is_tidied_when_it_holds_many_lines_per_image(tmp_path: Path) -> None:
    log = ImagesLog(tmp_path)
    for n in range(150):  # the same image moved 150 times: a line each
        log.note("a", {"size": 1, "mtime_ns": n, "sha1": "x"})
    log.note("b", {"size": 2, "mtime_ns": 0, "sha1": "y"})
    records = log.read()
    assert log.lines == 151 and records["a"]["mtime_ns"] == 149
    log.tidy(records)
    assert ImagesLog(tmp_path).read() == records and len((tmp_path / IMAGES_LOG).read_text().splitlines()) == 2
