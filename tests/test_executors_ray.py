"""The Ray executor's pull loop on a fake Ray: lost workers, a cluster too small, a job's own error.

The fake runs actors one call at a time in the driver, in the order Ray would (each actor runs
its calls in submission order); ``capacity`` is how many live actors the fake cluster can
place. No Ray is needed; the real cluster is exercised in ``test_ray_cluster.py``.
"""

from __future__ import annotations

import itertools
from collections import deque

import pytest

from sepl_tree.executors import ray as executors_ray
from sepl_tree.errors import InputError, SeplError
from sepl_tree.executors import execute
from tests.helpers import Double
from sepl_tree.executors.record import ExecutionRecord


class FakeErrors:
    class RayError(Exception):
        pass

    class RayTaskError(RayError):
        def __init__(self, cause):
            super().__init__(str(cause))
            self.cause = cause

    class RayActorError(RayError):
        pass

    class ActorDiedError(RayActorError):
        pass

    class ActorUnavailableError(RayActorError):
        pass

    class NodeDiedError(RayError):
        pass

    class ObjectLostError(RayError):
        pass

    class AuthenticationError(RayError):
        pass


class FakeRef:
    _seq = itertools.count()

    def __init__(self, actor, method, arg):
        self.actor, self.method, self.arg, self.seq = actor, method, arg, next(self._seq)
        self.value = self.error = None


class _Method:
    def __init__(self, actor, name):
        self.actor, self.name = actor, name

    def remote(self, *args):
        ref = FakeRef(self.actor, self.name, args[0] if args else None)
        self.actor.calls.append(ref)
        return ref


class FakeActor:
    def __init__(self, ray, spec, index):
        self.ray, self.index = ray, index
        self.body = executors_ray._Worker(spec)
        self.calls: deque[FakeRef] = deque()
        self.placed_now = self.dead = False
        self.runs = 0
        for name in ("placed", "setup", "run"):
            setattr(self, name, _Method(self, name))

    def can_run(self, ref):
        if self.dead:
            return bool(self.calls) and self.calls[0] is ref
        if not self.placed_now and self.ray.placed_alive() < self.ray.capacity:
            self.placed_now = True
        return self.placed_now and bool(self.calls) and self.calls[0] is ref

    def resolve(self, ref):
        self.calls.popleft()
        if self.dead:
            ref.error = FakeErrors.ActorDiedError(f"actor {self.index} is dead")
            return
        if ref.method in ("setup", "run"):
            if ref.method == "run":
                self.ray.events.append(("run", self.index, ref.arg))
            if self.ray.loses(self, ref.arg):
                self.dead = True
                ref.error = FakeErrors.ActorUnavailableError(f"actor {self.index} is unavailable")
                return
            self.runs += ref.method == "run"
        try:
            ref.value = getattr(self.body, ref.method)(*([] if ref.arg is None else [ref.arg]))
        except Exception as exc:  # the job's own error comes back wrapped, as from Ray
            ref.error = FakeErrors.RayTaskError(exc)


class FakeRay:
    """``capacity`` live actors can be placed; ``lose(actor, image_id)`` says when one is lost.

    ``lose`` is asked before each ``run`` (with its id) and ``setup`` (with ``None``); a lost
    node (``node_lost``) takes its room with it.
    """

    exceptions = FakeErrors

    def __init__(self, capacity=2, lose=None, node_lost=True, gpus=0):
        self.capacity, self.lose_rule, self.node_lost, self.gpus = capacity, lose, node_lost, gpus
        self.actors: list[FakeActor] = []
        self.events: list[tuple] = []
        self.time = 0.0

    # the few functions of ray the executor calls
    def is_initialized(self):
        return True

    def remote(self, **_):
        return lambda cls: type("ActorClass", (), {"remote": lambda _self, spec: self._new_actor(spec)})()

    def wait(self, refs, num_returns=1, timeout=None):
        assert self.time < 10_000, "the run hangs"
        self.time += 0.1
        for ref in sorted(refs, key=lambda r: r.seq):
            if ref.actor.can_run(ref):
                ref.actor.resolve(ref)
                return [ref], [r for r in refs if r is not ref]
        self.time += timeout or 0
        return [], list(refs)

    def get(self, ref):
        if ref.error is not None:
            raise ref.error
        return ref.value

    def kill(self, actor, no_restart=True):
        actor.dead = True
        self.events.append(("kill", actor.index))

    def cluster_resources(self):
        return {"CPU": float(self.capacity), **({"GPU": float(self.gpus)} if self.gpus else {})}

    def available_resources(self):
        free = float(self.capacity - self.placed_alive())
        return {"CPU": free, **({"GPU": free} if self.gpus else {})}

    def nodes(self):
        return [{"Alive": True}]

    # bookkeeping
    def _new_actor(self, spec):
        actor = FakeActor(self, spec, len(self.actors))
        self.actors.append(actor)
        return actor

    def placed_alive(self):
        return sum(a.placed_now and not a.dead for a in self.actors)

    def loses(self, actor, image_id):
        if self.lose_rule is None or not self.lose_rule(actor, image_id):
            return False
        if self.node_lost:
            self.capacity -= 1
        return True

    def ran(self, image_id):
        return [actor for kind, actor, *arg in self.events if kind == "run" and arg == [image_id]]




