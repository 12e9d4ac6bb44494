"""What each image's masks were made from: ``OUT/masks_made_from.jsonl``, so that a rerun of
``masks`` remakes the masks of an image that changed and keeps those of one that was only copied.

One JSON line per image whose masks a run wrote, ``{"id", "size", "mtime_ns", "sha1"}`` of the
image file; an id's last line wins, and a line cut short (a killed run) is no line. A rerun
takes an image whose size and modification time are those recorded as unchanged (one ``stat``);
otherwise it hashes the file: the same SHA-1 (a copy, ``cp`` without ``-p``, a ``touch``) keeps
the masks and records the new time, another one removes them and makes them again. Hashing, not
the change time ``run`` uses, because masks cost GPU-hours: moving a dataset to another disk
must not remake them. Masks from before this log are kept and recorded as made from their image
as it is now.
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

__all__ = ["IMAGES_LOG", "ImagesLog", "image_record", "remove_masks", "same_image", "stat_of"]

#: The log of what each image's masks were made from, inside the output folder.
IMAGES_LOG = "masks_made_from.jsonl"

_CHUNK = 1 << 20


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


def same_image(path: Path, record: Mapping[str, Any]) -> tuple[bool, dict[str, Any] | None]:
    """Whether image ``path`` holds what ``record`` was taken of, and the record to keep for it
    (``None``: ``record`` itself; else a new one, the same content with another time).

    Same size and modification time: the same (no read). Otherwise the SHA-1 decides.
    """
    now = stat_of(path)
    if now is not None and now == (record.get("size"), record.get("mtime_ns")):
        return True, None
    if now is None or now[0] != record.get("size"):
        return False, None
    fresh = image_record(path, now)
    return fresh["sha1"] == record.get("sha1"), fresh


def remove_masks(source: Path) -> None:
    """Remove an image's masks, ``<id>.json`` or the ``<id>/`` folder."""
    if source.is_dir() and not source.is_symlink():
        shutil.rmtree(source)
    else:
        source.unlink(missing_ok=True)


class ImagesLog:
    """``OUT/masks_made_from.jsonl``: read once, appended to as masks are written."""

    def __init__(self, out: Path) -> None:
        self.path = Path(out) / IMAGES_LOG

    def read(self) -> dict[str, dict[str, Any]]:
        """Each id's last whole record (no file: ``{}``)."""
        records: dict[str, dict[str, Any]] = {}
        try:
            with open(self.path, "rb") as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                        records[str(entry["id"])] = {k: entry[k] for k in ("size", "mtime_ns", "sha1")}
                    except (ValueError, TypeError, KeyError):
                        continue  # cut short by a killed run, or not ours
        except FileNotFoundError:
            pass
        return records

    def rewrite(self, records: Mapping[str, Mapping[str, Any]]) -> None:
        """Replace the log by one line per record (atomically)."""
        text = "".join(json.dumps({"id": i, **r}) + "\n" for i, r in records.items())
        atomic_write_bytes(self.path, text.encode())

    def note(self, image_id: str, record: Mapping[str, Any]) -> None:
        """Append ``image_id``'s record (one line, flushed at once)."""
        append_line(self.path, json.dumps({"id": image_id, **record}))
