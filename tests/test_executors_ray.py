"""The Ray executor's pull loop on a fake Ray (``tests/fake_ray.py``): lost workers, a cluster too
small, a job's own error, tasks of several ids. No Ray is needed; the real cluster is exercised
in ``test_ray_cluster.py``.
"""

from __future__ import annotations

import os
import signal

import pytest

from sepl_tree import executors
from sepl_tree.executors import ray as executors_ray
from sepl_tree.errors import InputError, SeplError
from sepl_tree.executors import execute
from tests.fake_ray import FakeActor, FakeErrors, FakeRay, install
from tests.helpers import Double, TaskSizes
from sepl_tree.executors.record import ExecutionRecord


@pytest.fixture
def fake(monkeypatch):
    """Install a fake Ray (its own clock, so waits cost nothing) for ``execute(..., executor="ray")``.

    Tasks hold one id (or the spec's ``ids_per_task``) whatever the ids take, unless a test sets
    ``BATCH_SECONDS`` again.
    """
    monkeypatch.setattr(executors, "BATCH_SECONDS", 0.0)
    return lambda ray: install(monkeypatch, ray)


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


def test_a_jobs_error_inside_a_task_of_many_still_hands_out_the_ids_before_it(fake):
    """(As in the process pool: they are written, so the run must count them.)"""
    ray = fake(FakeRay(capacity=2))
    got = []
    with pytest.raises(InputError, match=r"^5.png: corrupt PNG$"):
        for result in execute(Double(fail_on="5", ids_per_task=4), [str(i) for i in range(12)], executor="ray",
                              workers=2, record=ExecutionRecord("ray")):
            got.append(result)
    assert ("4", "5", "6", "7") in [event[2] for event in ray.events if event[0] == "task"]
    assert ("4", 8) in got and not any(image_id in ("5", "6", "7") for image_id, _ in got)


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


@pytest.mark.parametrize("address, says", [
    ("10.0.0.1:6379", "cannot start or join the Ray cluster at 10.0.0.1:6379: Failed to connect to Ray cluster at "
                      "10.0.0.1:6379"),
    ("ray://10.0.0.1:10001", "cannot start or join the Ray cluster at ray://10.0.0.1:10001: Failed to connect to "
                             "Ray cluster at ray://10.0.0.1:10001 (if the cluster uses token authentication: set "
                             "RAY_AUTH_MODE=token and give this machine the cluster's token in ~/.ray/auth_token"),
    (None, "cannot start or join a local Ray instance: Failed to connect to Ray cluster at None"),
])
def test_a_cluster_out_of_reach_is_one_line_with_rays_reason(monkeypatch, address, says):
    class Unreachable(FakeRay):
        def is_initialized(self):
            return False

        def init(self, address=None, **_):
            raise ConnectionError(f"Failed to connect to Ray cluster at {address}")

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    with pytest.raises(SeplError) as info:
        executors_ray._start(Unreachable(), address)
    assert str(info.value).startswith(says) and "\n" not in str(info.value)


def test_a_run_records_the_gpus_cuda_visible_devices_shows(monkeypatch):
    from sepl_tree.executors.record import local_cluster

    for visible, gpus in (("0,-1,1", 1), ("0, 2", 2), ("GPU-5f3a,GPU-9b1c", 2), ("", 0), ("-1", 0)):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        assert local_cluster()["gpus"] == gpus, visible  # CUDA ignores the devices after a -1


# ------------------------------------------------------------------------------ Ctrl-C


@pytest.mark.parametrize("during", ["init", "shutdown"])
def test_a_ctrl_c_while_ray_starts_or_stops_is_raised_once_it_is_done(fake, during):
    """Cut short, ray.init loses track of the processes it started (or crashes the process at
    exit), and ray.shutdown leaves the rest running; so a SIGINT waits for them."""

    class Local(FakeRay):
        def __init__(self):
            super().__init__(capacity=2)
            self.calls = []

        def is_initialized(self):
            return "init" in self.calls

        def init(self, **_):
            self._call("init")

        def shutdown(self):
            self._call("shutdown")

        def _call(self, name):
            if name == during:
                os.kill(os.getpid(), signal.SIGINT)  # (Python's handler runs as soon as kill returns)
            self.calls.append(name)

    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's default here")
    ray = fake(Local())
    got = []
    with pytest.raises(KeyboardInterrupt):
        got.extend(execute(Double(), [str(i) for i in range(6)], executor="ray", workers=2))
    assert ray.calls == ["init", "shutdown"]
    assert len(got) == (6 if during == "shutdown" else 0) and all(actor.dead for actor in ray.actors)


