"""``atomic_folder``: a folder appears whole or not at all, and two writers of it never share a staging folder."""

from __future__ import annotations

import os

import pytest

from sepl_tree import files
from sepl_tree.files import atomic_folder, remove_stale_temporaries


def contents(folder):
    return {p.name: p.read_text() for p in folder.iterdir()}


def test_it_replaces_an_existing_folder_and_leaves_nothing_behind(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "0.png").write_text("old")
    (tmp_path / "img" / "1.png").write_text("old")
    with atomic_folder(tmp_path / "img") as staging:
        assert staging.parent == tmp_path and staging.name.startswith(".img.") and staging.name.endswith(".tmp")
        (staging / "0.png").write_text("new")
        assert contents(tmp_path / "img") == {"0.png": "old", "1.png": "old"}  # nothing changes until the end
    assert contents(tmp_path / "img") == {"0.png": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img"]


def test_a_failing_writer_leaves_the_old_folder_as_it_was(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "0.png").write_text("old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_folder(tmp_path / "img") as staging:
            (staging / "0.png").write_text("half")
            raise RuntimeError("disk full")
    assert contents(tmp_path / "img") == {"0.png": "old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img"]


def test_two_writers_of_one_folder_at_once_each_stage_their_own(tmp_path):
    """(A Ray worker thought lost and its replacement can write the same image's folder.)"""
    with atomic_folder(tmp_path / "img") as first:
        (first / "0.png").write_text("mask")
        with atomic_folder(tmp_path / "img") as second:
            assert second != first
            (second / "0.png").write_text("mask")
        assert contents(tmp_path / "img") == {"0.png": "mask"}
    assert contents(tmp_path / "img") == {"0.png": "mask"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img"]


def test_a_folder_that_arrives_between_the_two_renames_stays(tmp_path, monkeypatch):
    rename = os.rename

    def another_writer_first(src, dst):
        os.mkdir(dst)
        with open(os.path.join(dst, "0.png"), "w") as f:
            f.write("theirs")
        rename(src, dst)

    monkeypatch.setattr(files.os, "rename", another_writer_first)
    with atomic_folder(tmp_path / "img") as staging:
        (staging / "0.png").write_text("ours")
    assert contents(tmp_path / "img") == {"0.png": "theirs"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img"]


def test_a_killed_writers_staging_folder_is_what_a_rerun_removes(tmp_path):
    context = atomic_folder(tmp_path / "img")
    staging = context.__enter__()  # a process killed here never leaves the block
    (staging / "0.png").write_text("half")
    assert remove_stale_temporaries(tmp_path) == 1 and not list(tmp_path.iterdir())


def test_a_rename_that_fails_puts_the_old_folder_back(tmp_path, monkeypatch):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "0.png").write_text("old")

    def refused(src, dst):
        raise PermissionError(13, "Permission denied", dst)

    monkeypatch.setattr(files.os, "rename", refused)
    with pytest.raises(PermissionError):
        with atomic_folder(tmp_path / "img") as staging:
            (staging / "0.png").write_text("new")
    assert contents(tmp_path / "img") == {"0.png": "old"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img"]
