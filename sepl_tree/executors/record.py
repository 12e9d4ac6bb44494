"""What an executor did in a run, in the same words in every run log.

``run`` (``run.json``), ``compare`` (``compare.json``) and ``masks`` (``masks_run.jsonl``)
each pass an :class:`ExecutionRecord` to :func:`sepl_tree.executors.execute` (as the
``record`` option) and write :meth:`ExecutionRecord.as_json` under the key ``"execution"``::

    {"executor": "ray", "workers": {"asked": 4, "used": 2, "lost": 1}, "retried_images": 2,
     "cluster": {"nodes": 2, "cpus": 2, "gpus": 0}}

``asked`` is how many workers the run aimed for (``--workers``; one per GPU for a GPU job on
Ray), ``used`` the most that ran at the same time, ``lost`` the workers that died mid-run
(their images were done again by others, counted in ``retried_images``), ``cluster`` what
the run ran on (this machine for ``serial`` and ``process``; the Ray cluster when the run
started for ``ray``). A record passed to several runs (``run --gt`` scores with the same
executor) keeps the most workers used and adds up the losses.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Any

__all__ = ["ExecutionRecord", "local_cluster"]


@dataclass
class ExecutionRecord:
    """Filled in by the executor while it runs; see the module docstring for the fields."""

    executor: str
    asked: int = 1
    used: int = 0
    lost: int = 0
    retried: int = 0
    cluster: dict[str, int] | None = None

    def begin(self, asked: int, cluster: dict[str, int]) -> None:
        """Called by an executor when it starts: what it aims for and where it runs."""
        self.asked = asked
        if self.cluster is None:
            self.cluster = cluster

    def running(self, workers: int) -> None:
        """Called whenever the number of working workers changes."""
        self.used = max(self.used, workers)

    def as_json(self) -> dict[str, Any]:
        return {"executor": self.executor, "workers": {"asked": self.asked, "used": self.used, "lost": self.lost},
                "retried_images": self.retried, "cluster": self.cluster}


def local_cluster() -> dict[str, int]:
    """This machine as a one-node cluster: its CPUs and the NVIDIA GPUs it shows (no torch import)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:  # as CUDA reads it: the devices before the first empty or negative entry
        entries = [d.strip() for d in visible.split(",")]
        gpus = next((n for n, d in enumerate(entries) if not d or d.startswith("-")), len(entries))
    else:
        gpus = len(glob.glob("/dev/nvidia[0-9]*"))
    return {"nodes": 1, "cpus": os.cpu_count() or 1, "gpus": gpus}
