"""Ctrl-C ends a ``--executor ray`` run as it ends a process-pool run (``tests/test_interrupt.py``):
exit status 130, no traceback, none of the processes the run started left, no temporaries, and
``run.json`` saying ``stopped``; a rerun finishes the job with a serial run's outputs.

The CLI starts its own local Ray, in a subprocess started as from a shell. Its strategy's writes
stay temporaries for a while in the Ray workers (``os.replace`` made slow there), so that a
worker killed mid-run is almost always killed mid-write.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sepl_tree.cli import app
from tests.helpers import needs_ray, noise_scenes, write_dataset
from tests.test_workers_end import alive, descendants

SLOW_WRITES = """
import os
import time

from sepl_tree import Strategy, hookimpl, paint_kept


def slow_writes(sample):
    \"\"\"paint_kept; every file this process writes stays a temporary for SEPL_TEST_WRITE_SECONDS.\"\"\"
    seconds = float(os.environ.get("SEPL_TEST_WRITE_SECONDS", "0"))
    if seconds and not hasattr(os.replace, "slow"):
        replace = os.replace

        def slow_replace(*args, **kwargs):
            time.sleep(seconds)
            return replace(*args, **kwargs)

        slow_replace.slow = True
        os.replace = slow_replace
    return paint_kept(sample, sample.sepl_keep())


@hookimpl
def register_strategies(register):
    register(Strategy("slow-writes", slow_writes))
"""


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def _raylet_started(children: dict[int, int]) -> bool:
    return any(_name(pid) == "raylet" for pid in children)


#: (when, whom): once the raylet runs (``ray.init`` is then waiting for it to register: cut short
#: there, Ray lost track of the raylet's agents, which stayed a minute), or once 4 outputs are written.
MOMENTS = [("raylet started", "group"), ("4 outputs", "main")]


@needs_ray
@pytest.mark.parametrize("when, whom", MOMENTS)
def test_ctrl_c_ends_a_ray_run_and_leaves_nothing_behind(tmp_path, when, whom):
    items = noise_scenes(40, digits=2)
    p_dir, m_dir, _ = write_dataset(tmp_path, items)
    plugin = tmp_path / "slow_writes.py"
    plugin.write_text(SLOW_WRITES)
    out = tmp_path / "out"

    def args(folder: Path) -> list[str]:
        return ["run", "--pseudo-labels", str(p_dir), "--masks", str(m_dir), "--out", str(folder), "--plugin",
                str(plugin), "--strategy", "slow-writes"]

    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    env.update(SEPL_TREE_NO_PROGRESS="1", SEPL_TEST_WRITE_SECONDS="0.2", RAY_USAGE_STATS_ENABLED="0")
    # As from a shell: SIGINT at its default, the command leading a process group of its own.
    proc = subprocess.Popen([sys.executable, "-m", "sepl_tree", *args(out), "--executor", "ray", "--workers", "2"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    children: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            children.update(descendants(proc.pid))
            if _raylet_started(children) if when == "raylet started" else len(list(out.glob("im*.png"))) >= 4:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"{when}: the run ended before it was interrupted: {proc.communicate()[1]}"
        if whom == "group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        while proc.poll() is None and time.monotonic() - start < 60:
            children.update(descendants(proc.pid))
            time.sleep(0.05)
        took = time.monotonic() - start
        stderr = proc.communicate(timeout=5)[1]
        while alive(children) and time.monotonic() - start < took + 5:  # what ray.shutdown killed, going
            time.sleep(0.1)
        left = [_name(pid) for pid in alive(children)]
        assert proc.returncode == 130, f"exit status {proc.returncode} {took:.1f} s after SIGINT: {stderr}"
        assert "Traceback" not in stderr and len(stderr.splitlines()) <= 2, stderr
        assert not left, f"{len(left)} processes the run started are still running: {left}"
        assert not list(out.glob(".*.tmp")), [p.name for p in out.glob(".*.tmp")]
        assert json.loads((out / "run.json").read_text())["status"] == "stopped"
    finally:  # leave nothing behind, whatever happened
        for pid in alive(children) + ([proc.pid] if proc.poll() is None else []):
            os.kill(pid, signal.SIGKILL)
        proc.wait()
    done = len(list(out.glob("im*.png")))
    assert done < len(items), "the run should have been interrupted part-way"
    # A rerun resumes, here serially (the executor is not a setting), and writes what a serial run writes.
    rerun = CliRunner().invoke(app, [*args(out), "--executor", "serial"])
    assert rerun.exit_code == 0, rerun.output
    assert json.loads((out / "run.json").read_text())["counts"]["skipped_existing"] == done
    serial = tmp_path / "serial"
    made = CliRunner().invoke(app, [*args(serial), "--executor", "serial"])
    assert made.exit_code == 0, made.output
    written = {p.name: p.read_bytes() for p in out.glob("im*.png")}
    assert written == {p.name: p.read_bytes() for p in serial.glob("im*.png")}
