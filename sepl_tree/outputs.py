"""Output folders: made for one set of settings, kept apart from the inputs, resumed safely.

A command that writes a folder of per-image outputs first *claims* it (:func:`claim_folder`):
the folder's manifest (``run.json``, ``convert.json``, ...) records the settings that decide
the outputs (strategy and parameters, reader, inputs, K, plugins, version). A rerun with the
same settings resumes: an output that is there and whole is reused. A folder made with other
settings, or holding outputs no manifest accounts for, is refused with one line naming what
differs, unless ``overwrite``, which removes the old outputs first, so the manifest always
describes the files beside it. Every output is written atomically (:mod:`sepl_tree.files`); an
empty or cut file (a full disk, a copy cut short) is not done.

An output is also made again when its inputs changed after it was made (:func:`refresh_made_from`).
Each folder keeps :data:`MADE_FROM`, the change times (``ctime``) of the input files each output
was made from (:class:`MadeFrom`): an input written, replaced or copied in since (``cp -p`` and
``rsync -a`` keep a source's modification time, never its change time) makes its outputs again,
as does an output the log does not account for. In a folder from before the log, make's rule
decides (made again when an input was written or changed after it), and the outputs it keeps are
recorded.

While a command writes a folder it holds :data:`LOCK` there (an exclusive ``flock``, let go when the
command ends, however it ends; the file is removed but after a ``kill -9``, when the next command
takes it over): a second command claiming the folder meanwhile, from another
process, is refused in one line. Without it, a second run with ``--overwrite`` and other settings
would clear the folder while the first went on writing outputs of its own settings into it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from sepl_tree.errors import SeplError, one_line
from sepl_tree.files import PNG_SIGNATURE, atomic_write_bytes, mtime_ns, read_json

__all__ = [
    "CHANGED",
    "LOCK",
    "MADE_FROM",
    "MadeFrom",
    "UNRECORDED",
    "check_apart",
    "claim_folder",
    "describe_changes",
    "is_out_of_date",
    "noting_a_stop",
    "output_done",
    "pending_ids",
    "plugin_fingerprints",
    "prepare_folder",
    "read_since_log",
    "refresh_made_from",
    "release_folders",
    "since_line",
    "write_status",
]

_PNG_END = b"IEND\xaeB`\x82"  # a whole PNG ends with its IEND chunk (its CRC included)


def output_done(path: Path) -> bool:
    """Whether ``path`` holds a finished output: a whole PNG (signature and end chunk), or, for
    other files, a non-empty one."""
    try:
        st = os.stat(path)  # one stat: at 100k ids a resume makes hundreds of thousands of them
        size = st.st_size
        if not stat.S_ISREG(st.st_mode) or size == 0:
            return False
        if path.suffix.lower() != ".png":
            return True
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(max(size - 8, 0))
            return head == PNG_SIGNATURE and f.read(8) == _PNG_END
    except OSError:
        return False


def pending_ids(ids: Iterable[str], done: Callable[[str], bool], overwrite: bool = False) -> list[str]:
    """The ids still to do, in order: all of them with ``overwrite``, else those not ``done``.

    >>> pending_ids(["a", "b", "c"], lambda i: i == "b")
    ['a', 'c']
    """
    return list(ids) if overwrite else [i for i in ids if not done(i)]


def check_apart(out: Path, option: str, inputs: Mapping[str, Path | None]) -> None:
    """Refuse an output folder that is, holds or lies inside one of the ``inputs`` (option -> path).

    Outputs written there could overwrite or be mistaken for inputs.
    """
    target = Path(out).resolve()
    for name, path in inputs.items():
        if path is None:
            continue
        source = Path(path).resolve()
        if target == source:
            how = "is"
        elif target.is_relative_to(source):
            how = "is inside"
        elif source.is_relative_to(target):
            how = "holds"
        else:
            continue
        raise SeplError(f"{option} {out} {how} {name} {path}: outputs could overwrite the inputs; "
                        f"choose another {option}")


def prepare_folder(folder: Path, option: str = "--out") -> None:
    """Create ``folder`` (and its parents) for writing; one clear line if it cannot be."""
    if folder.exists() and not folder.is_dir():
        raise SeplError(f"{option} {folder}: is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise SeplError(f"{option} {folder}: a parent of it is a file, not a folder") from None
    except OSError as exc:
        raise SeplError(f"{option} {folder}: cannot create the folder ({exc.strerror or exc})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SeplError(f"{option} {folder}: the folder is not writable")


def plugin_fingerprints(plugins: Iterable[str], sources: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """What the plugins that can change the outputs are, so that a changed plugin is another setting.

    Each ``--plugin``: its path or module name and the SHA-1 of its file (a module's is the file
    it is imported from, when it has one). ``sources`` (e.g. ``{"strategy biggest-only": "entry
    point biggest_only (biggest-only 0.3.1)"}``): the installed plugins (entry points) that
    provide what the run uses, with their distribution and version, and the SHA-1 of the module
    the entry point names (an editable install's edits change no version). Only that one file is
    read: a plugin whose rule lives in other modules of its package is told apart by its version.
    """
    out: list[dict[str, Any]] = []
    for spec in plugins:
        path = Path(spec)
        if not path.is_file():
            path = Path(_module_file(spec) or spec)
        out.append({"plugin": spec, "sha1": _sha1(path)})
    for provides, source in (sources or {}).items():
        if source.startswith("entry point "):
            module = _entry_point_module(source)
            path = Path(_module_file(module)) if module and _module_file(module) else None
            out.append({"plugin": source, "provides": provides, "sha1": _sha1(path) if path else None})
    return out


def _sha1(path: Path) -> str | None:
    return hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else None


#: How the plugin host names an entry point (see ``sepl_tree.plugins``): its name, distribution, version.
_ENTRY_POINT = re.compile(r"^entry point (?P<name>.+) \((?P<dist>\S+) (?P<version>\S+)\)$")


def _entry_point_module(source: str) -> str | None:
    """The module the ``sepl_tree`` entry point of ``source`` (``entry point NAME (DIST VERSION)``)
    loads, from that distribution and version (two may list one name)."""
    import importlib.metadata

    from sepl_tree import PROJECT_NAME

    found = _ENTRY_POINT.match(source)
    if found is None:
        return None
    for dist in importlib.metadata.distributions():
        if (dist.metadata["name"], dist.version) != (found["dist"], found["version"]):
            continue
        for ep in dist.entry_points:
            if ep.group == PROJECT_NAME and ep.name == found["name"]:
                return ep.module
    return None


def _module_file(name: str) -> str | None:
    """The file module ``name`` is imported from (``None`` for a built-in or namespace module)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    return spec.origin if spec is not None and spec.has_location else None


def _flat(doc: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(doc, Mapping):
        out: dict[str, Any] = {}
        for key, value in doc.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): doc}


def describe_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """The settings that differ, as ``name old -> new`` pairs (nested keys dotted).

    >>> describe_changes({"strategy": "threshold", "params": {"t2": 0.85}}, {"strategy": "official", "params": {}})
    "params.t2 0.85 -> (none), strategy 'threshold' -> 'official'"
    """
    a, b = _flat(old), _flat(new)
    missing = object()
    parts = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key, missing), b.get(key, missing)
        if x != y:
            parts.append(f"{key} {'(none)' if x is missing else repr(x)} -> {'(none)' if y is missing else repr(y)}")
    return ", ".join(parts)


def _bound(settings: Any, free: Iterable[str]) -> Any:
    """``settings`` less the ``free`` ones (a manifest's settings that are no mapping: as they are)."""
    free = set(free)
    return {k: v for k, v in settings.items() if k not in free} if isinstance(settings, Mapping) else settings


def _normal(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` as they read back from JSON (tuples become lists, paths strings)."""
    return json.loads(json.dumps(dict(settings), default=str))


#: The lock file a command holds in each folder it writes (see the module's text).
LOCK = ".sepl-tree.lock"
_held: dict[Path, tuple[Path, int]] = {}  # folder -> (its lock file, descriptor), for those this process holds


def _hold(folder: Path, option: str) -> None:
    """Hold ``folder``'s :data:`LOCK` until :func:`release_folders`, or refuse in one line if
    another process holds it. A folder this process already holds is held once; a file system
    without ``flock`` is written without the lock.

    The lock file is removed when let go of, so a taker checks that the file it locked is still
    the one at the path (else it locked a file just removed, and tries again)."""
    key = folder.resolve()
    if key in _held:
        return
    try:
        import fcntl
    except ImportError:  # (not POSIX)
        return
    path = folder / LOCK
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:  # (a folder that refuses files: the manifest's write names the problem)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                by = f" (process {holder})" if holder.isdigit() else ""
                raise SeplError(f"{folder}: another sepl-tree command is writing this folder{by}; wait for "
                                f"it to end, or use another {option}") from None
            return  # (ENOLCK, EOPNOTSUPP: a file system without locks)
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _held[key] = (path, fd)


def release_folders() -> None:
    """Let go of every folder this process holds (:func:`claim_folder`), removing its lock file;
    the CLI does this when a command ends."""
    while _held:
        path, fd = _held.popitem()[1]
        with contextlib.suppress(OSError):
            path.unlink()  # (while still locked: see _hold)
        os.close(fd)


def claim_folder(folder: Path, manifest: str, settings: Mapping[str, Any], overwrite: bool,
                 outputs: Callable[[Path], Iterable[Path]], option: str = "--out", free: Iterable[str] = ()) -> None:
    """Make ``folder`` the output folder of ``settings``, or refuse it in one line.

    Parameters
    ----------
    folder
        The output folder (created if needed).
    manifest
        The file in ``folder`` that records the settings (``{"settings": ...}``), e.g. ``run.json``.
    settings
        What decides the outputs (JSON-ready).
    overwrite
        Take the folder whatever it holds: its old outputs and manifest are removed first.
    outputs
        The output files a folder holds (e.g. its ``*.png``): the ones removed by ``overwrite``,
        and the ones that make a folder without a manifest someone else's.
    free
        Top-level settings a rerun may change without being refused (recorded as the rerun has
        them): those whose effect on an output its inputs' record already keys.

    The folder is held (:data:`LOCK`) until :func:`release_folders`: a claim of it by another
    process meanwhile is refused.
    """
    prepare_folder(folder, option)
    _hold(folder, option)
    path = folder / manifest
    settings = _normal(settings)
    previous = read_json(path).get("settings") if path.is_file() else None
    if overwrite:
        for output in list(outputs(folder)):
            output.unlink(missing_ok=True)
        (folder / MADE_FROM).unlink(missing_ok=True)
    elif previous is None:  # (a resume, same settings, lists nothing: 100k paths are seconds and 40 MiB)
        names = [p.name for p in outputs(folder)]
        if names:
            raise SeplError(f"{folder}: holds {len(names)} output(s) (e.g. {min(names)}) but no {manifest} "
                            f"saying how they were made; use --overwrite to replace them, or another {option}")
    elif _bound(previous, free) != _bound(settings, free):
        raise SeplError(f"{folder}: made with other settings "
                        f"({describe_changes(_bound(previous, free), _bound(settings, free))}); "
                        f"use --overwrite to replace its outputs, or another {option}")
    write_status(folder, manifest, settings, "running")


def write_status(folder: Path, manifest: str, settings: Mapping[str, Any], status: str, **extra: Any) -> None:
    """Write ``folder/manifest`` as ``{"settings", "status", **extra}`` (``running``, ``finished``, ``stopped``)."""
    doc = {"settings": _normal(settings), "status": status, **extra}
    atomic_write_bytes(folder / manifest, json.dumps(doc, indent=2, default=str).encode())


@contextlib.contextmanager
def noting_a_stop(folder: Path, manifest: str, settings: Mapping[str, Any],
                  so_far: Callable[[], Mapping[str, Any]] | None = None) -> Iterator[None]:
    """If the block raises (an error, Ctrl-C), the manifest says ``stopped`` and why, not ``running``,
    with what ``so_far()`` returns then (e.g. the counts up to the stop).

    The outputs written before the stop are whole, and a rerun with the same settings resumes them.
    """
    try:
        yield
    except BaseException as exc:
        why = "interrupted" if isinstance(exc, KeyboardInterrupt) else one_line(exc)
        with contextlib.suppress(Exception):  # the error the user sees is the one that stopped the run
            write_status(folder, manifest, settings, "stopped", error=why, **(so_far() if so_far else {}))
        raise


#: The file of an output folder that records what each output was made from (:class:`MadeFrom`).
MADE_FROM = "made_from.jsonl"

#: A :class:`MadeFrom` log is rewritten, its old lines dropped, when it holds more than this many
#: lines per image it records (a rerun after regenerated inputs appends a line per output made again).
_LINES_PER_IMAGE = 2

Stamps = tuple[tuple[int, int], ...]  # an image's input files, (mtime_ns, ctime_ns) each


def _record(stamps: Stamps) -> tuple[int, ...]:
    """What :class:`MadeFrom` records of an image's input stamps: their change times (``cp -p``
    and ``rsync -a`` set a copy's modification time back, never its change time)."""
    return tuple(ctime for _, ctime in stamps)


class MadeFrom:
    """What each output of a folder was made from: the change times (ns) of its input files,
    taken before the run read them (:meth:`sepl_tree.inputs.InputReader.input_stamps`).

    One JSON line per output (``{"id": ..., "inputs": [...]}``), written before the run makes it
    (:func:`refresh_made_from`); an id's last line wins, and a line cut short is no line. The
    first line, written when the file is made, says since when the folder keeps it
    (``{"since": ns}``, the file's own time then): an output made since that has no line was not
    made by a run that kept the log, while one made before it comes from before the log.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as d:
    ...     with MadeFrom(Path(d)) as log:
    ...         log.note("a", ((1, 2),)); log.note("b", ((3, 4),)); log.note("a", ((5, 6), (7, 8)))
    ...     again = MadeFrom(Path(d))
    ...     again.read(), again.since > 0
    ({'a': (6, 8), 'b': (4,)}, True)
    """

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / MADE_FROM
        self._file: Any = None
        self.lines = 0  # in the file, as :meth:`read` found it
        self.since: int | None = None  # no file (or one without its first line): every output is from before it

    def read(self) -> dict[str, tuple[int, ...]]:
        """Each id's recorded change times (no file: ``{}``); sets :attr:`since`."""
        records, self.since, self.lines = read_since_log(self.path, lambda e: tuple(int(t) for t in e["inputs"]))
        return records

    def tidy(self, records: Mapping[str, tuple[int, ...]]) -> None:
        """Rewrite the file with ``records`` alone (what :meth:`read` gave), its first line kept,
        when most of its lines are old ones."""
        if self.lines > _LINES_PER_IMAGE * len(records) + 100:
            head = b"" if self.since is None else since_line(self.since)
            atomic_write_bytes(self.path, head + b"".join(_line(i, t) for i, t in records.items()))
            self.lines = len(records) + bool(head)

    def open(self) -> MadeFrom:
        """Create the file, with its first line, if it is not there, and keep it open for :meth:`note`."""
        if self._file is None:
            self._file = open(self.path, "ab+")
            end = self._file.seek(0, os.SEEK_END)
            if not end:
                self.since = os.fstat(self._file.fileno()).st_mtime_ns  # the clock the outputs' times come from
                self._file.write(since_line(self.since))
                self._file.flush()
            else:
                self._file.seek(end - 1)
                if self._file.read(1) != b"\n":  # a line cut short: end it, else the next one is lost in it
                    self._file.write(b"\n")
        return self

    def note(self, image_id: str, stamps: Stamps) -> None:
        """Record that ``image_id``'s output is made from inputs of ``stamps`` (written at :meth:`close`)."""
        self.open()._file.write(_line(image_id, _record(stamps)))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> MadeFrom:
        return self.open()

    def __exit__(self, *_: object) -> None:
        self.close()


def read_since_log(path: Path, value: Callable[[dict[str, Any]], Any]) -> tuple[dict[str, Any], int | None, int]:
    """A log of one JSON line per id (the last wins) after a first ``{"since": ns}`` line, as
    :class:`MadeFrom` and ``masks``' own log keep them: ``(id -> value(entry), since or None,
    lines)``; a line cut short by a killed run, or not ours, is no line; no file, ``({}, None, 0)``."""
    records: dict[str, Any] = {}
    since, lines = None, 0
    try:
        with open(path, "rb") as f:
            for line in f:
                lines += 1
                try:
                    entry = json.loads(line)
                    if "since" in entry:
                        since = int(entry["since"]) if since is None else since
                    else:
                        records[str(entry["id"])] = value(entry)
                except (ValueError, TypeError, KeyError, OverflowError, AttributeError):
                    continue
    except FileNotFoundError:
        pass
    return records, since, lines


def since_line(since: int) -> bytes:
    """The first line of a :func:`read_since_log` log."""
    return (json.dumps({"since": since}) + "\n").encode()


def _line(image_id: str, times: Iterable[int]) -> bytes:
    return (json.dumps({"id": image_id, "inputs": list(times)}) + "\n").encode()


#: Why an output is made again (:func:`is_out_of_date`).
CHANGED, UNRECORDED = "changed", "unrecorded"


def is_out_of_date(made: int, recorded: tuple[int, ...] | None, stamps: Stamps, since: int | None) -> str | None:
    """Why an output whose modification time is ``made`` (ns) is out of date, its inputs being
    ``stamps`` now, or ``None``: :data:`CHANGED` when its ``recorded`` change times are not
    theirs, or, with no record, when it is from before the folder's log (``since``; ``None``: no
    log) and one of its inputs was written or changed after it (make's rule, on the later of each
    input's times); :data:`UNRECORDED` when it was made under the log and has no record (no run
    that kept the log made it: what it was made from is unknown).

    >>> now = ((50, 55), (60, 65))
    >>> is_out_of_date(100, (55, 65), now, 10), is_out_of_date(100, (55, 64), now, 10)
    (None, 'changed')
    >>> is_out_of_date(100, None, now, 90), is_out_of_date(100, None, now, 110), is_out_of_date(100, None, now, None)
    ('unrecorded', None, None)
    >>> is_out_of_date(100, None, ((50, 150),), None)  # (a copy with an old time, cp -p, after the output)
    'changed'
    """
    if recorded is not None:
        return None if recorded == _record(stamps) else CHANGED
    if since is not None and made >= since:
        return UNRECORDED
    return CHANGED if any(max(mtime, ctime) > made for mtime, ctime in stamps) else None


def refresh_made_from(ids: Iterable[str], stamps: Mapping[str, Stamps], folders: Sequence[Path],
                      file_name: Callable[[str], str] = lambda i: f"{i}.png") -> dict[str, str]:
    """Before a run: judge each output ``<folder>/<file_name(id)>`` against its folder's log, remove
    those out of date, and record what every output the run will make is made from.

    Returns the ids (in order) whose outputs were out of date, each with why
    (:func:`is_out_of_date`; an id out of date in one folder is made again in all). Each of them,
    and each id with no output yet, is recorded as made from its ``stamps`` (taken before any
    input is read): an output the run then writes was made from inputs read after them, so if an
    input changed meanwhile its record no longer matches and the next run makes it again; and a
    run stopped at any point (an error, Ctrl-C, ``kill -9``) leaves each output it wrote with its
    record, so nothing it finished is made again. The outputs from before a folder's log that
    make's rule keeps are recorded as made from their inputs as they are now.
    """
    ids = list(ids)
    why: dict[str, str] = {}
    logs = [MadeFrom(folder) for folder in folders]
    to_note: list[list[str]] = []
    for folder, log in zip(folders, logs):
        records = log.read()
        log.tidy(records)
        note = []
        for image_id in ids:
            made = mtime_ns(folder / file_name(image_id))
            recorded = records.get(image_id)
            if made is None:
                if recorded != _record(stamps[image_id]):
                    note.append(image_id)
            elif (reason := is_out_of_date(made, recorded, stamps[image_id], log.since)) is not None:
                why.setdefault(image_id, reason)
            elif recorded is None:
                note.append(image_id)  # from before the log, kept by make's rule
        to_note.append(note)
    for folder, log, note in zip(folders, logs, to_note):
        with log:
            for image_id in [i for i in ids if i in why] + note:
                if image_id in why:
                    (folder / file_name(image_id)).unlink(missing_ok=True)  # never left beside a record it does not match
                log.note(image_id, stamps[image_id])
    return {i: why[i] for i in ids if i in why}
