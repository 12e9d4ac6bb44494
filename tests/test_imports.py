"""Start-up cost: the CLI and the plain strategies load no heavy libraries they do not use."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "networkx", "matplotlib", "segment_anything", "sam2", "ray")


@pytest.mark.parametrize("statement", [
    "import sepl_tree.cli",
    "from sepl_tree.plugins import load_host; load_host(autoload=False)",
    "import sepl_tree; sepl_tree.paint_kept, sepl_tree.Sample",
])
def test_no_heavy_import(statement):
    code = f"import sys; {statement}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""
