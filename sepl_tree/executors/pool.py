"""The ``process`` executor: a local process pool fed ids in adaptive batches.

Each worker runs the spec's ``setup()`` once (in its initializer) and then whole batches of ids,
sized by :func:`sepl_tree.executors.task_size`; results come back in completion order. See
:mod:`sepl_tree.executors` for the job protocol.

Workers end with the process that made the pool, even when it is killed with no chance to shut
the pool down (``kill -9``): each worker's initializer starts a daemon thread that waits for
that process to exit and then ends the worker at once (:func:`os._exit`, mid-image if need be;
half-written outputs are temporaries a rerun removes). The pool's fork server and
multiprocessing's resource tracker need nothing more: each exits when the last process holding
its pipe does, and every worker holds it.

Ctrl-C (SIGINT) is the main process's alone, and it ends the run within a fraction of a second:

* Workers ignore SIGINT, from their first instruction: the fork server is started with SIGINT
  blocked (a signal mask is inherited through fork and exec, so the fork server, busy importing
  the preloaded modules, and every worker forked from it never see it), and each worker's
  initializer ignores it and unblocks it. A terminal's Ctrl-C, sent to the whole process group,
  so reaches no worker half-way through its set-up or its image; the resource tracker ignores it
  of its own accord.
* In the main process a SIGINT that arrives while this module is inside the pool's machinery
  (creating the pool, submitting, waiting, shutting down) is held back and raised as
  :class:`KeyboardInterrupt` once it is out (the wait polls every :data:`INTERRUPT_POLL_SECONDS`);
  while a result is being handed to the caller it is raised at once, as usual. A
  ``KeyboardInterrupt`` raised inside ``concurrent.futures`` used to leave it half-way: a pool
  shutdown cut short (a second SIGINT), or futures cancelled under the pool's manager thread,
  which then died of ``InvalidStateError: CANCELLED`` when a worker ended, so that some worker
  never got the message to stop, and multiprocessing's exit handler waited for that worker
  forever while it waited for work (and its watchdog for the main process).
* On an interrupt, or when the caller stops reading results (an error, a Ctrl-C in its own code),
  the main process kills its workers (SIGKILL: at once, whatever they are doing; nothing the
  worker might do could delay it), waits until they are gone, and then removes the temporaries
  they may have left half-written in the spec's ``output_folders``
  (:func:`sepl_tree.files.remove_stale_temporaries`, as a rerun would: only one run writes to a
  folder). Every output is written to a temporary and renamed, so what remains is complete, and a
  rerun resumes. A spec without ``output_folders`` may leave temporaries, as ``kill -9`` does.
* An error raised by a job still lets the tasks under way finish (their outputs are written)
  before it is raised; a Ctrl-C meanwhile kills them as above. (Tasks already queued to the
  workers run too; their outputs are written, and a rerun reuses them, but they are not reported.)
* A worker that dies (the OOM killer, a crash in native code) ends the run with one
  :class:`~sepl_tree.errors.SeplError` naming the images the workers held, not the pool's
  ``BrokenProcessPool``; the others are killed as above and the finished outputs kept.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import multiprocessing as mp
import os
import select
import signal
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing import forkserver, resource_tracker
from pathlib import Path
from typing import Any, TypeVar

from sepl_tree.errors import SeplError
from sepl_tree.executors import ids_per_task, map_ids, most_tasks, run_task, sendable_error, task_size
from sepl_tree.executors.interrupts import HeldInterrupts
from sepl_tree.executors.record import ExecutionRecord, local_cluster
from sepl_tree.files import remove_stale_temporaries

__all__ = ["INTERRUPT_POLL_SECONDS", "POLL_SECONDS", "QUEUED_PER_WORKER", "STOP_SECONDS", "exit_with_process",
           "process_executor"]

R = TypeVar("R")

_worker_fn: Callable[[str], Any] | None = None
_setup_error: Exception | None = None


#: How often the watchdog looks for the pool's owner where it cannot wait on it (no pidfd).
POLL_SECONDS = 0.2
#: How often the main process, waiting for results, looks for a Ctrl-C it held back.
INTERRUPT_POLL_SECONDS = 0.1
#: How long the main process waits for a killed worker to be gone before it gives up on it.
STOP_SECONDS = 10.0


def _gone(pid: int) -> bool:
    """Whether process ``pid`` has exited (a zombie waiting for its parent counts as exited)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, under another user
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X")
    except (OSError, IndexError):
        return False  # no /proc: os.kill's answer is all there is


