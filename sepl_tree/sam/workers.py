"""The per-worker functions of a ``masks`` run: one model, many images, every failure one result.

A worker is called with one image id (``worker(image_id)``) or, by executors that can, with
all of its ids at once (``worker.map(ids)``), which lets the fast engine overlap everything:

- loader threads read and prepare the next images while the device works on the current ones;
- the device takes ``batch_images`` images per :meth:`FastMaskGenerator.generate` call;
- writer threads encode each image's counts and write its files behind it.

The stock engine runs the library's generator (recording ``level``) one image at a time,
reading, generating and writing in turn, as ``sepl-tree masks`` always did.

Each :class:`MaskResult` carries the seconds its image spent in each stage: ``read``
(loader thread), ``prepare`` (crops, resizing, normalising: in the loader thread on a GPU,
with the model on the CPU), ``wait`` (the device side waiting for that image), ``encoder``,
``decoder``, ``postprocess`` (the batch's device time, shared out over its images),
``generate`` (stock engine: the whole generator call) and ``write`` (writer thread).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sepl_tree.errors import one_line
from sepl_tree.images import load_image_with_sha1
from sepl_tree.sam.writing import amg_record, write_records

__all__ = ["FastWorker", "MaskResult", "StockWorker", "failing_worker"]

#: Images written behind the device at most before it waits for the writers.
WRITES_IN_FLIGHT = 8


@dataclass(frozen=True)
class MaskResult:
    """What happened to one image; ``sha1``: of the image file's bytes the masks were made from."""

    image_id: str
    n_masks: int = 0
    seconds: float = 0.0
    error: str | None = None
    stages: Mapping[str, float] = field(default_factory=dict)
    sha1: str | None = None


def failing_worker(error: Exception) -> Callable[[str], MaskResult]:
    """A worker whose every call raises ``error`` (a model that could not load)."""

    def fail(image_id: str) -> MaskResult:
        raise error

    fail.map = lambda ids: (fail(i) for i in ids)  # type: ignore[attr-defined]
    return fail


class StockWorker:
    """The library's (levelled) generator, one image at a time: read, generate, write."""

    def __init__(self, generator: Any, images: Mapping[str, Path], out: Path, fmt: str) -> None:
        self.generator, self.images, self.out, self.fmt = generator, images, Path(out), fmt

    def __call__(self, image_id: str) -> MaskResult:
        start = time.perf_counter()
        stages: dict[str, float] = {}
        try:
            image, sha1 = load_image_with_sha1(Path(self.images[image_id]))
            stages["read"] = time.perf_counter() - start
            records = [amg_record(r) for r in self.generator.generate(image)]
            stages["generate"] = time.perf_counter() - start - stages["read"]
            write_records(self.out, image_id, records, image.shape[:2], self.fmt)
            stages["write"] = time.perf_counter() - start - stages["read"] - stages["generate"]
        except Exception as exc:  # one bad image must not stop a days-long run
            return MaskResult(image_id, seconds=time.perf_counter() - start, error=one_line(exc, typed=True), stages=stages)
        return MaskResult(image_id, len(records), time.perf_counter() - start, stages=stages, sha1=sha1)

    def map(self, ids: Iterable[str]) -> Iterator[MaskResult]:
        return (self(image_id) for image_id in ids)


@dataclass
class _Loaded:
    image_id: str
    started: float
    prepared: Any = None
    sha1: str | None = None
    error: str | None = None
    read: float = 0.0
    prepare: float = 0.0


