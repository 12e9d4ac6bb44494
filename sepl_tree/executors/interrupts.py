"""Ctrl-C held back while an executor is inside machinery that an interrupt would leave half-way.

The process pool holds it while it creates, feeds, waits on and stops its pool; the Ray
executor while Ray starts and stops (see :mod:`sepl_tree.executors.pool` and
:mod:`sepl_tree.executors.ray` for why each needs it).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

__all__ = ["HeldInterrupts"]


class HeldInterrupts:
    """While :attr:`held`, a SIGINT is noted instead of raised; :meth:`check` raises it.

    Only where SIGINT raises :class:`KeyboardInterrupt` (Python's default handler) and in the
    main thread: elsewhere SIGINT is left as it is (ignored, or someone else's handler).
    """

    def __init__(self) -> None:
        self.held = True
        self.pending = False
        self._installed = False
        self._exited = False

    def __enter__(self) -> HeldInterrupts:
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *_: object) -> None:
        self._exited = True  # a SIGINT that still reaches _handle raises, as Python's own handler would
        if self._installed:
            try:
                signal.signal(signal.SIGINT, signal.default_int_handler)
            except ValueError:  # closed in another thread (the GC finalising a generator): only
                pass  # the main thread may set handlers, so this one stays, and raises (above)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if not self.held or self._exited:
            raise KeyboardInterrupt
        self.pending = True

    def check(self) -> None:
        """Raise the interrupt held back, if any."""
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt
