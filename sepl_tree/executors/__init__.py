"""Map a per-image job over image ids: serially, in a process pool, or on a Ray cluster.

A job is described by a picklable *spec* with a ``setup()`` method that returns the per-image
callable; ``setup`` runs once per worker (so a worker loads its plugins or its SAM model once).
A callable with a ``map(ids)`` method is handed all of a worker's ids at once (serial) or a
batch at a time (process pool, Ray), so that it can overlap reading and writing with its work.
A spec may say how many ids a batch should hold at least (``ids_per_task``, default 1; see
:func:`ids_per_task`). Results are yielded as they complete, in any order; callers must not
depend on the order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

from sepl_tree.errors import SeplError
from sepl_tree.executors.record import ExecutionRecord, local_cluster

__all__ = ["BATCH_SECONDS", "EXECUTORS", "MAX_BATCH", "JobSpec", "cpus_per_worker", "execute", "ids_per_task",
           "map_ids", "most_tasks", "run_task", "task_size"]

R = TypeVar("R")


class JobSpec(Protocol[R]):
    """A picklable description of per-image work.

    Optional attributes an executor reads: ``uses_gpu`` (Ray gives each worker a GPU, and on a
    cluster without GPUs runs ``without_gpus()`` instead, where the spec has it),
    ``cpus_per_worker`` (the CPUs a Ray worker reserves, default 1; Ray then sets the worker's
    ``OMP_NUM_THREADS`` to it), ``ids_per_task`` (see :func:`ids_per_task`) and
    ``output_folders``, the folders its workers
    write to (the process pool and Ray remove there the temporaries of the workers they kill on
    Ctrl-C; see :mod:`sepl_tree.executors.pool` and :mod:`sepl_tree.executors.ray`).
    """

    def setup(self) -> Callable[[str], R]:
        """Build the per-image function (load plugins, models...) once in a worker."""
        ...


def _serial(spec: JobSpec[R], ids: list[str], workers: int, record: ExecutionRecord | None = None,
            **_: Any) -> Iterator[R]:
    if record is not None:
        record.begin(workers, local_cluster())
        record.running(1)
    yield from map_ids(spec.setup(), ids)


def cpus_per_worker(spec: Any) -> int:
    """The CPUs one Ray worker of ``spec`` reserves (``cpus_per_worker``, default 1)."""
    return max(1, int(getattr(spec, "cpus_per_worker", 1)))


def ids_per_task(spec: Any) -> int:
    """The fewest ids an executor that hands out tasks (process pool, Ray) puts in one task.

    A job that batches across images (the SAM fast engine: ``batch_images`` per encoder pass,
    images read ahead and written behind) needs several ids per call of its ``map`` to fill its
    pipeline; a job that does not says nothing, and gets 1.
    """
    return max(1, int(getattr(spec, "ids_per_task", 1)))


def most_tasks(ids: int, per_task: int) -> int:
    """The most tasks ``ids`` ids make, ``per_task`` (the fewest a task holds) to a task: no
    executor starts more workers than that (each sets the job up, e.g. loads a SAM model)."""
    return -(-ids // per_task)


#: Executors that hand out tasks (process pool, Ray) size them to take about this long, judged
#: from the tasks done so far (the first tasks hold ``ids_per_task`` ids), so that handing out
#: ids and collecting results costs the parent little next to the work when images take
#: milliseconds, while slow jobs (SAM, seconds per image) go one id, or ``ids_per_task``, at a time.
BATCH_SECONDS = 0.05
MAX_BATCH = 64


def task_size(fewest: int, images: int, seconds: float) -> int:
    """Ids for the next task after ``images`` took ``seconds`` of work: about :data:`BATCH_SECONDS`
    of it, at most :data:`MAX_BATCH`, and never fewer than ``fewest`` (see :func:`ids_per_task`)."""
    if not images:
        return fewest
    per_image = seconds / images
    size = int(min(MAX_BATCH, max(1, BATCH_SECONDS // per_image))) if per_image > 0 else MAX_BATCH
    return max(size, fewest)


def map_ids(fn: Callable[[str], R], ids: Iterable[str]) -> Iterator[R]:
    """``fn.map(ids)`` when the per-image function has one, else ``fn`` on each id in turn."""
    stream = getattr(fn, "map", None)
    return stream(ids) if stream is not None else (fn(image_id) for image_id in ids)


def run_task(fn: Callable[[str], R], image_ids: Iterable[str]) -> tuple[list[R], float, Exception | None]:
    """One task of a worker (process pool, Ray): ``(results, seconds, error)``.

    The task stops at the first id that raises; the results of the ids before it still come
    back (their outputs are written, and the run counts them), with the error, which the
    executor raises once it has handed those results out. ``seconds`` sizes later tasks.
    """
    start = time.perf_counter()
    results: list[R] = []
    try:
        for result in map_ids(fn, image_ids):
            results.append(result)
    except Exception as exc:
        return results, time.perf_counter() - start, sendable_error(exc)
    return results, time.perf_counter() - start, None


def sendable_error(exc: Exception) -> Exception:
    """``exc``, or a :class:`SeplError` with its type and message when it would not survive the
    trip back to the main process (an exception class whose ``__init__`` takes other arguments
    than its ``args`` cannot be rebuilt there, and the pool would only say it broke)."""
    import pickle

    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return SeplError(f"{type(exc).__name__}: {exc}")
    return exc


def _process(spec: JobSpec[R], ids: list[str], workers: int, **options: Any) -> Iterator[R]:
    if workers <= 1 or len(ids) <= 1:  # no pool to start: spare the import of multiprocessing
        return _serial(spec, ids, workers, **options)
    from sepl_tree.executors.pool import process_executor

    return process_executor(spec, ids, workers, **options)


def _ray(spec: JobSpec[R], ids: list[str], workers: int, **options: Any) -> Iterator[R]:
    # Ray is an optional extra: imported only when asked for (see sepl_tree.executors.ray).
    from sepl_tree.executors.ray import ray_executor

    return ray_executor(spec, ids, workers, **options)


#: Executor name -> function(spec, ids, workers, **options) yielding results.
EXECUTORS: dict[str, Callable[..., Iterator[Any]]] = {"serial": _serial, "process": _process, "ray": _ray}


def execute(spec: JobSpec[R], ids: Iterable[str], executor: str = "process", workers: int = 1,
            **options: Any) -> Iterator[R]:
    """Run ``spec``'s per-image function on every id with the named executor.

    Options every executor takes: ``record``, an :class:`~sepl_tree.executors.record.ExecutionRecord`
    it fills in (workers asked for and used, the cluster); ``ray`` also takes ``ray_address``
    and ``notify`` (called with one line when the cluster cannot place every worker or loses one).
    """
    if executor not in EXECUTORS:
        raise SeplError(f"unknown executor {executor!r}; valid choices: {', '.join(sorted(EXECUTORS))}")
    return EXECUTORS[executor](spec, list(ids), workers, **options)
