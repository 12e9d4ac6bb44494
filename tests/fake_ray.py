"""A fake Ray for the executor's tests: actors run one call at a time in the driver.

The fake runs actors in the order Ray would (each actor runs its calls in submission order);
``capacity`` is how many live actors the fake cluster can place. :func:`install` puts it in
place of Ray for ``execute(..., executor="ray")``, with its own clock so waits cost nothing.
"""

from __future__ import annotations

import itertools
from collections import deque

from sepl_tree.executors import ray as executors_ray


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
            ids = ref.arg if ref.method == "run" else (None,)
            if ref.method == "run":
                self.ray.events.append(("task", self.index, ref.arg))
                self.ray.events.extend(("run", self.index, image_id) for image_id in ref.arg)
            if any(self.ray.loses(self, image_id) for image_id in ids):  # (stops at the first loss)
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

    ``lose`` is asked before each ``run`` (with each of its ids in turn, until one is lost) and
    ``setup`` (with ``None``); a lost node (``node_lost``) takes its room with it.
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


def install(monkeypatch, ray: FakeRay) -> FakeRay:
    """Use ``ray`` in place of Ray (and its clock in place of the executor's) for this test."""
    monkeypatch.setattr(executors_ray, "import_ray", lambda: ray)
    monkeypatch.setattr(executors_ray, "_now", lambda: ray.time)
    monkeypatch.setattr(executors_ray, "_sleep", lambda seconds: setattr(ray, "time", ray.time + seconds))
    return ray
