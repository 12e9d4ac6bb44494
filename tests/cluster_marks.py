"""What the cluster tests' slow plugins do on a worker before each image (``tests/test_ray_cluster.py``).

Imported by the plugin files those tests write, on the cluster's workers.
"""

from __future__ import annotations

import os
import time


def hold_then_sleep() -> None:
    """Sleep ``SEPL_TEST_SECONDS``; first, with ``SEPL_TEST_MARKS``, note this worker's pid there
    and wait for the file ``go`` in it (once per worker), so that the test can start every
    worker before any finishes an image."""
    marks = os.environ.get("SEPL_TEST_MARKS")
    if marks and not os.path.exists(os.path.join(marks, str(os.getpid()))):
        open(os.path.join(marks, str(os.getpid())), "a").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(os.path.join(marks, "go")) and time.monotonic() < deadline:
            time.sleep(0.05)
    time.sleep(float(os.environ.get("SEPL_TEST_SECONDS", "0")))
