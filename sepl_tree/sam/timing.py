"""Where the time goes: named stages timed on the device (CUDA events) or the host clock.

On a GPU the work is queued asynchronously, so a host clock around a stage measures the
queueing, not the work; CUDA events recorded into the stream measure the work itself and are
read back only when the caller calls :meth:`StageTimer.collect` (after a synchronising step it
does anyway, such as copying results to the host).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["StageTimer"]


class StageTimer:
    """Seconds spent in named stages, summed over calls.

    Parameters
    ----------
    device
        A torch device (or its name); CUDA devices are timed with events.
    """

    def __init__(self, device: Any = "cpu") -> None:
        self.cuda = str(device).startswith("cuda")
        self.seconds: dict[str, float] = defaultdict(float)
        self._pending: list[tuple[str, Any, Any]] = []

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the body of a ``with`` block as stage ``name``."""
        if not self.cuda:
            start = time.perf_counter()
            try:
                yield
            finally:
                self.seconds[name] += time.perf_counter() - start
            return
        import torch

        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        try:
            yield
        finally:
            end.record()
            self._pending.append((name, begin, end))

    def collect(self) -> dict[str, float]:
        """Add up the finished CUDA events (waits for them) and return the totals so far."""
        for name, begin, end in self._pending:
            end.synchronize()
            self.seconds[name] += begin.elapsed_time(end) / 1000.0
        self._pending.clear()
        return dict(self.seconds)

    def take(self) -> dict[str, float]:
        """The totals since the last call, then start again from zero."""
        totals = self.collect()
        self.seconds.clear()
        return totals
