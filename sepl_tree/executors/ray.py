"""The ``ray`` executor: long-lived actors pulling image ids, on a cluster that may lose nodes.

Each actor builds the per-image function once with ``spec.setup()`` (so a SAM model is loaded
once per GPU) and is fed tasks as it finishes them, so fast and slow workers share the dataset
without a static split. Tasks are sized as the process pool sizes them
(:func:`sepl_tree.executors.task_size`: about 50 ms of work, so that millisecond jobs do not
pay Ray's cost per call on every id, and never fewer than the spec's ``ids_per_task``: the SAM
fast engine asks for a few encoder batches, which its ``map`` reads ahead, batches and writes
behind); each actor holds two tasks, one running and one waiting. Results come back to the
caller a task at a time, as tasks complete.

A spec that sets ``uses_gpu = True`` gets one GPU per actor when the cluster has GPUs (one
actor per GPU); any other spec, or a cluster without GPUs, gets ``workers`` CPU actors. Each
actor reserves the spec's ``cpus_per_worker`` CPUs (default 1), and Ray sets its
``OMP_NUM_THREADS`` to that number.
Workers write their outputs themselves, so on a cluster the output folder must be on a file
system every node sees (NFS, Lustre, a mounted bucket).

What happens when the cluster changes under a run:

- **A worker is lost** (its node died, its process crashed or was killed: an actor error, a
  lost node or a lost result): the ids it held go back to the front of the queue (those of the
  task it was running go out again one per task, so that an image that kills its workers is
  found), the actor is killed and dropped, the run goes on with the others and one line says
  so. A replacement actor is asked for; Ray places it when the cluster has room (a node
  rejoins or is added).
  A retried id may be written twice, never at the same time by two live workers on a healthy
  cluster (the lost actor is killed first), and every write is an atomic rename of the same
  bytes.
- **The cluster cannot place every worker asked for**: one line says how many it can place
  now; the run starts with those, and the others start if nodes join (they wait in Ray's queue
  and are cancelled when the run ends). A GPU job also grows to the new GPUs of nodes that join.
- **No worker is left** and none can be placed for :data:`WAIT_FOR_WORKER_SECONDS`: the run
  fails with one line; the finished images are kept, and rerunning the command goes on.
- **The job itself fails** (its own error, raised by ``setup`` or for one image, such as a
  :class:`~sepl_tree.errors.SeplError` for a corrupt file): the run stops with that error, as
  with the other executors, once the ids its task finished before it are handed out (they are
  written and counted); it is not retried.

Ctrl-C (SIGINT) ends a run as in the process pool: exit status 130, one line (the CLI's), the
workers killed and their half-written temporaries removed, the finished images kept for a rerun:

- It is this process's alone: Ray starts its own processes (GCS, raylet, and the workers the
  raylet starts) with SIGINT blocked, so a terminal's Ctrl-C to the process group reaches no
  worker, and a cluster the user started is left running.
- While ``ray.init`` starts a local Ray or joins a cluster, a SIGINT is held back and raised
  when it returns, and Ray is then stopped as below: a Ctrl-C at start-up takes effect once Ray
  has started (seconds). Cut short, ``ray.init`` loses track of what it has started, or crashes
  the process as it exits (Ray 2.60, as tested: the raylet's dashboard and runtime-env agents
  stayed a minute after the run, blocked telling the GCS, dead too, that the raylet had died;
  an interrupted ``connect`` ended in a segmentation fault). Ray itself takes no SIGINT for most
  of that time anyway (it waits in C++ for the raylet to register). A Ray Client address
  (``ray://``) is not held: its connection, Python's, ends cleanly, and it waits 30 s for a
  server that does not answer.
- On an interrupt, an error or the caller stopping, every actor is killed and the calls it had
  not answered are waited for (they fail once Ray is done killing it; at most
  :data:`STOP_SECONDS`); then a local Ray this call started is shut down (its workers are gone
  when ``ray.shutdown`` returns; a cluster is only left), and the temporaries in the spec's
  ``output_folders`` are removed (:func:`sepl_tree.files.remove_stale_temporaries`, as a rerun
  would). All of it with SIGINT held: a second Ctrl-C would cut Ray's shutdown short as above.
  Every output is written to a temporary and renamed, so what remains is whole. A worker on a
  cluster that outlives its kill by a moment may still leave a temporary, which a rerun
  removes. Ray's own shutdown of a local instance takes a second or two (its autoscaler monitor
  waits out a 1 s SIGTERM grace), as at the end of any run.

Why not ``ray.util.ActorPool`` (Ray 2.60), which has the same pull loop: when an actor dies,
``get_next_unordered`` raises without saying which value was lost, so its id cannot be put
back; only ``ActorDiedError`` drops the actor (a lost node first gives ``ActorUnavailableError``,
after which the pool hands the next value to the dead actor); and it keeps one task per actor
(an actor idles between ids while the driver hands out the next one).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from sepl_tree.errors import SeplError, one_line
from sepl_tree.executors import cpus_per_worker, ids_per_task, most_tasks, run_task, task_size
from sepl_tree.executors.interrupts import HeldInterrupts
from sepl_tree.executors.record import ExecutionRecord
from sepl_tree.files import remove_stale_temporaries

__all__ = [
    "IN_FLIGHT_PER_ACTOR",
    "MAX_ATTEMPTS",
    "STOP_SECONDS",
    "WAIT_FOR_WORKER_SECONDS",
    "cluster_size",
    "import_ray",
    "ray_executor",
]

#: Tasks queued on each actor: one running, one waiting, so an actor never idles between tasks.
IN_FLIGHT_PER_ACTOR = 2
#: How long a run with no worker left waits for the cluster to place one before it fails.
WAIT_FOR_WORKER_SECONDS = 600.0
#: The pull loop wakes up at least this often to look at the clock and the cluster.
TICK_SECONDS = 1.0
#: A GPU job looks for new GPUs (nodes that joined) this often.
GROW_SECONDS = 15.0
#: An image whose worker is lost this many times while it runs stops the run: it may be what
#: kills them (a crash, or memory).
MAX_ATTEMPTS = 3
#: Workers lost in a row without one image finishing, per worker asked for, that stop the run.
LOSSES_PER_WORKER = 3
#: What a lost worker raises (names in ``ray.exceptions``); anything else from Ray is not retried.
LOST_WORKER_ERRORS = ("RayActorError", "NodeDiedError", "WorkerCrashedError", "ObjectLostError",
                      "OutOfMemoryError", "ActorUnschedulableError")
#: After connecting, how long free resources may take to show the actors of a run just ended.
SETTLE_SECONDS = 3.0
#: How long a run that stops waits for the calls of the actors it killed to fail.
STOP_SECONDS = 10.0
#: Where Ray 2.60 says, on every local ``ray.init()``, that the instance it starts uses token
#: authentication (and how to opt out): a notice for cluster operators, not for a run that
#: starts its own instance on this machine and stops it at the end.
RAY_TOKEN_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"

_log = logging.getLogger(__name__)
_now = time.monotonic
_sleep = time.sleep


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

    def placed(self) -> bool:
        """Answers as soon as the actor runs: the cluster has placed it (``setup`` may take long)."""
        return True

    def setup(self) -> bool:
        self.fn = self.spec.setup()
        return True

    def run(self, image_ids: tuple[str, ...]) -> tuple[list[Any], float, Exception | None]:
        """``(results, seconds, error)`` of a task (see :func:`sepl_tree.executors.run_task`)."""
        assert self.fn is not None, "setup() must run first"
        return run_task(self.fn, image_ids)


def _unwrap(ray: Any, exc: BaseException) -> BaseException:
    """The user-facing error inside a Ray task error (our ``SeplError`` stays one line)."""
    cause = getattr(exc, "cause", None)
    if isinstance(exc, ray.exceptions.RayTaskError) and cause is not None:
        return cause
    return exc


# ------------------------------------------------------------------------------ joining


def _chain(exc: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    while exc is not None and exc not in found:
        found.append(exc)
        exc = exc.__cause__ or exc.__context__
    return found


def _join_error(ray: Any, address: str | None, exc: BaseException) -> SeplError:
    """One line for a failed ``ray.init``; token authentication problems name the fix.

    In Ray 2.60 (as tested) a cluster started with ``ray start --head`` uses token
    authentication when the head has a token (``~/.ray/auth_token``; a local ``ray.init()``
    makes one), but a node or a driver given an address never switches it on by itself:
    without ``RAY_AUTH_MODE=token`` it is refused, and Ray says only "Failed to connect to Ray
    cluster" after 20 s of retries (the reason is in a chained exception; a Ray Client just
    times out).
    """
    where = f"the Ray cluster at {address}" if address else "a local Ray instance"
    auth_error = getattr(ray.exceptions, "AuthenticationError", ())
    texts = [str(e) for e in _chain(exc)]
    refused = any(isinstance(e, auth_error) for e in _chain(exc)) or any(
        word in text for text in texts for word in ("InvalidAuthToken", "Unauthenticated", "AuthenticationError"))
    token_mode = os.environ.get("RAY_AUTH_MODE", "").lower() == "token"
    token_hint = ("the cluster's token in ~/.ray/auth_token (copied from the head node), "
                  "RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH")
    if refused and not token_mode:
        return SeplError(f"cannot join {where}: it uses token authentication; set RAY_AUTH_MODE=token "
                         f"and give this machine {token_hint}")
    if refused:
        return SeplError(f"cannot join {where}: it refused this machine's token; give this machine {token_hint}")
    hint = ""
    if address and address.startswith("ray://") and not token_mode:
        hint = f" (if the cluster uses token authentication: set RAY_AUTH_MODE=token and give this machine {token_hint})"
    return SeplError(f"cannot start or join {where}: {one_line(exc)}{hint}")


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Only errors from the logger ``name`` while the block runs."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _start(ray: Any, address: str | None) -> bool:
    """Connect to ``address`` or start a local Ray; ``True`` if this call started it.

    Ray's own notices ("Connecting to existing Ray cluster at ...", "Started a local Ray
    instance.", the token notice of a local start) are not printed: the run log records the
    cluster, and what goes wrong still comes as Ray's warnings and errors, or as ours.
    """
    if ray.is_initialized():
        return False
    try:
        if address:
            ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
        else:
            with _quiet(RAY_TOKEN_NOTICE_LOGGER):
                ray.init(include_dashboard=False, logging_level=logging.WARNING)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise _join_error(ray, address, exc) from None
    return True


# ------------------------------------------------------------------------------ the cluster


def cluster_size(ray: Any) -> dict[str, int]:
    """The connected cluster's live nodes and its CPUs and GPUs in all (for the run logs)."""
    total = ray.cluster_resources()
    nodes = sum(1 for node in ray.nodes() if node.get("Alive", True))
    return {"nodes": nodes, "cpus": int(total.get("CPU", 0)), "gpus": int(total.get("GPU", 0))}


