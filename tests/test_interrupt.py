"""A run killed mid-way leaves only complete outputs, and a rerun finishes the job."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from sepl_tree.files import read_label_png
from tests.helpers import write_dataset

pytestmark = pytest.mark.slow  # process pools and killed subprocesses


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_run_resumes_without_half_written_files(tmp_path, sig):
    rng = np.random.default_rng(0)
    items = {}
    for i in range(150):
        pseudo = (rng.random((60, 80)) < 0.3).astype(np.uint8) * 3
        items[f"im{i:03d}"] = (pseudo, rng.random((20, 60, 80)) < 0.2, None)
    p_dir, m_dir, _ = write_dataset(tmp_path, items)
    out = tmp_path / "out"
    # 20 ms an image (about 3 s in all), so that the signal lands mid-run however slowly this
    # process gets to send it on a loaded machine.
    slow = tmp_path / "slow.py"
    slow.write_text("import time\nfrom sepl_tree import Strategy, hookimpl, paint_kept\n\n"
                    "def slow(sample):\n    time.sleep(0.02)\n    return paint_kept(sample, sample.sepl_keep())\n\n"
                    "@hookimpl\ndef register_strategies(register):\n    register(Strategy('slow', slow))\n")
    args = [sys.executable, "-m", "sepl_tree", "run", "--pseudo-labels", str(p_dir), "--masks", str(m_dir),
            "--out", str(out), "--plugin", str(slow), "--strategy", "slow"]
    env = {**os.environ, "SEPL_TREE_NO_PROGRESS": "1"}
    # As from a shell: SIGINT at its default. A test process may have it ignored (something earlier in
    # the same pytest worker did), and an ignored SIGINT is inherited through exec.
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(out.glob("*.png"))) < 5:
        time.sleep(0.02)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    done = sorted(out.glob("im*.png"))
    assert 5 <= len(done) < 150, "the run should have been interrupted part-way"
    for path in done:  # every visible output is a complete, decodable label map
        assert read_label_png(path, 21).shape == (60, 80)
    if sig == signal.SIGINT:
        assert proc.returncode != 0 and not list(out.glob(".*.tmp"))
    rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert len(list(out.glob("im*.png"))) == 150 and not list(out.glob(".*.tmp"))
    assert '"skipped_existing": %d' % len(done) in (out / "run.json").read_text()
