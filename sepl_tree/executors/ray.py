"""The ``ray`` executor: one long-lived actor per GPU (or per worker on CPU) pulling image ids.

Each actor builds the per-image function once with ``spec.setup()`` (so a SAM model is loaded
once per GPU) and is fed ids one or two at a time as it finishes them, so fast and slow workers
share the dataset without a static split. Results stream back to the caller as they complete.

A spec that sets ``uses_gpu = True`` gets one GPU per actor when the cluster has GPUs (one
actor per GPU); any other spec, or a cluster without GPUs, gets ``workers`` one-CPU actors.
Workers write their outputs themselves, so on a cluster the output folder must be on a file
system every node sees (NFS, Lustre, a mounted bucket).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from sepl_tree.errors import SeplError

__all__ = ["IN_FLIGHT_PER_ACTOR", "import_ray", "ray_executor"]

#: Ids queued on each actor: one running, one waiting, so an actor never idles between ids.
IN_FLIGHT_PER_ACTOR = 2


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SeplError("--executor ray needs Ray, which is not installed: pip install 'sepl-tree[ray]'") from None
    return ray


class _Worker:
    """The actor body: holds the function ``spec.setup()`` built."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.fn: Callable[[str], Any] | None = None

    def setup(self) -> bool:
        self.fn = self.spec.setup()
        return True

    def run(self, image_id: str) -> Any:
        assert self.fn is not None, "setup() must run first"
        return self.fn(image_id)


def _unwrap(ray: Any, exc: BaseException) -> BaseException:
    """The user-facing error inside a Ray task error (our ``SeplError`` stays one line)."""
    cause = getattr(exc, "cause", None)
    if isinstance(exc, ray.exceptions.RayTaskError) and cause is not None:
        return cause
    return exc


def _start(ray: Any, address: str | None) -> bool:
    """Connect to ``address`` or start a local Ray; ``True`` if this call started it."""
    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address, log_to_driver=True)
        else:
            ray.init(include_dashboard=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        raise SeplError(f"cannot start or join {where}: {' '.join(str(exc).split())}") from None
    return True


def ray_executor(spec: Any, ids: list[str], workers: int, ray_address: str | None = None,
                 **_: Any) -> Iterator[Any]:
    """Run ``spec`` on ``ids`` with Ray actors, yielding results as they complete.

    Parameters
    ----------
    spec
        A picklable job spec (see :class:`sepl_tree.executors.JobSpec`).
    ids
        Image ids to process.
    workers
        Number of one-CPU actors when no GPU is used.
    ray_address
        Address of a running cluster (``ray://head:10001`` or ``head:6379``); ``None`` starts a
        local Ray instance unless one is already initialised in this process.
    """
    ray = import_ray()
    if not ids:
        return
    started = _start(ray, ray_address)
    actors: list[Any] = []
    try:
        gpus = int(ray.cluster_resources().get("GPU", 0)) if getattr(spec, "uses_gpu", False) else 0
        count = min(gpus if gpus else max(1, workers), len(ids))
        remote = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1)(_Worker)
        actors = [remote.remote(spec) for _ in range(count)]
        try:
            ray.get([a.setup.remote() for a in actors])
        except ray.exceptions.RayError as exc:
            raise _unwrap(ray, exc) from None
        queue = iter(ids)
        owner: dict[Any, Any] = {}
        for actor in actors:
            for _ in range(IN_FLIGHT_PER_ACTOR):
                image_id = next(queue, None)
                if image_id is not None:
                    owner[actor.run.remote(image_id)] = actor
        while owner:
            ready, _ = ray.wait(list(owner), num_returns=1)
            actor = owner.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except ray.exceptions.RayError as exc:
                raise _unwrap(ray, exc) from None
            image_id = next(queue, None)
            if image_id is not None:
                owner[actor.run.remote(image_id)] = actor
            yield result
    finally:
        for actor in actors:
            ray.kill(actor)
        if started:
            ray.shutdown()
