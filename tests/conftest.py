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