@pytest.fixture
def fake(monkeypatch):
    """Install a fake Ray (its own clock, so waits cost nothing) for ``execute(..., executor="ray")``."""

    def install(ray):
        monkeypatch.setattr(executors_ray, "import_ray", lambda: ray)
        monkeypatch.setattr(executors_ray, "_now", lambda: ray.time)
        monkeypatch.setattr(executors_ray, "_sleep", lambda seconds: setattr(ray, "time", ray.time + seconds))
        return ray

    return install


def run(ray, spec=Double(), n=20, workers=2):
    record, lines = ExecutionRecord("ray"), []
    results = list(execute(spec, [str(i) for i in range(n)], executor="ray", workers=workers, record=record,
                           notify=lines.append))
    return results, record, lines


def expected(n):
    return [(str(i), 2 * i) for i in range(n)]


def test_a_lost_workers_ids_go_back_to_the_queue_and_the_run_goes_on(fake):
    ray = fake(FakeRay(capacity=2, lose=lambda actor, image_id: actor.index == 1 and actor.runs == 3 and image_id))
    results, record, lines = run(ray)
    assert sorted(results, key=lambda r: int(r[0])) == expected(20)  # every id once, none lost
    assert lines == ["lost a Ray worker (ActorUnavailableError); 2 image(s) it held go back to the queue; "
                     "1 worker(s) left"]
    assert record.as_json()["workers"] == {"asked": 2, "used": 2, "lost": 1} and record.retried == 2
    lost_id = [event[2] for event in ray.events if event[:2] == ("run", 1)][-1]
    # the id actor 1 was running when it was lost ran again on actor 0, after actor 1 was killed
    assert ray.events.index(("run", 0, lost_id)) > ray.events.index(("kill", 1))
    assert len(ray.actors) == 3 and ray.actors[2].dead  # a replacement was asked for, never placed, cancelled


def test_ids_lost_at_the_end_go_to_a_worker_that_has_run_out_of_ids(fake):
    # Actor 0 runs 0 and 1, then has nothing to do; actor 1 is lost running 2 (3 waits behind it).
    ray = fake(FakeRay(capacity=2, lose=lambda actor, image_id: actor.index == 1 and image_id == "2"))
    results, record, _ = run(ray, n=4)
    assert sorted(results, key=lambda r: int(r[0])) == expected(4)
    assert ray.ran("2") == [1, 0] and ray.ran("3") == [0] and record.retried == 2


def test_a_crashed_worker_is_replaced_where_there_is_room(fake):
    ray = fake(FakeRay(capacity=2, node_lost=False, lose=lambda actor, image_id: actor.index == 0 and image_id == "4"))
    results, record, lines = run(ray)
    assert sorted(results, key=lambda r: int(r[0])) == expected(20)
    assert len(lines) == 1 and record.lost == 1
    assert ray.actors[2].runs > 0  # the replacement worked


def test_a_cluster_too_small_says_so_in_one_line_and_uses_what_fits(fake):
    ray = fake(FakeRay(capacity=2))
    results, record, lines = run(ray, workers=4)
    assert sorted(results, key=lambda r: int(r[0])) == expected(20)
    assert lines == ["asked for 4 Ray workers, the cluster can place 2 now (1 CPU each, 2 CPUs free); "
                     "using 2, more if nodes join"]
    assert record.as_json()["workers"] == {"asked": 4, "used": 2, "lost": 0}
    assert all(actor.dead for actor in ray.actors[2:])  # the two still waiting for room were cancelled


def test_workers_start_when_a_node_joins(fake):
    ray = fake(FakeRay(capacity=1))
    record, lines, results = ExecutionRecord("ray"), [], []
    for result in execute(Double(), [str(i) for i in range(20)], executor="ray", workers=2, record=record,
                          notify=lines.append):
        results.append(result)
        ray.capacity = 2 if len(results) >= 3 else 1  # a node with one CPU joins
    assert sorted(results, key=lambda r: int(r[0])) == expected(20)
    assert lines == ["asked for 2 Ray workers, the cluster can place 1 now (1 CPU each, 1 CPU free); "
                     "using 1, more if nodes join"]
    assert record.used == 2 and ray.actors[1].runs > 0


def test_a_gpu_job_grows_to_the_gpus_of_a_node_that_joins(fake, monkeypatch):
    monkeypatch.setattr(executors_ray, "GROW_SECONDS", 0.5)
    ray = fake(FakeRay(capacity=1, gpus=1))
    record, results = ExecutionRecord("ray"), []
    for result in execute(Double(uses_gpu=True), [str(i) for i in range(40)], executor="ray", workers=1,
                          record=record, notify=lambda line: None):
        results.append(result)
        if len(results) == 3:
            ray.capacity = ray.gpus = 2
    assert sorted(results, key=lambda r: int(r[0])) == expected(40)
    assert record.as_json()["workers"] == {"asked": 2, "used": 2, "lost": 0}
    assert record.cluster == {"nodes": 1, "cpus": 1, "gpus": 1}  # the cluster as the run found it


