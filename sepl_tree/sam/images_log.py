"""What each image's masks were made from: ``OUT/masks_made_from.jsonl``, so that a rerun of
``masks`` remakes the masks of an image that changed and keeps those of one that was only copied.

One JSON line per image whose masks a run wrote, ``{"id", "size", "mtime_ns", "sha1"}`` of the
image file; an id's last line wins, and a line cut short (a killed run) is no line. A rerun
takes an image whose size and modification time are those recorded as unchanged (one ``stat``);
another size is a change; otherwise it hashes the file: the same SHA-1 (a copy, ``cp`` without
``-p``, a ``touch``) keeps the masks and records the new time, another one makes them again (the
stale masks are removed before the run: ``sepl_tree.sam.run``). Hashing, not the change time
``run`` uses, because masks cost GPU-hours: moving a dataset to another disk must not remake
them. Masks from before this log (its first line) are kept and recorded as made from their image
as it is now; masks made since that no line accounts for are made again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sepl_tree.files import append_line, atomic_write_bytes
from sepl_tree.outputs import read_since_log, since_line

__all__ = ["IMAGES_LOG", "ImagesLog", "image_record", "judge", "remove_masks", "stat_of"]

#: The log of what each image's masks were made from, inside the output folder.
IMAGES_LOG = "masks_made_from.jsonl"

_CHUNK = 1 << 20
#: The fields of a record.
_FIELDS = ("size", "mtime_ns", "sha1")


def stat_of(path: Path) -> tuple[int, int] | None:
    """``(size, mtime_ns)`` of ``path`` (one ``stat``), or ``None`` when it is not there."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _sha1(path: Path) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def image_record(path: Path, stat: tuple[int, int] | None = None) -> dict[str, Any]:
    """The record of image ``path`` as it is now (``stat``: its :func:`stat_of`, if taken already)."""
    size, mtime = stat or stat_of(path) or (None, None)
    return {"size": size, "mtime_ns": mtime, "sha1": _sha1(path)}


def judge(path: Path, record: Mapping[str, Any] | None) -> tuple[str, dict[str, Any]]:
    """Whether image ``path`` holds the bytes its ``record`` was taken of (``None``: masks from
    before the log, taken as the same), by hashing it: ``("same" or "changed", its record now)``.
    ``OSError`` when the file cannot be read. (The cheap cases, the same size and time or another
    size, are settled by one ``stat`` before: ``sepl_tree.sam.run``.)
    """
    fresh = image_record(path)
    return ("same" if record is None or fresh["sha1"] == record.get("sha1") else "changed"), fresh


def remove_masks(source: Path) -> None:
    """Remove an image's masks, ``<id>.json`` or the ``<id>/`` folder (renamed to a hidden
    temporary name first, so that no reader sees a folder half removed)."""
    if source.is_dir() and not source.is_symlink():
        aside = source.with_name(f".{source.name}.{os.getpid()}.removed.tmp")
        os.replace(source, aside)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        source.unlink(missing_ok=True)


class ImagesLog:
    """``OUT/masks_made_from.jsonl``: read once, appended to as masks are written.

    Its first line, written when the file is made, says since when the folder keeps it
    (``{"since": ns}``, the file's own time then, on the clock the masks' times come from):
    masks made since that have no line were written by a run that was stopped before it could
    record them, so what they were made from is unknown; masks made before it are from before
    the log.
    """

    def __init__(self, out: Path) -> None:
        self.path = Path(out) / IMAGES_LOG
        self.lines = 0  # in the file, as :meth:`read` found it
        self.since: int | None = None

    def read(self) -> dict[str, dict[str, Any]]:
        """Each id's last whole record (no file: ``{}``); sets :attr:`since`."""
        records, self.since, self.lines = read_since_log(self.path, lambda e: {k: e[k] for k in _FIELDS})
        return records

    def start(self) -> None:
        """Make the file, with its first line, if it is not there (before any masks are written)."""
        with open(self.path, "ab+") as f:
            if not f.seek(0, os.SEEK_END):
                self.since = os.fstat(f.fileno()).st_mtime_ns
                f.write(since_line(self.since))

    def tidy(self, records: Mapping[str, Mapping[str, Any]]) -> None:
        """Rewrite the log as its first line and one line per record (atomically) when it holds
        more than twice as many lines (each copy of a dataset appends a line per image)."""
        if self.lines > 2 * len(records) + 100:
            head = b"" if self.since is None else since_line(self.since)
            text = "".join(json.dumps({"id": i, **r}) + "\n" for i, r in records.items())
            atomic_write_bytes(self.path, head + text.encode())
            self.lines = len(records) + bool(head)

    def note(self, image_id: str, record: Mapping[str, Any]) -> None:
        """Append ``image_id``'s record (one line, flushed at once)."""
        append_line(self.path, json.dumps({"id": image_id, **record}))


