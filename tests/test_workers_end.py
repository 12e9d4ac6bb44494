"""Process-pool workers (and the pool's fork server) end with the process that made the pool.

A main process killed with ``kill -9`` cannot shut its pool down; before the watchdog its workers
waited for work forever, and the fork server and resource tracker (which live as long as a
worker holds their pipe) with them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sepl_tree.executors import pool
from tests.helpers import noise_scenes, write_dataset

REPO = Path(__file__).resolve().parents[1]


# --- /proc helpers -----------------------------------------------------------------------------

def _stat(pid: int) -> tuple[int, str, int] | None:
    """``(ppid, state, start time)`` of a process, or ``None`` if there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0].decode(), int(fields[19])


def descendants(pid: int) -> dict[int, int]:
    """Every live descendant of ``pid``: pid -> start time (to tell a reused pid apart)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            children.setdefault(st[0], []).append(int(entry))
    found, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            st = _stat(child)
            if st is not None and st[1] not in "ZX":
                found[child] = st[2]
                todo.append(child)
    return found


def alive(recorded: dict[int, int]) -> list[int]:
    """The recorded processes still running (same pid and start time, not a zombie)."""
    return [pid for pid, start in recorded.items()
            if (st := _stat(pid)) is not None and st[2] == start and st[1] not in "ZX"]


def kill_and_check(proc: subprocess.Popen, recorded: dict[int, int], within: float = 5.0) -> float:
    """``kill -9`` the main process; return how long its recorded descendants took to end."""
    try:
        start = time.monotonic()
        proc.kill()
        proc.wait(timeout=10)
        while alive(recorded) and time.monotonic() - start < within:
            time.sleep(0.05)
        left = alive(recorded)
        assert not left, f"still running {within} s after the main process was killed: " + "; ".join(
            Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:120]
            for pid in left)
        return time.monotonic() - start
    finally:  # leave nothing behind, whatever happened
        for pid in alive(recorded):
            os.kill(pid, signal.SIGKILL)


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the run to get going"
        time.sleep(0.05)


# --- the watchdog on its own --------------------------------------------------------------------

def test_gone_tells_running_from_exited_and_zombie():
    assert not pool._gone(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_for(lambda: (_stat(child.pid) or (0, "Z", 0))[1] == "Z", timeout=30)  # exited, not yet reaped
    assert pool._gone(child.pid)
    child.wait()
    assert pool._gone(child.pid)


@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "polling"])
def test_exit_with_process_ends_this_process_when_the_other_exits(pidfd):
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    code = textwrap.dedent(f"""
        import os, sys, time
        if not {pidfd}:
            del os.pidfd_open  # as on a system without pidfds
        from sepl_tree.executors.pool import exit_with_process
        exit_with_process({owner.pid})
        print("watching", flush=True)
        time.sleep(60)
        sys.exit(3)
    """)
    watcher = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert watcher.stdout.readline() == "watching\n"
        time.sleep(0.3)
        assert watcher.poll() is None  # the owner is alive: nothing happens
        owner.kill()  # not reaped: a zombie counts as gone
        start = time.monotonic()
        assert watcher.wait(timeout=10) == 1
        assert time.monotonic() - start < 2.0
    finally:
        owner.kill()
        owner.wait()
        watcher.kill()
        watcher.wait()


def test_exit_with_a_process_already_gone_exits_at_once():
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    code = f"from sepl_tree.executors.pool import exit_with_process; exit_with_process({dead.pid}); print('alive')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert (result.returncode, result.stdout) == (1, "")


# --- a real pool, its main process killed -------------------------------------------------------

SLOW_JOB = """
import sys, time
from dataclasses import dataclass
from pathlib import Path
from sepl_tree.executors import execute

@dataclass(frozen=True)
class Stuck:
    marks: str

    def setup(self):
        return self.work

    def work(self, image_id):
        Path(self.marks, image_id).touch()  # started...
        time.sleep(120)  # ... and busy far longer than the test waits
        return image_id

if __name__ == "__main__":
    print(list(execute(Stuck(sys.argv[1]), [str(i) for i in range(8)], workers=2)))
"""


@pytest.mark.slow  # a process pool in a subprocess that it kills
def test_workers_busy_on_an_image_end_when_the_main_process_is_killed(tmp_path):
    script = tmp_path / "stuck.py"
    script.write_text(SLOW_JOB)
    marks = tmp_path / "marks"
    marks.mkdir()
    proc = subprocess.Popen([sys.executable, str(script), str(marks)], cwd=REPO, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    recorded: dict[int, int] = {}
    try:
        wait_for(lambda: len(list(marks.iterdir())) == 2)  # both workers are inside an image
        recorded = descendants(proc.pid)
        # two workers, the fork server (their parent) and multiprocessing's resource tracker
        assert len(recorded) >= 4, recorded
        assert kill_and_check(proc, recorded) < 5.0
    finally:
        proc.kill()
        proc.wait()


PLUGIN = '''
import time
from sepl_tree import Strategy, hookimpl

def sleepy(sample, seconds: float = 0.1):
    """The input pseudo-label, slowly."""
    time.sleep(seconds)
    return sample.pseudo.copy()

@hookimpl
def register_strategies(register):
    register(Strategy("sleepy", sleepy))
'''


@pytest.mark.slow  # sepl-tree run with two workers, killed
def test_killing_sepl_tree_run_ends_its_workers_and_fork_server(tmp_path):
    p_dir, m_dir, _ = write_dataset(tmp_path, noise_scenes(200, masks=5, label=5, density=0.3))
    plugin = tmp_path / "sleepy.py"
    plugin.write_text(PLUGIN)
    out = tmp_path / "out"
    args = [sys.executable, "-m", "sepl_tree", "run", "--pseudo-labels", str(p_dir), "--masks", str(m_dir),
            "--out", str(out), "--workers", "2", "--plugin", str(plugin), "--strategy", "sleepy"]
    proc = subprocess.Popen(args, cwd=tmp_path, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "SEPL_TREE_NO_PROGRESS": "1"})
    recorded: dict[int, int] = {}
    try:
        wait_for(lambda: len(list(out.glob("im*.png"))) >= 4)  # mid-run: both workers busy
        recorded = descendants(proc.pid)
        assert len(recorded) >= 4, recorded  # two workers, the fork server, the resource tracker
        kill_and_check(proc, recorded)
        assert len(list(out.glob("im*.png"))) < 200  # it was killed part-way
    finally:
        proc.kill()
        proc.wait()
