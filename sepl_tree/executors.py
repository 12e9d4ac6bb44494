"""Map a per-image job over image ids: serially, in a process pool, or on a Ray cluster.

A job is described by a picklable *spec* with a ``setup()`` method that returns the per-image
callable; ``setup`` runs once per worker (so a worker loads its plugins or its SAM model once).
Results are yielded as they complete, in any order; callers must not depend on the order.
"""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import multiprocessing as mp
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

from sepl_tree.errors import SeplError

__all__ = ["EXECUTORS", "JobSpec", "execute"]

R = TypeVar("R")


class JobSpec(Protocol[R]):
    """A picklable description of per-image work."""

    def setup(self) -> Callable[[str], R]:
        """Build the per-image function (load plugins, models...) once in a worker."""
        ...


_worker_fn: Callable[[str], Any] | None = None
_setup_error: Exception | None = None


def _init_worker(spec: JobSpec[Any]) -> None:
    global _worker_fn, _setup_error
    try:
        _worker_fn = spec.setup()
    except Exception as exc:  # an initializer that raises breaks the pool with no message:
        _setup_error = exc  # keep the error and raise it with the worker's first image instead


def _call_worker(image_id: str) -> Any:
    if _setup_error is not None:
        raise _setup_error
    if _worker_fn is None:
        raise RuntimeError("process-pool worker used before its set-up ran")
    return _worker_fn(image_id)


def _serial(spec: JobSpec[R], ids: list[str], workers: int, **_: Any) -> Iterator[R]:
    fn = spec.setup()
    for image_id in ids:
        yield fn(image_id)


#: Tasks queued per worker in the process pool: enough that a worker never waits for the next
#: id, few enough that a run over 100k ids does not create 100k futures (and pickled
#: arguments) up front.
QUEUED_PER_WORKER = 4


def _process(spec: JobSpec[R], ids: list[str], workers: int, **_: Any) -> Iterator[R]:
    if workers <= 1 or len(ids) <= 1:
        yield from _serial(spec, ids, workers)
        return
    workers = min(workers, len(ids))
    ctx = mp.get_context("forkserver")
    # Import the spec's module in the fork server once, so each worker starts with it loaded
    # (no effect if this process's fork server is already running).
    ctx.set_forkserver_preload(["__main__", type(spec).__module__])
    with cf.ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(spec,)) as pool:
        todo = iter(ids)
        pending = {pool.submit(_call_worker, i) for i in itertools.islice(todo, workers * QUEUED_PER_WORKER)}
        try:
            while pending:
                done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                # Refill before handing results out, so the workers stay busy meanwhile.
                pending |= {pool.submit(_call_worker, i) for i in itertools.islice(todo, len(done))}
                for future in done:
                    yield future.result()
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def _ray(spec: JobSpec[R], ids: list[str], workers: int, **options: Any) -> Iterator[R]:
    # Ray is an optional extra: imported only when asked for (see sepl_tree.executors_ray).
    from sepl_tree.executors_ray import ray_executor

    return ray_executor(spec, ids, workers, **options)


#: Executor name -> function(spec, ids, workers, **options) yielding results.
EXECUTORS: dict[str, Callable[..., Iterator[Any]]] = {"serial": _serial, "process": _process, "ray": _ray}


def execute(spec: JobSpec[R], ids: Iterable[str], executor: str = "process", workers: int = 1,
            **options: Any) -> Iterator[R]:
    """Run ``spec``'s per-image function on every id with the named executor."""
    if executor not in EXECUTORS:
        raise SeplError(f"unknown executor {executor!r}; valid choices: {', '.join(sorted(EXECUTORS))}")
    return EXECUTORS[executor](spec, list(ids), workers, **options)
