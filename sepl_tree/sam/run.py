"""A ``masks`` run over a folder: checks before anything is written, resume, logs and the summary.

Output folders hold exactly what ``sepl-tree run --masks`` reads (``<id>.json`` or ``<id>/``),
plus ``errors.log`` (``id<TAB>message``, one line per failed image), ``masks_run.jsonl``
(one JSON line when a run starts, one when it ends) and ``masks_made_from.jsonl`` (what each
image's masks were made from, :mod:`sepl_tree.sam.images_log`). A rerun skips finished images
whose image is unchanged (it remakes the others) and, once
the folder holds masks, is refused when the model type, the checkpoint, the generator settings
or the precision differ from the run that started the folder; the engine, ``batch_images``, the
point batch, the device and the executor do not change the masks and may differ.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sepl_tree.errors import InputError, SeplError
from sepl_tree.files import append_line, atomic_write_bytes, remove_stale_temporaries
from sepl_tree.masks import find_mask_source
from sepl_tree.outputs import prepare_folder
from sepl_tree.provenance import MASKS_RUN_LOG, last_masks_run
from sepl_tree.images import find_images
from sepl_tree.sam.job import (
    ENGINES,
    GPU_BATCH_IMAGES,
    PRECISIONS,
    MaskJob,
    available_cores,
    check_checkpoint,
    default_torch_threads,
    resolve_device,
)
from sepl_tree.sam.images_log import IMAGES_LOG, ImagesLog, image_record, judge, remove_masks, stat_of
from sepl_tree.sam.models import family_of, require_family
from sepl_tree.sam.presets import check_settings, generator_settings
from sepl_tree.sam.workers import MaskResult
from sepl_tree.sam.writing import FORMATS

__all__ = [
    "ERROR_LOG",
    "RUN_LOG",
    "MaskRequest",
    "MaskRun",
    "MaskRunSummary",
    "append_error",
    "append_run_log",
    "check_same_settings",
    "plan_masks_run",
    "start_error_log",
]

#: The per-image error log inside the output folder.
ERROR_LOG = "errors.log"
#: One JSON line per run start and end (model, settings, counts) inside the output folder.
RUN_LOG = MASKS_RUN_LOG

def check_same_settings(out: Path, model_type: str, settings: Mapping[str, Any], precision: str = "fp32",
                        checkpoint: Path | None = None) -> None:
    """Refuse to resume into ``out`` with another model type, checkpoint, generator settings or precision.

    A folder whose masks came from two settings would be a silent mix; the previous run's
    choice is read from ``out/masks_run.jsonl`` (a log without ``precision`` was fp32). The
    engine, ``batch_images`` and the point batch do not change the masks and may differ.
    """
    previous = last_masks_run(out)
    if previous is None:
        return
    changed = {k: (previous["settings"].get(k), v) for k, v in settings.items() if previous["settings"].get(k) != v}
    if previous.get("model_type") != model_type:
        changed["model_type"] = (previous.get("model_type"), model_type)
    if previous.get("precision", "fp32") != precision:
        changed["precision"] = (previous.get("precision", "fp32"), precision)
    if checkpoint is not None and previous.get("checkpoint") not in (None, str(checkpoint)):
        changed["checkpoint"] = (previous.get("checkpoint"), str(checkpoint))
    if changed:
        diff = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))
        raise InputError(out / RUN_LOG, f"this folder's masks were made with other settings ({diff}); "
                                        "use another --out, or the same settings to resume")


def holds_masks(out: Path) -> bool:
    """Whether ``out`` holds the masks of any image (an ``<id>.json`` file or an ``<id>/`` folder),
    whatever images this run is given."""
    try:
        with os.scandir(out) as entries:
            return any(not e.name.startswith(".") and (e.name.endswith(".json") or e.is_dir()) for e in entries)
    except (FileNotFoundError, NotADirectoryError):
        return False


def append_run_log(out: Path, entry: Mapping[str, Any]) -> None:
    """Append one JSON line to ``out/masks_run.jsonl``."""
    append_line(out / RUN_LOG, json.dumps(dict(entry), default=str))


def mask_sources(out: Path, ids: Iterable[str]) -> dict[str, Path | None]:
    """Each id's finished output in ``out``: ``<id>.json``, ``<id>/`` or ``None`` (one look per id)."""
    return {i: find_mask_source(out, i) for i in ids}


def start_error_log(out: Path, retried: Iterable[str]) -> Path:
    """Drop the lines of ids about to be retried from ``out/errors.log``; return its path.

    The log then lists exactly the images whose latest attempt failed.
    """
    path = out / ERROR_LOG
    if path.is_file():
        retry = set(retried)
        kept = [line for line in path.read_text().splitlines(keepends=True) if line.split("\t")[0] not in retry]
        atomic_write_bytes(path, "".join(kept).encode())
    return path


