"""``benchmarks/ray_tasks.py`` runs and prints one row per round, its ratios against the process pool."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import needs_ray

BENCH = Path(__file__).parents[1] / "benchmarks" / "ray_tasks.py"


@needs_ray
def test_the_benchmark_prints_a_row_per_round(tmp_path):
    result = subprocess.run([sys.executable, str(BENCH), "--images", "40", "--rounds", "2", "--root", str(tmp_path)],
                            capture_output=True, text=True, timeout=300, cwd=BENCH.parents[1])
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert [row.split("|")[1].strip() for row in rows] == ["1", "2"]
    for row in rows:
        cells = [re.fullmatch(r"(\d+) \((\d+\.\d\d)\)", cell.strip()) for cell in row.split("|")[2:-1]]
        assert len(cells) == 3 and all(cells), row
        assert cells[0].group(2) == "1.00" and all(int(cell.group(1)) > 0 for cell in cells), row
    assert len(list((tmp_path / "pseudo").glob("*.png"))) == 40  # the demo set was kept in --root
