"""Output folders: made for one set of settings, kept apart from the inputs, resumed safely.

A command that writes a folder of per-image outputs first *claims* it (:func:`claim_folder`):
the folder's manifest (``run.json``, ``convert.json``, ...) records the settings that decide
the outputs (strategy and parameters, reader, inputs, K, plugins, version). A rerun with the
same settings resumes: an output that is there and whole is reused. A folder made with other
settings, or holding outputs no manifest accounts for, is refused with one line naming what
differs, unless ``overwrite``, which removes the old outputs first, so the manifest always
describes the files beside it. Every output is written atomically (:mod:`sepl_tree.files`); an
empty or cut file (a full disk, a copy cut short) is not done.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from sepl_tree.errors import SeplError, one_line
from sepl_tree.files import PNG_SIGNATURE, atomic_write_bytes, read_json

__all__ = [
    "check_apart",
    "claim_folder",
    "describe_changes",
    "noting_a_stop",
    "output_done",
    "pending_ids",
    "plugin_fingerprints",
    "prepare_folder",
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


def _normal(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` as they read back from JSON (tuples become lists, paths strings)."""
    return json.loads(json.dumps(dict(settings), default=str))


def claim_folder(folder: Path, manifest: str, settings: Mapping[str, Any], overwrite: bool,
                 outputs: Callable[[Path], Iterable[Path]], option: str = "--out") -> None:
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
    """
    prepare_folder(folder, option)
    path = folder / manifest
    settings = _normal(settings)
    previous = read_json(path).get("settings") if path.is_file() else None
    if overwrite:
        for output in list(outputs(folder)):
            output.unlink(missing_ok=True)
    elif previous is None:  # (a resume, same settings, lists nothing: 100k paths are seconds and 40 MiB)
        names = [p.name for p in outputs(folder)]
        if names:
            raise SeplError(f"{folder}: holds {len(names)} output(s) (e.g. {min(names)}) but no {manifest} "
                            f"saying how they were made; use --overwrite to replace them, or another {option}")
    elif previous != settings:
        raise SeplError(f"{folder}: made with other settings ({describe_changes(previous, settings)}); "
                        f"use --overwrite to replace its outputs, or another {option}")
    write_status(folder, manifest, settings, "running")


def write_status(folder: Path, manifest: str, settings: Mapping[str, Any], status: str, **extra: Any) -> None:
    """Write ``folder/manifest`` as ``{"settings", "status", **extra}`` (``running``, ``finished``, ``stopped``)."""
    doc = {"settings": _normal(settings), "status": status, **extra}
    atomic_write_bytes(folder / manifest, json.dumps(doc, indent=2, default=str).encode())


@contextlib.contextmanager
def noting_a_stop(folder: Path, manifest: str, settings: Mapping[str, Any]) -> Iterator[None]:
    """If the block raises (an error, Ctrl-C), the manifest says ``stopped`` and why, not ``running``.

    The outputs written before the stop are whole, and a rerun with the same settings resumes them.
    """
    try:
        yield
    except BaseException as exc:
        why = "interrupted" if isinstance(exc, KeyboardInterrupt) else one_line(exc)
        with contextlib.suppress(Exception):  # the error the user sees is the one that stopped the run
            write_status(folder, manifest, settings, "stopped", error=why)
        raise