# ------------------------------------------------------------------------------ tasks of several ids


def test_a_spec_that_asks_for_several_ids_per_task_gets_them(fake):
    ray = fake(FakeRay(capacity=2))
    results, _, _ = run(ray, TaskSizes(ids_per_task=3), n=10)
    assert sorted(image_id for image_id, _ in results) == sorted(str(i) for i in range(10))
    tasks = [event[2] for event in ray.events if event[0] == "task"]
    assert sorted(len(task) for task in tasks) == [1, 3, 3, 3]  # 10 ids: three full tasks and the rest
    assert all(size == len(task) for task in tasks for image_id, size in results if image_id in task)


def test_a_lost_workers_running_task_goes_out_again_one_id_per_task(fake):
    # Actor 1 is lost in its first task, ("6", "7", "8"), at "7"; its waiting task ("9", "10", "11") stays whole.
    ray = fake(FakeRay(capacity=2, node_lost=False, lose=lambda actor, image_id: actor.index == 1 and image_id == "7"))
    results, record, lines = run(ray, Double(ids_per_task=3), n=18)
    assert sorted(results, key=lambda r: int(r[0])) == expected(18)
    assert lines == ["lost a Ray worker (ActorUnavailableError); 6 image(s) it held go back to the queue; "
                     "1 worker(s) left"]
    assert record.retried == 6
    assert [event[2] for event in ray.events if event[:2] == ("task", 1)] == [("6", "7", "8")]
    after = ray.events[ray.events.index(("kill", 1)):]
    assert {("6",), ("7",), ("8",), ("9", "10", "11")} <= {event[2] for event in after if event[0] == "task"}


def test_an_image_that_kills_its_workers_is_found_in_a_task_of_several(fake):
    ray = fake(FakeRay(capacity=2, node_lost=False, lose=lambda actor, image_id: image_id == "7"))
    with pytest.raises(SeplError, match=r"^7: 3 Ray workers were lost while working on this image"):
        run(ray, Double(ids_per_task=4))
    assert len(ray.ran("7")) == executors_ray.MAX_ATTEMPTS


def test_tasks_grow_to_about_batch_seconds_of_work_as_in_the_process_pool(fake, monkeypatch):
    """(Millisecond jobs, such as ``run``, would otherwise pay Ray's cost per call on every id.)"""
    ray = fake(FakeRay(capacity=2))
    monkeypatch.setattr(executors, "BATCH_SECONDS", 10.0)
    results, _, _ = run(ray, n=300)
    assert sorted(results, key=lambda r: int(r[0])) == expected(300)
    sizes = [len(event[2]) for event in ray.events if event[0] == "task"]
    assert sizes[:4] == [1, 1, 1, 1]  # nothing measured yet: one id each (two actors, two tasks each)
    assert max(sizes) == executors.MAX_BATCH and sum(sizes) == 300


@pytest.mark.parametrize(("ids", "per_task", "actors", "tasks"), [
    (40, 16, 3, [(0, 16), (1, 16), (2, 8)]),  # three tasks: three workers, each loading its model once
    (32, 8, 4, [(0, 8), (1, 8), (2, 8), (3, 8)]),  # a second task only once every worker has one
    (10, 8, 2, [(0, 8), (1, 2)]),
])
def test_no_more_workers_than_tasks_and_each_one_fed_before_a_second_task(fake, ids, per_task, actors, tasks):
    """(A SAM job of a few tasks on four GPUs started four models; the first one ready took two
    tasks while two others never got one, and the run log said four were used.)"""
    ray = fake(FakeRay(capacity=4))
    record = ExecutionRecord("ray", 4)
    results = list(execute(TaskSizes(ids_per_task=per_task), [str(i) for i in range(ids)], executor="ray",
                           workers=4, record=record, notify=lambda line: None))
    assert sorted(image_id for image_id, _ in results) == sorted(str(i) for i in range(ids))
    assert len(ray.actors) == actors
    assert [(event[1], len(event[2])) for event in ray.events if event[0] == "task"] == tasks
    assert record.as_json()["workers"] == {"asked": 4, "used": actors, "lost": 0}