def append_error(log: Path, result: MaskResult) -> None:
    """Append ``id<TAB>message`` for a failed result (one line, flushed at once)."""
    append_line(log, f"{result.image_id}\t{result.error}")


@dataclass
class MaskRunSummary:
    """Counts and timings of one ``masks`` run."""

    total: int = 0
    skipped: int = 0
    done: int = 0
    failed: int = 0
    masks: int = 0
    seconds: float = 0.0
    stages: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, result: MaskResult) -> None:
        if result.error is None:
            self.done += 1
            self.masks += result.n_masks
        else:
            self.failed += 1
        for name, seconds in result.stages.items():
            self.stages[name] += seconds

    @property
    def images_per_second(self) -> float:
        return (self.done + self.failed) / self.seconds if self.seconds > 0 else 0.0

    def rows(self) -> list[tuple[str, str]]:
        """``(name, value)`` rows for the summary table."""
        per_image = self.masks / self.done if self.done else 0.0
        return [
            ("images", str(self.total)),
            ("already done (skipped)", str(self.skipped)),
            ("written", str(self.done)),
            ("failed", str(self.failed)),
            ("masks", f"{self.masks} ({per_image:.1f} per image)"),
            ("time", f"{self.seconds:.1f} s"),
            ("images/s", f"{self.images_per_second:.2f}"),
        ]

    def log_entry(self) -> dict[str, Any]:
        """The numbers for the run log's closing line: counts, images/s and seconds per stage."""
        return {**dict(self.rows()), "images_per_s": round(self.images_per_second, 4),
                "seconds": round(self.seconds, 3),
                "stage_seconds": {k: round(v, 3) for k, v in sorted(self.stages.items())}}


@dataclass(frozen=True)
class MaskRequest:
    """What the user asked for (the ``masks`` command's options, parsed)."""

    images: Path
    checkpoint: Path
    out: Path
    model_type: str = "vit_h"
    fmt: str = "rle"
    device: str = "auto"
    ids: list[str] | None = None
    preset: str = "paper"
    params: Mapping[str, Any] = field(default_factory=dict)
    engine: str = "fast"
    precision: str = "fp32"
    batch_images: int | None = None
    point_batch: int | None = None
    workers: int = 1
    threads: int | None = None
    executor: str = "process"
    plugins: tuple[str, ...] = ()
    #: Remake the masks of changed images even when so many changed that --images looks wrong.
    remake_changed: bool = False


