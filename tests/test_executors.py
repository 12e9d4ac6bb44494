"""The process-pool executor: every id once, and a worker's set-up error reaches the user."""

import pytest

from sepl_tree import executors
from sepl_tree.executors import pool
from sepl_tree.errors import InputError, SeplError
from sepl_tree.executors import execute
from tests.helpers import Double, TaskSizes, TwoPartError


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_every_id_once(workers):
    results = sorted(execute(Double(), [str(i) for i in range(9)], executor="process", workers=workers))
    assert results == [(str(i), 2 * i) for i in range(9)]


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_setup_error_is_the_error_the_user_sees(workers):
    with pytest.raises(InputError, match="model.pth: checkpoint is corrupt"):
        list(execute(Double(fail_setup=True), ["1", "2", "3"], executor="process", workers=workers))


def test_unknown_executor_lists_choices():
    with pytest.raises(Exception, match="valid choices: process, ray, serial"):
        execute(Double(), ["1"], executor="dask")


@pytest.mark.slow  # a process pool
def test_fast_jobs_go_in_batches_and_every_id_comes_back_once(monkeypatch):
    """Millisecond jobs are sent many ids per task (the parent then costs little); none is lost."""
    seen = []
    real = pool.process_executor

    class Recording(pool.cf.ProcessPoolExecutor):
        def submit(self, fn, *args, **kwargs):
            seen.append(len(args[0]))
            return super().submit(fn, *args, **kwargs)

    monkeypatch.setattr(pool.cf, "ProcessPoolExecutor", Recording)
    ids = [str(i) for i in range(400)]
    results = sorted(real(Double(), ids, workers=2), key=lambda r: int(r[0]))
    assert results == [(str(i), 2 * i) for i in range(400)]
    assert seen[0] == 1 and max(seen) > 1  # the first tasks hold one id, later ones many
    assert max(seen) <= executors.MAX_BATCH and sum(seen) == len(ids)


@pytest.mark.slow  # a process pool
def test_an_error_inside_a_batch_still_reports_the_ids_before_it(monkeypatch):
    # With batches of a long time, every task after the first eight (one id each) is as large as
    # the executor allows, so the id that fails sits inside a batch of many.
    monkeypatch.setattr(executors, "BATCH_SECONDS", 10.0)
    ids = [str(i) for i in range(300)]
    got = []
    with pytest.raises(InputError, match="250.png: corrupt PNG"):
        for result in execute(Double(fail_on="250"), ids, executor="process", workers=2):
            got.append(result)
    reported = {image_id for image_id, _ in got}
    first = 8 + (250 - 8) // executors.MAX_BATCH * executors.MAX_BATCH  # the first id of the batch holding 250
    assert first < 250 - 1  # that batch has ids before 250
    assert {str(i) for i in range(first, 250)} <= reported  # ... and it reported what it did before 250
    assert len(got) == len(reported) and "250" not in reported


@pytest.mark.slow  # a process pool
def test_a_spec_that_asks_for_several_ids_per_task_gets_at_least_that_many():
    """(The SAM fast engine batches across the images of one ``map`` call.) Slow jobs would get one id."""
    results = list(execute(TaskSizes(ids_per_task=4), [str(i) for i in range(10)], executor="process", workers=2))
    assert sorted(image_id for image_id, _ in results) == sorted(str(i) for i in range(10))
    assert sorted(size for _, size in results) == [2, 2] + [4] * 8  # tasks of 4, 4 and the last 2


@pytest.mark.slow  # a process pool
def test_a_worker_that_dies_is_one_error_naming_images_not_a_broken_pool():
    """(An OOM kill or a crash in native code: the pool used to give a 55-line BrokenProcessPool traceback.)"""
    ids = [str(i) for i in range(40)]
    got = []
    with pytest.raises(SeplError, match=r"a worker process ended abruptly .* while the workers held \d+ image\(s\) "
                                        r"\('\d+', \.\.\.\); the outputs finished before are kept: rerun to resume"):
        for result in execute(Double(die_on="20"), ids, executor="process", workers=2):
            got.append(result)
    assert ("20", 40) not in got


@pytest.mark.parametrize("workers", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_an_error_that_cannot_travel_back_keeps_its_type_and_message(workers):
    """(An exception that cannot be unpickled in the main process broke the whole pool, its message lost.)"""
    expected = TwoPartError if workers == 1 else SeplError
    with pytest.raises(expected, match=r"(TwoPartError: )?3\.png: unreadable$") as caught:
        list(execute(Double(odd_error_on="3"), [str(i) for i in range(8)], executor="process", workers=workers))
    if workers == 2:
        assert str(caught.value) == "TwoPartError: 3.png: unreadable"


@pytest.mark.slow  # a process pool
def test_a_setup_error_that_cannot_travel_back_is_not_called_a_dead_worker():
    with pytest.raises(SeplError, match=r"^TwoPartError: model\.pth: not a checkpoint$"):
        list(execute(Double(odd_setup=True), [str(i) for i in range(6)], executor="process", workers=2))


@pytest.mark.slow  # a process pool
def test_the_pool_starts_no_more_workers_than_tasks():
    from sepl_tree.executors.record import ExecutionRecord

    record = ExecutionRecord("process", 4)
    results = list(execute(TaskSizes(ids_per_task=8), [str(i) for i in range(10)], executor="process", workers=4,
                           record=record))
    assert sorted(image_id for image_id, _ in results) == sorted(str(i) for i in range(10))
    assert record.as_json()["workers"]["used"] == 2  # two tasks (8 and 2 ids); four were asked for
