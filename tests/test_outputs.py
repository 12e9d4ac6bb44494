"""claim_folder: which folder a run may write into, and what it lists to decide."""

from __future__ import annotations

import json

import pytest

from sepl_tree.errors import SeplError
from sepl_tree.outputs import claim_folder

SETTINGS = {"strategy": "threshold", "params": {"t1": 0.5}}


def _pngs(folder, listed):
    def outputs(path):
        listed.append(path)
        return path.glob("*.png")
    return outputs


def test_a_resume_with_the_same_settings_lists_no_outputs(tmp_path):
    # A COCO-sized folder holds 100k outputs: listing and sorting their paths on every resume
    # cost seconds and 40 MiB, for nothing when the manifest's settings match.
    listed = []
    claim_folder(tmp_path, "run.json", SETTINGS, False, _pngs(tmp_path, listed))
    (tmp_path / "a.png").write_bytes(b"")
    claim_folder(tmp_path, "run.json", SETTINGS, False, _pngs(tmp_path, listed))
    assert listed == [tmp_path]  # the first claim looked (no manifest yet); the resume did not
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "running"


def test_outputs_without_a_manifest_are_refused_naming_the_first(tmp_path):
    for name in ("c.png", "a.png", "b.png"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(SeplError, match=r"holds 3 output\(s\) \(e\.g\. a\.png\) but no run\.json"):
        claim_folder(tmp_path, "run.json", SETTINGS, False, _pngs(tmp_path, []))
    assert not (tmp_path / "run.json").exists()


def test_other_settings_are_refused_and_overwrite_removes_the_outputs(tmp_path):
    claim_folder(tmp_path, "run.json", SETTINGS, False, _pngs(tmp_path, []))
    (tmp_path / "a.png").write_bytes(b"")
    other = {**SETTINGS, "params": {"t1": 0.6}}
    with pytest.raises(SeplError, match=r"made with other settings \(params\.t1 0\.5 -> 0\.6\)"):
        claim_folder(tmp_path, "run.json", other, False, _pngs(tmp_path, []))
    claim_folder(tmp_path, "run.json", other, True, _pngs(tmp_path, []))
    assert not (tmp_path / "a.png").exists()
    assert json.loads((tmp_path / "run.json").read_text())["settings"] == other


def test_settings_are_compared_as_they_read_back_from_json(tmp_path):
    """(A tuple or a path in the settings reads back as a list or a string: the same settings, so
    a resume, not a refusal naming a change that is none.)"""
    from pathlib import Path

    settings = {"strategy": "threshold", "plugins": ("a.py",), "inputs": {"masks": Path("/data/masks")}}
    claim_folder(tmp_path, "run.json", settings, False, _pngs(tmp_path, []))
    (tmp_path / "a.png").write_bytes(b"")
    claim_folder(tmp_path, "run.json", settings, False, _pngs(tmp_path, []))  # no error: it resumes
    assert json.loads((tmp_path / "run.json").read_text())["settings"]["plugins"] == ["a.py"]


def test_a_made_from_log_keeps_each_ids_last_record_and_is_tidied_when_mostly_old_lines(tmp_path):
    from sepl_tree.outputs import MADE_FROM, MadeFrom

    with MadeFrom(tmp_path) as log:
        for n in range(150):  # one image made again 150 times (150 reruns after its inputs changed)
            log.note("a", ((0, n), (0, n + 1)))  # (mtime, ctime) of each input: the change times are kept
        log.note("b", ((9, 7),))
    path = tmp_path / MADE_FROM
    log = MadeFrom(tmp_path)
    records = log.read()
    assert records == {"a": (149, 150), "b": (7,)} and log.lines == 152  # (the first says since when)
    assert len(path.read_text().splitlines()) == 152  # reading changes nothing
    log.tidy(records)
    assert path.read_text().splitlines() == [f'{{"since": {log.since}}}', '{"id": "a", "inputs": [149, 150]}',
                                             '{"id": "b", "inputs": [7]}']
    with MadeFrom(tmp_path) as log:  # a few old lines stay until they outnumber the records
        log.note("b", ((9, 8),))
    log = MadeFrom(tmp_path)
    records = log.read()
    log.tidy(records)
    assert records == {"a": (149, 150), "b": (8,)} and len(path.read_text().splitlines()) == 4


@pytest.mark.parametrize("line", ["not json", '{"id": "a"}', '{"id": "a", "inputs": ["x"]}', "[1, 2]", '"a"'])
def test_a_made_from_line_that_is_not_a_record_is_no_record(tmp_path, line):
    from sepl_tree.outputs import MADE_FROM, MadeFrom

    (tmp_path / MADE_FROM).write_text(f'{{"id": "b", "inputs": [1]}}\n{line}\n')
    assert MadeFrom(tmp_path).read() == {"b": (1,)}


def test_overwrite_removes_the_made_from_log_with_the_outputs(tmp_path):
    from sepl_tree.outputs import MADE_FROM, MadeFrom

    claim_folder(tmp_path, "run.json", SETTINGS, False, lambda d: d.glob("*.png"))
    with MadeFrom(tmp_path) as log:
        log.note("a", ((1, 2),))
    claim_folder(tmp_path, "run.json", SETTINGS, True, lambda d: d.glob("*.png"))
    assert not (tmp_path / MADE_FROM).exists()
