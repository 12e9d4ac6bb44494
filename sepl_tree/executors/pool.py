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
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import multiprocessing as mp
import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from sepl_tree.executors import ids_per_task, map_ids, run_task, task_size
from sepl_tree.executors.record import ExecutionRecord, local_cluster

__all__ = ["POLL_SECONDS", "QUEUED_PER_WORKER", "exit_with_process", "process_executor"]

R = TypeVar("R")

_worker_fn: Callable[[str], Any] | None = None
_setup_error: Exception | None = None


#: How often the watchdog looks for the pool's owner where it cannot wait on it (no pidfd).
POLL_SECONDS = 0.2


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
    exit_with_process(owner_pid)  # before setup(), which may take long (a SAM model)
    try:
        _worker_fn = spec.setup()
    except Exception as exc:  # an initializer that raises breaks the pool with no message:
        _setup_error = exc  # keep the error and raise it with the worker's first image instead


def _call_worker(image_ids: tuple[str, ...]) -> tuple[list[Any], float, Exception | None]:
    """Run a task of ids in this worker (see :func:`sepl_tree.executors.run_task`)."""
    if _setup_error is not None:
        raise _setup_error
    if _worker_fn is None:
        raise RuntimeError("process-pool worker used before its set-up ran")
    return run_task(_worker_fn, image_ids)


#: Tasks queued per worker in the process pool: enough that a worker never waits for the next
#: task, few enough that a run over 100k ids does not create 100k futures (and pickled
#: arguments) up front.
QUEUED_PER_WORKER = 4


def process_executor(spec: Any, ids: list[str], workers: int, record: ExecutionRecord | None = None,
                     **_: Any) -> Iterator[Any]:
    """Run ``spec`` on ``ids`` in ``workers`` processes (serially for one worker or one id)."""
    if record is not None:
        record.begin(workers, local_cluster())
        record.running(1 if workers <= 1 or len(ids) <= 1 else min(workers, len(ids)))
    if workers <= 1 or len(ids) <= 1:
        yield from map_ids(spec.setup(), ids)
        return
    workers = min(workers, len(ids))
    ctx = mp.get_context("forkserver")
    # Import the spec's module in the fork server once, so each worker starts with it loaded
    # (no effect if this process's fork server is already running).
    ctx.set_forkserver_preload(["__main__", type(spec).__module__])
    todo = iter(ids)
    fewest = ids_per_task(spec)
    batch, done_images, done_seconds = fewest, 0, 0.0

    def submit(pool: cf.ProcessPoolExecutor, tasks: int) -> set[cf.Future]:
        return {pool.submit(_call_worker, chunk) for _ in range(tasks)
                if (chunk := tuple(itertools.islice(todo, batch)))}

    with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                                initargs=(spec, os.getpid())) as pool:
        pending = submit(pool, workers * QUEUED_PER_WORKER)
        try:
            while pending:
                done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                finished = [future.result() for future in done]
                errors = [error for _, _, error in finished if error is not None]
                for results, seconds, _ in finished:
                    done_images, done_seconds = done_images + len(results), done_seconds + seconds
                batch = task_size(fewest, done_images, done_seconds)
                if not errors:  # refill before handing results out, so the workers stay busy meanwhile
                    pending |= submit(pool, len(done))
                for results, _, _ in finished:
                    yield from results
                if errors:
                    raise errors[0]
        except BaseException:
            for future in pending:
                future.cancel()
            raise