class FastWorker:
    """The fast engine over a :class:`~sepl_tree.sam.fast.FastMaskGenerator`, pipelined (see the module)."""

    def __init__(self, generator: Any, images: Mapping[str, Path], out: Path, fmt: str, batch_images: int = 1,
                 loaders: int = 2, writers: int = 2, prepare_ahead: bool | None = None) -> None:
        self.generator, self.images, self.out, self.fmt = generator, images, Path(out), fmt
        self.batch_images, self.loaders, self.writers = max(1, batch_images), max(1, loaders), max(1, writers)
        # On a GPU the loader threads also resize and normalise (torch work on the CPU, while the
        # GPU works); on the CPU that work would only compete with the model for the same cores
        # (two threads' OpenMP teams at once), so it stays with the model.
        if prepare_ahead is None:
            prepare_ahead = str(getattr(generator, "device", "cpu")).startswith("cuda")
        self.prepare_ahead = prepare_ahead

    def __call__(self, image_id: str) -> MaskResult:
        return next(iter(self.map([image_id])))

    def _load(self, image_id: str) -> _Loaded:
        item = _Loaded(image_id, time.perf_counter())
        try:
            item.prepared, item.sha1 = load_image_with_sha1(Path(self.images[image_id]))
            item.read = time.perf_counter() - item.started
            if self.prepare_ahead:
                self._prepare(item)
        except Exception as exc:
            item.error = one_line(exc, typed=True)
            item.read = time.perf_counter() - item.started
        return item

    def _prepare(self, item: _Loaded) -> None:
        """Decoded image -> model inputs, once (a batch retried image by image keeps them)."""
        if not hasattr(item.prepared, "crops"):
            start = time.perf_counter()
            item.prepared = self.generator.prepare(item.prepared)
            item.prepare = time.perf_counter() - start

    def _write(self, item: _Loaded, masks: Any, stages: dict[str, float]) -> MaskResult:
        start = time.perf_counter()
        try:
            write_records(self.out, item.image_id, masks.records(), (masks.height, masks.width), self.fmt)
        except Exception as exc:
            return MaskResult(item.image_id, seconds=time.perf_counter() - item.started, error=one_line(exc, typed=True),
                              stages=stages)
        stages["write"] = time.perf_counter() - start
        return MaskResult(item.image_id, len(masks), time.perf_counter() - item.started, stages=stages, sha1=item.sha1)

    def map(self, ids: Iterable[str]) -> Iterator[MaskResult]:
        """Results for ``ids``, in the order their writes finish."""
        todo = iter(ids)
        ahead: deque[Future[_Loaded]] = deque()
        writes: deque[Future[MaskResult]] = deque()
        with ThreadPoolExecutor(self.loaders, "sam-read") as loader, ThreadPoolExecutor(self.writers, "sam-write") as writer:

            def top_up() -> None:
                while len(ahead) < self.batch_images + 2 * self.loaders:
                    image_id = next(todo, None)
                    if image_id is None:
                        return
                    ahead.append(loader.submit(self._load, image_id))

            top_up()
            while ahead:
                batch, waits = [], []
                while ahead and len(batch) < self.batch_images:
                    start = time.perf_counter()
                    item = ahead.popleft().result()
                    wait = time.perf_counter() - start
                    top_up()
                    if item.error is not None:
                        yield MaskResult(item.image_id, seconds=time.perf_counter() - item.started, error=item.error,
                                         stages={"read": item.read, "wait": wait})
                    else:
                        batch.append(item)
                        waits.append(wait)
                for result in self._generate(batch, waits, writer):
                    if isinstance(result, MaskResult):
                        yield result
                    else:
                        writes.append(result)
                while writes and (writes[0].done() or len(writes) > WRITES_IN_FLIGHT):
                    yield writes.popleft().result()
            while writes:
                yield writes.popleft().result()

    def _generate(self, batch: list[_Loaded], waits: list[float], writer: ThreadPoolExecutor
                  ) -> Iterator[MaskResult | Future[MaskResult]]:
        """Generate a batch's masks and hand them to the writers; a failing batch is retried image by image."""
        if not batch:
            return
        try:
            for item in batch:
                self._prepare(item)
            found = self.generator.generate([item.prepared for item in batch])
        except Exception as exc:
            self.generator.timer.take()
            if len(batch) == 1:
                item = batch[0]
                yield MaskResult(item.image_id, seconds=time.perf_counter() - item.started, error=one_line(exc, typed=True),
                                 stages={"read": item.read})
                return
            for item, wait in zip(batch, waits, strict=True):
                yield from self._generate([item], [wait], writer)
            return
        device = self.generator.timer.take()
        share = {name: seconds / len(batch) for name, seconds in device.items()}
        for item, masks, wait in zip(batch, found, waits, strict=True):
            stages = {"read": item.read, "prepare": item.prepare, "wait": wait, **share}
            yield writer.submit(self._write, item, masks, stages)
