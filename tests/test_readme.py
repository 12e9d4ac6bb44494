"""The README's tutorial works as written, and CI runs the README's test command."""

import re
import subprocess
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from sepl_tree.cli import app
from sepl_tree.files import read_png
from tests.helpers import write_dataset

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
runner = CliRunner()


def _tutorial_block(lang: str) -> str:
    section = README.split("## Write your own strategy", 1)[1]
    return re.search(rf"```{lang}\n(.*?)```", section, re.S).group(1)


def test_readme_starts_with_two_setup_commands():
    first_block = re.search(r"```sh\n(.*?)```", README, re.S).group(1).strip().splitlines()
    assert len(first_block) == 2
    assert first_block[0].endswith("sepl-tree run --strategy threshold")
    assert "pytest" in first_block[1] and "'.[test," in first_block[1]


def test_ci_runs_the_readme_test_command():
    script = (ROOT / ".ci" / "run").read_text()
    awk = re.search(r"test_cmd=\$\(awk '(.*?)' README.md\)", script).group(1)
    got = subprocess.run(["awk", awk, "README.md"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    first_block = re.search(r"```sh\n(.*?)```", README, re.S).group(1).strip().splitlines()
    assert got.strip() == first_block[1]


def test_tutorial_strategy_runs_through_the_cli(tmp_path):
    plugin = tmp_path / "biggest_only.py"
    plugin.write_text(_tutorial_block("python"))
    assert len(_tutorial_block("python").strip().splitlines()) <= 16
    command = _tutorial_block("sh").split()
    assert command[:5] == ["sepl-tree", "run", "--plugin", "biggest_only.py", "--strategy"]

    pseudo = np.zeros((6, 8), np.uint8)
    pseudo[1:3, 1:3] = 1
    masks = np.zeros((3, 6, 8), bool)
    masks[0, 1:4, 1:4] = True  # o_s = 4/9 for class 1: below 0.6
    masks[1, 1:3, 1:4] = True  # o_s = 4/6: the largest one above 0.6
    masks[2, 1:3, 1:2] = True  # o_s = 1: smaller
    p_dir, m_dir, _ = write_dataset(tmp_path, {"a": (pseudo, masks, None)})
    args = [*command[1:], "--pseudo-labels", str(p_dir), "--masks", str(m_dir), "--out", str(tmp_path / "out")]
    args[2] = str(plugin)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    expected = pseudo.copy()
    expected[masks[1]] = 1
    assert np.array_equal(read_png(tmp_path / "out" / "a.png"), expected)

    listed = runner.invoke(app, ["plugins", "--plugin", str(plugin)], env={"COLUMNS": "200"})
    assert "biggest-only" in listed.output and "min_o_s=0.5" in listed.output


def test_the_reader_tutorial_reads_its_format_through_convert(tmp_path):
    section = (ROOT / "docs" / "readers.md").read_text().split("## Write your own reader", 1)[1]
    plugin = tmp_path / "npz_cam.py"
    plugin.write_text(re.search(r"```python\n(.*?)```", section, re.S).group(1))
    command = re.search(r"```sh\n(.*?)```", section, re.S).group(1).split()
    assert command[:6] == ["sepl-tree", "convert", "--plugin", "npz_cam.py", "--reader", "npz-cam"]
    cams = tmp_path / "cams"
    cams.mkdir()
    cam = np.zeros((2, 3, 4), np.float32)
    cam[0, :, :2] = 0.9  # class 3 on the left
    cam[1, :, 3] = 0.6  # class 15 on the right column
    cam[1, :, 2] = 0.18  # above the default bg 0.15, below the tutorial's 0.2: background
    np.savez(cams / "a.npz", cam=cam, keys=np.array([3, 15]))
    paths = {"npz_cam.py": str(plugin), "cams/": str(cams), "labels/": str(tmp_path / "labels")}
    result = runner.invoke(app, [paths.get(a, a) for a in command[1:]])
    assert result.exit_code == 0, result.output
    assert read_png(tmp_path / "labels" / "a.png").tolist() == [[3, 3, 0, 15]] * 3
    (cams / "b.npz").write_bytes(b"not a zip")
    bad = runner.invoke(app, ["convert", "--plugin", str(plugin), "--reader", "npz-cam", "-i", str(cams), "-o",
                              str(tmp_path / "labels2")])
    assert bad.exit_code == 1 and f"{cams / 'b.npz'}: cannot read as a CAM file" in bad.output
