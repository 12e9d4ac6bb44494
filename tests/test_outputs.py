"""claim_folder: which folder a run may write into, and what it lists to decide."""

from __future__ import annotations

import json
import os

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


_HOLDER = """
import sys
from pathlib import Path
from sepl_tree.outputs import claim_folder
claim_folder(Path(sys.argv[1]), "run.json", {"strategy": "threshold"}, sys.argv[2] == "overwrite",
             lambda d: d.glob("*.png"))
print("held", flush=True)
sys.stdin.read()  # hold the folder until the test closes our stdin
"""


def _holding(folder, overwrite=False):
    """A process that claims ``folder`` (with ``overwrite``) and holds it until its stdin is closed."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder), "overwrite" if overwrite else "-"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    return proc


def test_a_folder_another_process_writes_is_refused_and_free_again_when_it_ends(tmp_path):
    """(A second run with --overwrite and other settings cleared the folder while the first went on
    writing outputs of its own settings into it.)"""
    import numpy as np
    from typer.testing import CliRunner

    from sepl_tree.cli import app
    from tests.helpers import write_dataset

    pseudo = np.zeros((6, 8), np.uint8)
    pseudo[1:4, 2:6] = 1
    masks = np.zeros((1, 6, 8), bool)
    masks[0, 1:5, 2:7] = True
    pseudo_dir, masks_dir, _ = write_dataset(tmp_path / "in", {"a": (pseudo, masks, pseudo)}, "rle")
    out = tmp_path / "out"
    argv = ["run", "--pseudo-labels", str(pseudo_dir), "--masks", str(masks_dir), "--out", str(out), "--overwrite"]
    holder = _holding(out)
    (out / "kept.png").write_bytes(b"x")  # an output of the holder's
    try:
        result = CliRunner().invoke(app, argv, env={"COLUMNS": "300"})
        assert result.exit_code == 1
        assert (f"{out}: another sepl-tree command is writing this folder (process {holder.pid}); wait for it "
                "to end, or use another --out") in " ".join(result.output.split())
        assert (out / "kept.png").exists()  # nothing removed
    finally:
        holder.stdin.close()
        holder.wait(10)
    result = CliRunner().invoke(app, argv, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert not (out / "kept.png").exists() and (out / "a.png").exists()
    holder = _holding(out, overwrite=True)  # the command let go of the folder when it ended
    holder.stdin.close()
    assert holder.wait(10) == 0


def test_a_process_claims_a_folder_it_holds_again(tmp_path):
    from sepl_tree.outputs import LOCK, release_folders

    settings = {"strategy": "threshold"}
    claim_folder(tmp_path, "run.json", settings, False, lambda d: d.glob("*.png"))
    claim_folder(tmp_path, "run.json", settings, False, lambda d: d.glob("*.png"))
    assert (tmp_path / LOCK).read_text().strip() == str(os.getpid())
    release_folders()
    assert not (tmp_path / LOCK).exists()
    holder = _holding(tmp_path)
    holder.stdin.close()
    assert holder.wait(10) == 0