def _watch(pid: int, pidfd: int | None) -> None:
    if pidfd is not None:
        waiter = select.poll()  # (not select.select: no limit on the descriptor's number)
        waiter.register(pidfd, select.POLLIN)
        while not waiter.poll():  # a pidfd becomes readable when its process exits
            pass
    else:
        while not _gone(pid):
            time.sleep(POLL_SECONDS)
    os._exit(1)


def exit_with_process(pid: int) -> None:
    """End this process as soon as process ``pid`` exits (a daemon thread watches it).

    On Linux the thread blocks on a pidfd (no polling, no CPU; immune to pid reuse); elsewhere it
    polls every :data:`POLL_SECONDS`. If ``pid`` is already gone, this process ends now.
    """
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(1)
    except (AttributeError, OSError):  # not Linux, or a kernel older than 5.3
        pidfd = None
    threading.Thread(target=_watch, args=(pid, pidfd), name=f"exit-with-{pid}", daemon=True).start()


def _init_worker(spec: Any, owner_pid: int) -> None:
    global _worker_fn, _setup_error
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's (see the module's doc)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # (a SIGINT pending was dropped)
    exit_with_process(owner_pid)  # before setup(), which may take long (a SAM model)
    try:
        _worker_fn = spec.setup()
    except Exception as exc:  # an initializer that raises breaks the pool with no message:
        _setup_error = sendable_error(exc)  # keep the error and raise it with the worker's first image instead


def _call_worker(image_ids: tuple[str, ...]) -> tuple[list[Any], float, Exception | None]:
    """Run a task of ids in this worker (see :func:`sepl_tree.executors.run_task`)."""
    if _setup_error is not None:
        raise _setup_error
    if _worker_fn is None:
        raise RuntimeError("process-pool worker used before its set-up ran")
    return run_task(_worker_fn, image_ids)


def _result(future: cf.Future, chunk: tuple[str, ...], others: dict[cf.Future, tuple[str, ...]]) -> Any:
    """A finished task's result; a worker that died under it (killed, out of memory, a crash in
    native code) is :func:`_worker_died`, not the pool's ``BrokenProcessPool`` traceback."""
    try:
        return future.result()
    except cf.process.BrokenProcessPool:
        raise _worker_died([*chunk, *(i for c in others.values() for i in c)]) from None


def _worker_died(ids: list[str]) -> SeplError:
    """The one line for a pool whose worker died while the workers held ``ids``."""
    held = f" while the workers held {len(ids)} image(s) ({ids[0]!r}, ...)" if ids else ""
    return SeplError(f"a worker process ended abruptly (killed, out of memory, or a crash in native code){held}; "
                     "the outputs finished before are kept: rerun to resume")


def _start_fork_server(preload: list[str]) -> None:
    """Start this process's fork server (if it is not running) with SIGINT blocked, for it and its workers."""
    forkserver.set_forkserver_preload(preload)
    resource_tracker.ensure_running()  # first: starting it unblocks SIGINT in this thread
    if not hasattr(signal, "pthread_sigmask"):
        forkserver.ensure_running()
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        forkserver.ensure_running()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _stop(pool: cf.ProcessPoolExecutor, workers: list[Any], interrupts: HeldInterrupts, kill: bool,
          folders: tuple[Path, ...]) -> None:
    """Shut ``pool`` down: its queued tasks cancelled, its workers let finish their tasks or ``kill``-ed.

    Killed workers are waited for and their half-written temporaries in ``folders`` removed. The
    futures are cancelled by the pool's own thread (``cancel_futures``), never here: a future
    cancelled under it makes it fail when a worker dies (CPython 3.11).
    """
    # The pool's manager thread (CPython's attribute, gone after shutdown) is joined before this
    # returns: left running, it may close its wake-up pipe while the interpreter's exit handler
    # (concurrent.futures' _python_exit) writes to it, which prints a traceback after a Ctrl-C.
    manager = getattr(pool, "_executor_manager_thread", None)
    pool.shutdown(wait=False, cancel_futures=True)
    while not kill and (alive := [p for p in workers if p.is_alive()]):  # the tasks under way finish
        alive[0].join(INTERRUPT_POLL_SECONDS)
        kill = interrupts.pending
    deadline = time.monotonic() + STOP_SECONDS
    if kill:
        for p in workers:
            p.kill()
        for p in workers:
            p.join(max(0.0, deadline - time.monotonic()))
        if not any(p.is_alive() for p in workers):  # else a worker still writing: leave its temporaries be
            for folder in folders:
                remove_stale_temporaries(Path(folder))
    if manager is not None:
        manager.join(max(0.0, deadline - time.monotonic()))


