"""The process-pool executor: every id once, and a worker's set-up error reaches the user."""

from dataclasses import dataclass

import pytest

from sepl_tree.errors import InputError
from sepl_tree.executors import execute


@dataclass(frozen=True)
class Double:
    fail_setup: bool = False

    def setup(self):
        if self.fail_setup:
            raise InputError("model.pth", "checkpoint is corrupt")
        return lambda image_id: (image_id, 2 * int(image_id))


@pytest.mark.parametrize("workers", [1, 2])
def test_every_id_once(workers):
    results = sorted(execute(Double(), [str(i) for i in range(9)], executor="process", workers=workers))
    assert results == [(str(i), 2 * i) for i in range(9)]


@pytest.mark.parametrize("workers", [1, 2])
def test_setup_error_is_the_error_the_user_sees(workers):
    with pytest.raises(InputError, match="model.pth: checkpoint is corrupt"):
        list(execute(Double(fail_setup=True), ["1", "2", "3"], executor="process", workers=workers))


def test_unknown_executor_lists_choices():
    with pytest.raises(Exception, match="valid choices: process, ray, serial"):
        execute(Double(), ["1"], executor="dask")