@dataclass
class MaskRun:
    """A planned run: the job, the ids still to do, the summary and the logs it appends to."""

    job: MaskJob
    todo: list[str]
    summary: MaskRunSummary
    log: Path
    notes: list[str] = field(default_factory=list)
    #: Each id to do: its image's (size, mtime) before the run read it (:mod:`sepl_tree.sam.images_log`).
    stats: dict[str, tuple[int, int] | None] = field(default_factory=dict)

    def add(self, result: MaskResult) -> MaskResult:
        """Count a result and return it as counted: a success is recorded in
        ``masks_made_from.jsonl``, unless its image changed while it was read (its new masks are
        then removed, and it fails); a failure goes to ``errors.log``."""
        image_id = result.image_id
        if result.error is None:
            path, written = self.job.images[image_id], self.job.out / (image_id if self.job.fmt == "png" else
                                                                      f"{image_id}.json")
            record = self._made_from(path, self.stats.get(image_id), result.sha1)
            if record is not None:
                ImagesLog(self.job.out).note(image_id, record)
            else:
                with contextlib.suppress(OSError):  # (then no line accounts for them: the next run remakes them)
                    remove_masks(written)
                result = dataclasses.replace(result, n_masks=0, error=f"{path}: the image changed while its masks "
                                             "were made; they were removed (rerun to make them again)")
        self.summary.add(result)
        if result.error is not None:
            append_error(self.log, result)
        return result

    @staticmethod
    def _made_from(path: Path, before: tuple[int, int] | None, sha1: str | None) -> dict[str, Any] | None:
        """The record of the image ``path`` whose masks were just made from bytes of SHA-1 ``sha1``
        (``None``: the worker did not say), its ``(size, mtime)`` ``before`` the run read it; or
        ``None`` when it no longer holds those bytes (or cannot be read). The same size and time
        as before: those bytes; another time: hashed again, so that a ``touch`` or a copy of the
        same bytes while its masks were made keeps them."""
        now = stat_of(path)
        if now is None:
            return None
        if sha1 is not None and now == before:
            return {"size": now[0], "mtime_ns": now[1], "sha1": sha1}
        try:
            record = image_record(path, now)
        except OSError:
            return None
        same = record["sha1"] == sha1 if sha1 is not None else now == before
        return record if same else None

    def finish(self, seconds: float, execution: Mapping[str, Any] | None = None) -> None:
        """Close the run log with the counts, images/s, seconds per stage and how it was executed
        (:func:`sepl_tree.executors.record.ExecutionRecord.as_json`)."""
        self.summary.seconds = seconds
        append_run_log(self.job.out, {"finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                                      **self.summary.log_entry(), "execution": dict(execution or {})})


#: More changed images than this share of those with masks (and than :data:`CHANGED_FEW`) is
#: taken for a wrong ``--images`` (another folder with the same names), and refused.
CHANGED_SHARE = 0.5
CHANGED_FEW = 5
#: Threads hashing images (file reads: they wait on the disk, not the GIL).
HASH_THREADS = 8


def _judge_finished(out: Path, found: Mapping[str, Path], sources: Mapping[str, Path | None],
                    on_hashing: Callable[[int], None] | None) -> tuple[list[str], list[str], dict[str, str]]:
    """Judge the ids with masks in ``out`` (``sources``) against ``masks_made_from.jsonl``
    (:class:`~sepl_tree.sam.images_log.ImagesLog`; nothing is removed here): those whose image
    changed since their masks were made (:func:`~sepl_tree.sam.images_log.judge`), those whose
    masks no line accounts for though they were made under the log (a run stopped between
    writing and recording them), and those whose image could not be read (id -> why: their
    masks are kept). A new time of the same bytes, and an image whose masks are from before the
    log, are recorded as they are found; ``on_hashing`` hears how many images are to be hashed,
    before they are. Makes the log, with its first line, if it is not there."""
    from concurrent.futures import ThreadPoolExecutor

    log = ImagesLog(out)
    records = log.read()
    log.tidy(records)
    since = log.since
    changed, unrecorded, to_hash = [], [], []
    for image_id, source in sources.items():  # one stat each settles most: the same size and time, or another size
        if source is None:
            continue
        record, now = records.get(image_id), stat_of(found[image_id])
        if record is None and since is not None and (made := stat_of(source)) is not None and made[1] >= since:
            unrecorded.append(image_id)
            continue
        if record is not None and now is not None:
            if now == (record.get("size"), record.get("mtime_ns")):
                continue
            if now[0] != record.get("size"):
                changed.append(image_id)
                continue
        to_hash.append(image_id)  # from before the log, no stat, or the same size with another time
    log.start()
    unreadable: dict[str, str] = {}
    if to_hash and on_hashing is not None:
        on_hashing(len(to_hash))

    def judged(image_id: str) -> tuple[str, dict[str, Any]] | OSError:
        try:
            return judge(found[image_id], records.get(image_id))
        except OSError as exc:
            return exc

    with ThreadPoolExecutor(HASH_THREADS) as pool:
        for image_id, verdict in zip(to_hash, pool.map(judged, to_hash)):
            if isinstance(verdict, OSError):
                unreadable[image_id] = verdict.strerror or str(verdict)
            elif verdict[0] == "changed":
                changed.append(image_id)
            else:
                log.note(image_id, verdict[1])  # (as it goes: a stopped check keeps what it hashed)
    order = {i: n for n, i in enumerate(sources)}
    return sorted(changed, key=order.__getitem__), unrecorded, unreadable


def _remove_out_of_date(sources: dict[str, Path | None], ids: list[str]) -> None:
    """Remove the masks of ``ids`` (out of date: made again by this run)."""
    for image_id in ids:
        source = sources[image_id]
        try:
            remove_masks(source)
        except OSError as exc:
            raise InputError(source, f"cannot remove these out-of-date masks ({exc.strerror or exc})") from None
        sources[image_id] = None


def plan_masks_run(host: Any, request: MaskRequest, versions: Mapping[str, str] | None = None,
                   on_images: Callable[[list[str]], None] | None = None,
                   on_hashing: Callable[[int], None] | None = None) -> MaskRun:
    """Check everything that can be checked before writing, then open the folder and log the start.

    Raises a one-line ``SeplError`` for an unknown model type, a missing extra, bad options,
    settings, checkpoint or images, a folder made with other settings, or so many images changed
    since their masks were made that ``--images`` looks wrong. ``on_images`` sees the ids found,
    before the masks already in ``--out`` are looked for (seconds at 100k ids); ``on_hashing``
    how many images must be read to tell whether they changed.
    """
    r = request
    family = family_of(host.sam_model(r.model_type))  # an unknown model type lists the valid ones
    require_family(family, r.model_type)
    for name, value, valid in (("--format", r.fmt, FORMATS), ("--engine", r.engine, ENGINES),
                               ("--precision", r.precision, PRECISIONS)):
        if value not in valid:
            raise SeplError(f"{name} must be one of {', '.join(valid)}, got {value!r}")
    if r.engine == "stock" and r.precision != "fp32":
        raise SeplError(f"--precision {r.precision} runs with --engine fast only (the stock generator is fp32)")
    check_checkpoint(r.checkpoint)
    settings = generator_settings(r.preset, r.params, family)
    check_settings(settings, family)
    on_cluster = r.executor == "ray"  # there the workers, not this machine, have the GPUs
    device = r.device if on_cluster else resolve_device(r.device)
    found = find_images(r.images, r.ids)
    if on_images is not None:
        on_images(list(found))
    for name in (ERROR_LOG, RUN_LOG, IMAGES_LOG):  # an image named so would put its masks where the folder's logs go
        if r.fmt == "png" and name in found:
            raise InputError(found[name], f"its masks would be {r.out / name}/, which is this folder's {name}; "
                                          "rename the image or use --format rle")
    if r.engine == "fast" and settings.get("use_m2m"):  # (the fast engine refuses it only where it loads)
        raise SeplError("use_m2m (SAM 2's mask-to-mask refinement) runs with --engine stock only")
    if holds_masks(r.out):  # a run that stopped before any image (a wrong checkpoint) binds nothing
        check_same_settings(r.out, r.model_type, settings, r.precision, r.checkpoint.absolute())
    prepare_folder(r.out)
    remove_stale_temporaries(r.out)
    sources = mask_sources(r.out, found)
    finished = sum(source is not None for source in sources.values())
    changed, unrecorded, unreadable = _judge_finished(r.out, found, sources, on_hashing)
    if len(changed) > max(CHANGED_FEW, CHANGED_SHARE * finished) and not r.remake_changed:
        raise InputError(found[changed[0]], f"this and {len(changed) - 1} more of the {finished} images with masks "
                                            f"in {r.out} are not the images their masks were made from; is --images "
                                            "the folder they were made from? (--remake-changed makes their masks again)")
    _remove_out_of_date(sources, changed + unrecorded)  # (stale: no run may read them meanwhile)
    todo = [i for i, source in sources.items() if source is None]
    stats = {i: stat_of(found[i]) for i in todo}  # (before any worker reads them)
    # finished in the other layout than --format (a resumed run keeps them as they are)
    kept = [i for i, source in sources.items() if source is not None and (source.suffix == ".json") != (r.fmt == "rle")]
    log = start_error_log(r.out, todo)
    # On Ray each worker reserves one CPU per thread (MaskJob.cpus_per_worker): by default one.
    threads = r.threads or (1 if on_cluster else default_torch_threads(r.workers))
    # on Ray with --device auto each worker decides, on the device it has (None)
    batch = r.batch_images or (None if device == "auto" else GPU_BATCH_IMAGES if device == "cuda" else 1)
    # Absolute paths: Ray workers on other nodes do not share this shell's directory.
    job = MaskJob({i: found[i].absolute() for i in todo}, r.out.absolute(), r.model_type, r.checkpoint.absolute(),
                  settings, r.fmt, device, r.plugins, threads, r.engine, r.precision, batch, r.point_batch)
    append_run_log(r.out, {
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "model_type": r.model_type,
        "family": family, "checkpoint": str(job.checkpoint), "preset": r.preset, "settings": settings,
        "precision": r.precision, "engine": r.engine, "batch_images": batch, "point_batch": r.point_batch,
        "format": r.fmt, "device": r.device, **({} if on_cluster else {"device_used": device}), "executor": r.executor, "workers": r.workers, "torch_threads": threads,
        "cores": available_cores(), "images": len(found), "to_do": len(todo), "versions": dict(versions or {})})
    notes = []
    if changed:
        notes.append(f"{len(changed)} image(s) changed since their masks were made (e.g. {found[changed[0]]}): "
                     "their masks are made again")
    if unrecorded:
        notes.append(f"{len(unrecorded)} image(s) have masks that no line of {IMAGES_LOG} accounts for (a run stopped "
                     f"between writing and recording them, e.g. {unrecorded[0]}): what "
                     "they were made from is unknown, so they are made again")
    if unreadable:
        first = next(iter(unreadable))
        notes.append(f"{len(unreadable)} image(s) with masks could not be read to tell whether they changed (e.g. "
                     f"{found[first]}: {unreadable[first]}): their masks are kept as they are")
    if kept:
        layout = "RLE (<id>.json)" if r.fmt == "png" else "PNG folders (<id>/)"
        notes.append(f"{len(kept)} image(s) in {r.out} already have their masks as {layout}, e.g. {kept[0]}: kept as "
                     f"they are (the same masks); --format {r.fmt} writes only the images without masks")
    return MaskRun(job, todo, MaskRunSummary(total=len(found), skipped=len(found) - len(todo)), log, notes, stats)