def test_no_worker_left_waits_then_fails_in_one_line(fake, monkeypatch):
    monkeypatch.setattr(executors_ray, "WAIT_FOR_WORKER_SECONDS", 30.0)
    ray = fake(FakeRay(capacity=1, lose=lambda actor, image_id: actor.runs == 2 and image_id))
    got, lines = [], []
    with pytest.raises(SeplError, match=r"^no Ray worker could be placed for 30 s \(each needs 1 CPU; the cluster "
                                        r"has 0 CPUs free\); the finished images are kept: rerun"):
        for result in execute(Double(), [str(i) for i in range(20)], executor="ray", workers=1, notify=lines.append):
            got.append(result)
    assert got == expected(2)
    assert lines == ["lost a Ray worker (ActorUnavailableError); 2 image(s) it held go back to the queue; "
                     "no worker left; waiting up to 30 s for the cluster to place one"]
    assert 30 < ray.time < 40 and all(actor.dead for actor in ray.actors)


def test_the_jobs_own_error_stops_the_run_and_is_not_retried(fake):
    ray = fake(FakeRay(capacity=2))
    with pytest.raises(InputError, match=r"^5.png: corrupt PNG$"):
        run(ray, Double(fail_on="5"))
    assert len(ray.ran("5")) == 1 and all(actor.dead for actor in ray.actors)


def test_a_setup_error_is_the_error_the_user_sees(fake):
    ray = fake(FakeRay(capacity=2))
    with pytest.raises(InputError, match=r"^model.pth: checkpoint is corrupt$"):
        run(ray, Double(fail_setup=True))


def test_an_image_that_kills_every_worker_it_meets_stops_the_run(fake):
    ray = fake(FakeRay(capacity=2, node_lost=False, lose=lambda actor, image_id: image_id == "7"))
    with pytest.raises(SeplError, match=r"^7: 3 Ray workers were lost while working on this image "
                                        r"\(last: ActorUnavailableError\); it may be what kills them"):
        run(ray)
    assert len(ray.ran("7")) == executors_ray.MAX_ATTEMPTS


def test_workers_lost_in_a_row_stop_the_run(fake):
    """Workers that die as they set up (a broken node, say) end the run instead of being replaced forever."""
    ray = fake(FakeRay(capacity=2, node_lost=False, lose=lambda actor, image_id: image_id is None))
    with pytest.raises(SeplError, match=r"^7 Ray workers were lost in a row without an image finishing; is the "
                                        r"cluster healthy\? The finished images are kept \(last: actor 6 is unavailable\)$"):
        run(ray)


def test_a_worker_that_cannot_start_stops_the_run_with_the_reason(fake):
    class InitFailed(FakeErrors.ActorDiedError):
        actor_init_failed = True

    class Broken(FakeActor):
        def resolve(self, ref):
            self.calls.popleft()
            ref.error = InitFailed("The actor died because of an error raised in its creation task, "
                                   "ModuleNotFoundError: No module named 'my_plugin'")

    ray = fake(FakeRay(capacity=2))
    ray._new_actor = lambda spec: ray.actors.append(Broken(ray, spec, len(ray.actors))) or ray.actors[-1]
    with pytest.raises(SeplError, match=r"^a Ray worker could not start .*No module named 'my_plugin'$"):
        run(ray)


@pytest.mark.parametrize("mode, says", [
    (None, "it uses token authentication; set RAY_AUTH_MODE=token and give this machine the cluster's token in "
           "~/.ray/auth_token (copied from the head node), RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH"),
    ("token", "it refused this machine's token; give this machine the cluster's token in ~/.ray/auth_token"),
])
def test_a_cluster_that_wants_a_token_says_how_to_give_it(monkeypatch, mode, says):
    """Ray's own error is "Failed to connect to Ray cluster at ..."; the reason is in its cause."""

    class Refusing(FakeRay):
        def is_initialized(self):
            return False

        def init(self, **_):
            try:
                raise RuntimeError("Failed to connect to GCS. Last connection error: Traceback ...\n"
                                   "ray.exceptions.AuthenticationError: RPC error: InvalidAuthToken: "
                                   "Authentication token is missing or incorrect.")
            except RuntimeError as exc:
                raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379") from exc

    if mode is None:
        monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    else:
        monkeypatch.setenv("RAY_AUTH_MODE", mode)
    with pytest.raises(SeplError) as info:
        executors_ray._start(Refusing(), "10.0.0.1:6379")
    assert str(info.value).startswith(f"cannot join the Ray cluster at 10.0.0.1:6379: {says}")
