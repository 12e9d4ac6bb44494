"""Output folders: which images are done (resume) and where each output goes.

Every output is written atomically (:mod:`sepl_tree.files`), so a file that exists was written
whole; an empty file (a disk that filled up, a copy cut short) is not done.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["output_done", "pending_ids"]


def output_done(path: Path) -> bool:
    """Whether ``path`` holds a finished output: a non-empty file."""
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


def pending_ids(ids: Iterable[str], done: Callable[[str], bool], overwrite: bool = False) -> list[str]:
    """The ids still to do, in order: all of them with ``overwrite``, else those not ``done``.

    >>> pending_ids(["a", "b", "c"], lambda i: i == "b")
    ['a', 'c']
    """
    return list(ids) if overwrite else [i for i in ids if not done(i)]