#: Tasks queued per worker in the process pool: enough that a worker never waits for the next
#: task, few enough that a run over 100k ids does not create 100k futures (and pickled
#: arguments) up front.
QUEUED_PER_WORKER = 4


def process_executor(spec: Any, ids: list[str], workers: int, record: ExecutionRecord | None = None,
                     **_: Any) -> Iterator[Any]:
    """Run ``spec`` on ``ids`` in ``workers`` processes (in this process for one worker, or for
    ids that make one task: ``ids_per_task`` of them or fewer).

    Ctrl-C ends it at once, its workers killed (see the module's doc for how, and what it leaves).
    """
    fewest = ids_per_task(spec)
    tasks = most_tasks(len(ids), fewest)  # later tasks may grow (task_size)
    if record is not None:
        record.begin(workers, local_cluster())
        record.running(1 if workers <= 1 or tasks <= 1 else min(workers, tasks))
    if workers <= 1 or tasks <= 1:
        yield from map_ids(spec.setup(), ids)
        return
    workers = min(workers, tasks)  # (each worker sets the job up: a SAM model; none that gets no task)
    todo = iter(ids)
    batch, done_images, done_seconds = fewest, 0, 0.0

    chunks: dict[cf.Future, tuple[str, ...]] = {}  # each task's ids, to name them if its worker dies

    def submit(pool: cf.ProcessPoolExecutor, tasks: int) -> set[cf.Future]:
        futures = set()
        for _ in range(tasks):
            if chunk := tuple(itertools.islice(todo, batch)):
                future = pool.submit(_call_worker, chunk)
                chunks[future] = chunk
                futures.add(future)
        return futures

    with HeldInterrupts() as interrupts:
        # Import the spec's module in the fork server once, so each worker starts with it loaded
        # (no effect if this process's fork server is already running).
        _start_fork_server(["__main__", type(spec).__module__])
        others = set(mp.active_children())  # this process's children that are not the pool's
        pool = cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("forkserver"),
                                      initializer=_init_worker, initargs=(spec, os.getpid()))
        kill = True
        try:
            pending = submit(pool, workers * QUEUED_PER_WORKER)
            while pending:
                interrupts.check()
                done, pending = cf.wait(pending, INTERRUPT_POLL_SECONDS, return_when=cf.FIRST_COMPLETED)
                finished = [_result(future, chunks.pop(future), chunks) for future in done]
                errors = [error for _, _, error in finished if error is not None]
                for results, seconds, _ in finished:
                    done_images, done_seconds = done_images + len(results), done_seconds + seconds
                batch = task_size(fewest, done_images, done_seconds)
                if not errors:  # refill before handing results out, so the workers stay busy meanwhile
                    try:
                        pending |= submit(pool, len(done))
                    except cf.process.BrokenProcessPool:  # a worker died since the wait
                        raise _worker_died([i for c in chunks.values() for i in c]) from None
                for results, _, _ in finished:
                    interrupts.held = False  # the caller's code runs: Ctrl-C as usual
                    yield from results
                    interrupts.held = True
                if errors:
                    kill = False  # the tasks under way finish (see the module's doc)
                    raise errors[0]
            interrupts.check()
            kill = False
        finally:
            interrupts.held = True
            _stop(pool, [p for p in mp.active_children() if p not in others], interrupts, kill,
                  tuple(getattr(spec, "output_folders", ())))
        interrupts.check()
