"""Fixtures shared by several test modules (builders and data paths are in ``tests/helpers.py``)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def local_ray():
    """A local two-CPU Ray for the tests of one module."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def images(tmp_path):
    """A folder of four small test photos (``img0.png`` ... ``img3.png``) for the SAM tests."""
    from tests.tiny_sam_helpers import write_images

    return write_images(tmp_path / "images")


@pytest.fixture
def single_torch_thread(monkeypatch):
    """One torch (and OpenMP) thread and no progress bars, for the tiny-model SAM tests.

    The tiny models gain nothing from more threads, and on a busy CI machine OpenMP threads
    waiting on each other make them an order of magnitude slower.
    """
    import torch

    monkeypatch.setenv("SEPL_TREE_NO_PROGRESS", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