def largest_node(ray: Any) -> dict[str, float] | None:
    """The CPUs (and GPUs) of the live node with the most CPUs, or ``None`` where Ray does not say."""
    sizes = [node["Resources"] for node in ray.nodes() if node.get("Alive", True) and "Resources" in node]
    return max(sizes, key=lambda r: r.get("CPU", 0.0)) if sizes else None


def _room(free: dict[str, float], need: dict[str, float]) -> int:
    """How many actors that each need ``need`` fit in the ``free`` resources."""
    return int(min(free.get(name, 0.0) // amount for name, amount in need.items()))


def _resources(amounts: dict[str, float]) -> str:
    return " + ".join(f"{amount:g} {name}" + ("s" if amount != 1 and name in ("CPU", "GPU") else "")
                      for name, amount in amounts.items())


class _Slot:
    """One actor: ``pending`` (not placed yet), ``setup`` (placed, building its function), ``ready``."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor
        self.state = "pending"
        self.ran = False  # whether it was given a task
        self.in_flight: deque[tuple[Any, tuple[str, ...]]] = deque()  # (ref, ids) in the order the actor runs them

    def held(self) -> int:
        return sum(len(ids) for _, ids in self.in_flight)


class _PullLoop:
    """Feed ids to actors as they finish them; put back the ids of the lost ones.

    ``ray`` is the Ray module, or a fake with the same few functions (``wait``, ``get``, ``kill``,
    ``available_resources``, ``exceptions``) in the tests; ``new_actor()`` makes one actor.
    """

    def __init__(self, ray: Any, new_actor: Callable[[], Any], ids: list[str], target: int,
                 need: dict[str, float], record: ExecutionRecord, notify: Callable[[str], None],
                 grow: Callable[[], int] | None = None, wait_seconds: float | None = None,
                 per_task: int = 1) -> None:
        self.ray, self.new_actor, self.need, self.record, self.notify = ray, new_actor, need, record, notify
        self.per_task = max(1, per_task)
        self.target, self.grow = target, grow
        self.wait_seconds = WAIT_FOR_WORKER_SECONDS if wait_seconds is None else wait_seconds
        self.lost_errors = tuple(getattr(ray.exceptions, name) for name in LOST_WORKER_ERRORS
                                 if hasattr(ray.exceptions, name))
        self.queue: deque[str] = deque(ids)
        self.slots: list[_Slot] = []
        self.refs: dict[Any, tuple[_Slot, str, tuple[str, ...]]] = {}  # ref -> (slot, "placed"|"setup"|"run", ids)
        self.attempts: Counter[str] = Counter()
        self.done_images, self.done_seconds = 0, 0.0
        self.lost_in_a_row = 0
        self.unplaced_since: float | None = None
        self.grown_at = _now()

    # -- the loop

    def results(self) -> Iterator[Any]:
        self._top_up()
        while self.queue or any(slot.in_flight for slot in self.slots):
            if self.refs:
                try:
                    ready, _ = self.ray.wait(list(self.refs), num_returns=1, timeout=TICK_SECONDS)
                except self.ray.exceptions.RayError as exc:  # the driver's own node or the head is gone
                    raise SeplError(f"lost the Ray cluster: {one_line(exc)}") from None
            else:
                ready = []
                _sleep(TICK_SECONDS)
            if ready:
                yield from self._collect(ready[0])
            self._check_placed()
            self._maybe_grow()

    def close(self) -> list[Any]:
        """Kill every actor, placed or still waiting for room; return the calls they had not answered."""
        unanswered = list(self.refs)
        for slot in self.slots:
            self._kill(slot.actor)
        self.slots.clear()
        self.refs.clear()
        return unanswered

    # -- steps

    def _collect(self, ref: Any) -> Iterator[Any]:
        slot, kind, image_ids = self.refs.pop(ref)
        errors = self.ray.exceptions
        try:
            value = self.ray.get(ref)
        except errors.RayTaskError as exc:  # the job's own error, in setup() or for one image: the run stops
            raise _unwrap(self.ray, exc) from None
        except self.lost_errors as exc:
            if getattr(exc, "actor_init_failed", False):  # it cannot even unpickle the job: not a lost node
                raise SeplError(f"a Ray worker could not start (is sepl-tree, or a plugin, missing on a node?): "
                                f"{one_line(exc)[:400]}") from None
            self._lose(slot, exc)
            return
        except errors.RayError as exc:
            raise SeplError(f"the Ray run failed: {one_line(exc)}") from None
        if kind == "placed":
            if slot.state == "pending":
                slot.state = "setup"
        elif kind == "setup":
            slot.state = "ready"
            self._feed(slot)
        else:
            results, seconds, error = value
            slot.in_flight.remove((ref, image_ids))
            self.lost_in_a_row = 0
            self.done_images, self.done_seconds = self.done_images + len(results), self.done_seconds + seconds
            if error is None:
                self._feed(slot)
            yield from results  # (an error stops the run, but the ids done before it still count)
            if error is not None:
                raise error

    def _feed(self, slot: _Slot) -> None:
        while slot.state == "ready" and len(slot.in_flight) < IN_FLIGHT_PER_ACTOR and self.queue:
            starting = sum(s.state != "ready" for s in self.slots)
            if slot.in_flight and len(self.queue) <= starting * self.per_task:
                break  # a second task only from what the actors still starting will not need
            image_ids = self._next_task()
            ref = slot.actor.run.remote(image_ids)
            slot.in_flight.append((ref, image_ids))
            self.refs[ref] = (slot, "run", image_ids)
            slot.ran = True
        self.record.running(sum(s.ran for s in self.slots))  # workers that got a task, not just loaded

    def _next_task(self) -> tuple[str, ...]:
        """The next task's ids from the queue (:func:`task_size`); an id whose worker was lost goes alone."""
        size = task_size(self.per_task, self.done_images, self.done_seconds)
        image_ids = [self.queue.popleft()]
        if not self.attempts[image_ids[0]]:
            while self.queue and len(image_ids) < size and not self.attempts[self.queue[0]]:
                image_ids.append(self.queue.popleft())
        return tuple(image_ids)

    def _top_up(self) -> None:
        """Ask for actors up to the target, but not more than there are tasks left to hand out
        (each loads its model: an actor that would get no task is not started)."""
        work = len(self.queue) + sum(slot.held() for slot in self.slots)
        while len(self.slots) < min(self.target, most_tasks(work, self.per_task)):
            slot = _Slot(self.new_actor())
            self.slots.append(slot)
            self.refs[slot.actor.placed.remote()] = (slot, "placed", ())
            self.refs[slot.actor.setup.remote()] = (slot, "setup", ())

    def _lose(self, slot: _Slot, exc: BaseException) -> None:
        self.slots.remove(slot)
        for ref in [r for r, (s, _, _) in self.refs.items() if s is slot]:
            del self.refs[ref]
        self._kill(slot.actor)  # before its ids go to another actor: never two live writers of one id
        ids = [image_id for _, task in slot.in_flight for image_id in task]
        reason = type(exc).__name__
        self.lost_in_a_row += 1
        if self.lost_in_a_row > LOSSES_PER_WORKER * self.target:
            raise SeplError(f"{self.lost_in_a_row} Ray workers were lost in a row without an image finishing; "
                            f"is the cluster healthy? The finished images are kept (last: {one_line(exc)[:300]})")
        if slot.state == "pending":  # never placed (its creation failed): ask for another, quietly
            self._top_up()
            return
        if ids:
            running = slot.in_flight[0][1]  # an actor runs its tasks in order: the first was running
            self.attempts.update(running)
            for image_id in running:
                if self.attempts[image_id] >= MAX_ATTEMPTS:
                    raise SeplError(f"{image_id}: {MAX_ATTEMPTS} Ray workers were lost while working on this "
                                    f"image (last: {reason}); it may be what kills them (a crash, or memory); "
                                    "the finished images are kept")
            self.queue.extendleft(reversed(ids))
            for other in self.slots:  # a worker that ran out of ids takes them now
                self._feed(other)
        self.record.lost += 1
        self.record.retried += len(ids)
        left = sum(s.state != "pending" for s in self.slots)
        then = (f"{left} worker(s) left" if left else
                f"no worker left; waiting up to {self.wait_seconds:.0f} s for the cluster to place one")
        self.notify(f"lost a Ray worker ({reason}); {len(ids)} image(s) it held go back to the queue; {then}")
        self._top_up()

    def _check_placed(self) -> None:
        """Fail when no actor has been placed for ``wait_seconds`` while there is work."""
        if any(slot.state != "pending" for slot in self.slots):
            self.unplaced_since = None
            return
        now = _now()
        if self.unplaced_since is None:
            self.unplaced_since = now
        elif now - self.unplaced_since > self.wait_seconds:
            free = {name: self.ray.available_resources().get(name, 0.0) for name in self.need}
            raise SeplError(f"no Ray worker could be placed for {self.wait_seconds:.0f} s (each needs "
                            f"{_resources(self.need)}; the cluster has {_resources(free)} free); the finished "
                            "images are kept: rerun the same command when the cluster has room")

    def _maybe_grow(self) -> None:
        if self.grow is None or _now() - self.grown_at < GROW_SECONDS:
            return
        self.grown_at = _now()
        target = self.grow()
        if target > self.target:
            self.target = self.record.asked = target
            self._top_up()

    def _kill(self, actor: Any) -> None:
        try:
            self.ray.kill(actor, no_restart=True)
        except Exception:  # already gone with its node: nothing to kill
            pass


def _placeable(ray: Any, need: dict[str, float], wanted: int) -> tuple[int, dict[str, float]]:
    """How many actors the cluster's free resources fit now, and those resources.

    Resources freed by a run that just ended (``run --gt`` scores after it runs) take a moment
    to show: a short count keeps being asked for up to :data:`SETTLE_SECONDS`.
    """
    deadline = _now() + SETTLE_SECONDS
    while True:
        free = ray.available_resources()
        room = _room(free, need)
        if room >= wanted or _now() >= deadline:
            return room, {name: free.get(name, 0.0) for name in need}
        _sleep(0.25)


def _pull_loop(ray: Any, spec: Any, ids: list[str], workers: int, record: ExecutionRecord,
               notify: Callable[[str], None]) -> _PullLoop:
    """The pull loop for ``spec`` on the connected cluster: one actor per GPU or ``workers`` CPU
    actors, each reserving the spec's ``cpus_per_worker``; one line says so when the cluster
    cannot place them all now."""
    cluster = cluster_size(ray)
    gpus = cluster["gpus"] if getattr(spec, "uses_gpu", False) else 0
    if not gpus and hasattr(spec, "without_gpus"):  # e.g. a SAM job for --device auto: its CPU form
        spec = spec.without_gpus()
    target = gpus or max(1, workers)
    cpus = cpus_per_worker(spec)
    need = {"CPU": float(cpus), "GPU": 1.0} if gpus else {"CPU": float(cpus)}
    if (largest := largest_node(ray)) is not None and largest.get("CPU", 0.0) < cpus:
        # no node could ever place one: say so now rather than wait WAIT_FOR_WORKER_SECONDS
        raise SeplError(f"each Ray worker reserves {cpus} CPUs (one per --threads), and the largest node of the "
                        f"cluster has {largest.get('CPU', 0.0):g}; give --threads {int(largest.get('CPU', 1)) or 1} "
                        "or fewer")
    record.begin(target, cluster)
    wanted = min(target, most_tasks(len(ids), ids_per_task(spec)))  # no more actors than tasks
    room, free = _placeable(ray, need, wanted)
    if room < wanted:
        each = f"{_resources(need)} each, {_resources(free)} free"
        asked = f"{wanted} Ray workers" + (" (one per GPU)" if gpus else "")
        notify(f"asked for {asked}, the cluster can place {room} now ({each}); "
               + (f"using {room}, more if nodes join" if room else
                  f"waiting up to {WAIT_FOR_WORKER_SECONDS:.0f} s for room"))
    remote = ray.remote(num_gpus=1 if gpus else 0, num_cpus=cpus)(_Worker)

    def grow() -> int:
        return int(ray.cluster_resources().get("GPU", 0))

    return _PullLoop(ray, lambda: remote.remote(spec), ids, target, need, record, notify,
                     grow=grow if gpus else None, per_task=ids_per_task(spec))


def ray_executor(spec: Any, ids: list[str], workers: int, ray_address: str | None = None,
                 record: ExecutionRecord | None = None, notify: Callable[[str], None] | None = None,
                 **_: Any) -> Iterator[Any]:
    """Run ``spec`` on ``ids`` with Ray actors, yielding results as they complete.

    Parameters
    ----------
    spec
        A picklable job spec (see :class:`sepl_tree.executors.JobSpec`).
    ids
        Image ids to process.
    workers
        Number of CPU actors when no GPU is used.
    ray_address
        Address of a running cluster (``ray://head:10001`` or ``head:6379``); ``None`` starts a
        local Ray instance unless one is already initialised in this process.
    record
        Filled with what the run used (see :mod:`sepl_tree.executors.record`).
    notify
        Called with one line when the cluster cannot place every worker or loses one
        (default: a warning on this module's logger).
    """
    ray = import_ray()
    if not ids:
        return
    record = record if record is not None else ExecutionRecord("ray")
    notify = notify or _log.warning
    loop: _PullLoop | None = None
    with HeldInterrupts() as interrupts:  # Ray's start and stop are not to be cut short (see the module's doc)
        interrupts.held = not (ray_address or "").startswith("ray://")
        started = _start(ray, ray_address)
        try:
            interrupts.held = False
            interrupts.check()  # a Ctrl-C while Ray started: raised here, where the finally stops Ray
            loop = _pull_loop(ray, spec, ids, workers, record, notify)
            yield from loop.results()
        finally:
            interrupts.held = True
            folders = tuple(getattr(spec, "output_folders", ()))
            _stop(ray, loop.close() if loop is not None else [], started, folders)
        interrupts.check()


def _stop(ray: Any, unanswered: list[Any], started: bool, folders: tuple[Path, ...]) -> None:
    """After the actors are killed: wait for their ``unanswered`` calls to fail (so Ray is done
    killing them: a local Ray shut down under a kill logs the GCS's error about it), shut Ray down
    if ``started``, and remove the temporaries that killed tasks may have left in ``folders``."""
    if unanswered:
        with contextlib.suppress(ray.exceptions.RayError):  # (the cluster itself is lost: nothing to wait for)
            ray.wait(unanswered, num_returns=len(unanswered), timeout=STOP_SECONDS)
    if started:
        ray.shutdown()
    if unanswered:
        for folder in folders:
            remove_stale_temporaries(Path(folder))
