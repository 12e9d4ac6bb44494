"""A run killed mid-way leaves only complete outputs, and a rerun finishes the job; Ctrl-C ends it at once."""

import os
import signal
import subprocess
import sys
import time

import pytest

from sepl_tree.files import read_label_png
from tests.helpers import noise_scenes, write_dataset
from tests.test_workers_end import alive, descendants

pytestmark = pytest.mark.slow  # process pools and killed subprocesses


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_run_resumes_without_half_written_files(tmp_path, sig):
    p_dir, m_dir, _ = write_dataset(tmp_path, noise_scenes(150, (60, 80), masks=20))
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
        assert proc.returncode == 130 and not list(out.glob(".*.tmp"))
        assert proc.stderr.read().decode().strip() == ("interrupted; the outputs written so far are whole, and the "
                                                      "same command resumes from them")
    rerun = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert len(list(out.glob("im*.png"))) == 150 and not list(out.glob(".*.tmp"))
    assert '"skipped_existing": %d' % len(done) in (out / "run.json").read_text()


def _start(args, env):
    """Start a command as from a shell (SIGINT at its default), as the leader of a process group of its own."""
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


#: (when, whom): while the pool starts (seconds after the first child process: the resource
#: tracker, then the fork server importing, then the workers setting up) or once N outputs are
#: written; SIGINT to the main process, to the whole process group (a terminal's Ctrl-C), or both
#: one after the other (coreutils' ``timeout``: a second SIGINT while the first is being handled).
MOMENTS = [(0.0, "group"), (0.05, "main"), (0.1, "group"), (0.2, "both"), (0.3, "group"), (0.45, "main"),
           (0.6, "group"), (0.8, "both"), ("3 outputs", "group"), ("3 outputs", "main"), ("10 outputs", "both"),
           ("20 outputs", "group")]


def test_ctrl_c_ends_a_pool_run_at_once_at_any_moment(tmp_path):
    """Before the fix: tracebacks from workers and from the pool's thread (``Exception in initializer``,
    ``InvalidStateError: CANCELLED``), exits taking seconds, and now and then a run that never ended."""
    p_dir, m_dir, _ = write_dataset(tmp_path, noise_scenes(100))
    slow = tmp_path / "slow.py"
    slow.write_text("import time\nfrom sepl_tree import Strategy, hookimpl, paint_kept\n\n"
                    "def slow(sample):\n    time.sleep(0.03)\n    return paint_kept(sample, sample.sepl_keep())\n\n"
                    "@hookimpl\ndef register_strategies(register):\n    register(Strategy('slow', slow))\n")
    env = {**os.environ, "SEPL_TREE_NO_PROGRESS": "1"}
    problems = []
    for n, (when, whom) in enumerate(MOMENTS):
        out = tmp_path / f"out{n}"
        proc = _start([sys.executable, "-m", "sepl_tree", "run", "--pseudo-labels", str(p_dir), "--masks", str(m_dir),
                       "--out", str(out), "--plugin", str(slow), "--strategy", "slow", "-j", "2"], env)
        children: dict[int, int] = {}
        try:
            deadline, first_child = time.monotonic() + 60, None
            while time.monotonic() < deadline and proc.poll() is None:
                children.update(descendants(proc.pid))
                if isinstance(when, float):
                    first_child = first_child or (time.monotonic() if children else None)
                    if first_child is not None and time.monotonic() - first_child >= when:
                        break
                elif len(list(out.glob("im*.png"))) >= int(when.split()[0]):
                    break
                time.sleep(0.01)
            assert proc.poll() is None, f"{when}: the run ended before it was interrupted"
            if whom in ("main", "both"):
                proc.send_signal(signal.SIGINT)
            if whom in ("group", "both"):
                os.killpg(proc.pid, signal.SIGINT)
            start = time.monotonic()
            while proc.poll() is None and time.monotonic() - start < 10:
                children.update(descendants(proc.pid))
                time.sleep(0.01)
            took = time.monotonic() - start
            try:
                stderr = proc.communicate(timeout=1)[1]
            except subprocess.TimeoutExpired:
                stderr = ""
            while alive(children) and time.monotonic() - start < took + 3:  # the fork server follows
                time.sleep(0.02)
            lines = stderr.strip().splitlines()
            moment = f"SIGINT to {whom} at {when}"
            if proc.returncode is None or took > 5:
                problems.append(f"{moment}: still running {took:.1f} s later")
            elif proc.returncode == 0:
                problems.append(f"{moment}: exit status 0")
            if "Traceback" in stderr or len(lines) > 2:
                problems.append(f"{moment}: {len(lines)} lines on stderr: " + " | ".join(lines[:6]))
            if alive(children):
                problems.append(f"{moment}: {len(alive(children))} child processes left")
            if list(out.glob(".*.tmp")):
                problems.append(f"{moment}: temporaries left: {[p.name for p in out.glob('.*.tmp')]}")
        finally:  # leave nothing behind, whatever happened
            for pid in alive(children) + ([proc.pid] if proc.poll() is None else []):
                os.kill(pid, signal.SIGKILL)
            proc.wait()
    assert not problems, "\n".join(problems)


def test_held_interrupts_left_from_another_thread_let_ctrl_c_through():
    """(A pool's generator closed by the garbage collector in another thread cannot put Python's
    handler back; the handler it leaves must then raise, not swallow every later Ctrl-C.)"""
    import threading

    from sepl_tree.executors.interrupts import HeldInterrupts

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # (a test runner may ignore SIGINT)
    held = HeldInterrupts()
    held.__enter__()
    try:
        assert signal.getsignal(signal.SIGINT) == held._handle
        closer = threading.Thread(target=held.__exit__)
        closer.start()
        closer.join()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    finally:
        signal.signal(signal.SIGINT, previous)
