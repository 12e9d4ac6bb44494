"""The process executor keeps a bounded number of tasks queued and loses no result."""

from __future__ import annotations

import concurrent.futures as cf
import threading

import numpy as np
import pytest

from sepl_tree.executors import pool
from sepl_tree.demo import write_demo
from sepl_tree.executors import execute
from sepl_tree.executors.pool import QUEUED_PER_WORKER
from sepl_tree.files import read_label_png
from sepl_tree.inputs import InputConfig
from sepl_tree.pipeline import RunConfig, RunJob

pytestmark = pytest.mark.slow  # process pools and killed subprocesses


class _CountingPool(cf.ProcessPoolExecutor):
    """A process pool that records the most futures it ever had outstanding."""

    most = 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._lock = threading.Lock()
        self._outstanding = 0

    def submit(self, *args, **kwargs):
        with self._lock:
            self._outstanding += 1
            type(self).most = max(type(self).most, self._outstanding)
        future = super().submit(*args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, _future):
        with self._lock:
            self._outstanding -= 1


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    ids = write_demo(root, n_images=30, seed=3)
    return root, ids


def test_pool_queues_a_bounded_number_of_ids_and_returns_each_once(demo, tmp_path, monkeypatch):
    root, ids = demo
    monkeypatch.setattr(pool.cf, "ProcessPoolExecutor", _CountingPool)
    _CountingPool.most = 0
    inputs = InputConfig(root / "pseudo", root / "masks")
    serial, pooled = RunConfig(inputs, tmp_path / "serial"), RunConfig(inputs, tmp_path / "pooled")
    for config in (serial, pooled):
        config.out_dir.mkdir()
    list(execute(RunJob(serial), ids, executor="serial"))
    results = list(execute(RunJob(pooled), ids, executor="process", workers=2))
    assert sorted(r.image_id for r in results) == sorted(ids)
    assert 0 < _CountingPool.most <= 2 * QUEUED_PER_WORKER < len(ids)
    for image_id in ids:
        np.testing.assert_array_equal(read_label_png(pooled.out_dir / f"{image_id}.png", 21),
                                      read_label_png(serial.out_dir / f"{image_id}.png", 21))


def test_pool_error_propagates_and_stops_the_run(demo, tmp_path):
    root, ids = demo
    config = RunConfig(InputConfig(root / "pseudo", root / "missing-masks"), tmp_path / "out")
    config.out_dir.mkdir()
    with pytest.raises(Exception, match="no masks"):
        list(execute(RunJob(config), ids, executor="process", workers=2))
    assert len(list(config.out_dir.glob("*.png"))) < len(ids)
