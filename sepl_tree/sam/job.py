"""The picklable job spec of ``masks`` (one model per worker), its device and CPU threads."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sepl_tree.errors import InputError, SeplError, one_line
from sepl_tree.sam.workers import FastWorker, MaskResult, StockWorker, failing_worker

__all__ = [
    "BATCHES_PER_TASK",
    "DEVICES",
    "ENGINES",
    "PRECISIONS",
    "MaskJob",
    "available_cores",
    "check_checkpoint",
    "default_torch_threads",
    "resolve_device",
]

DEVICES = ("auto", "cpu", "cuda")
#: ``fast``: batched, pipelined, post-processing on the device; ``stock``: the library's generator.
ENGINES = ("fast", "stock")
#: Autocast precision of the encoder and decoder (``fp32``: none). It changes the masks, so a
#: folder is resumed only with the precision that started it.
PRECISIONS = ("fp32", "bf16", "fp16")
#: Encoder batches per task when an executor hands a fast-engine worker its ids in tasks
#: (process pool, Ray): enough that the loaders read and prepare ahead of the device within a
#: task (each task starts and ends with its pipeline empty), few enough that a lost Ray
#: worker's tasks (two held at a time) are quickly done again and that the workers finish
#: together.
BATCHES_PER_TASK = 4
#: Images per encoder pass on a GPU when ``--batch-images`` is not given.
GPU_BATCH_IMAGES = 4


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    if device not in DEVICES:
        raise SeplError(f"unknown device {device!r}; valid choices: {', '.join(DEVICES)}")
    has_gpu = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if has_gpu else "cpu"
    if device == "cuda" and not has_gpu:
        raise SeplError("--device cuda: no CUDA GPU is visible to torch (use --device auto or cpu)")
    return device


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_torch_threads(workers: int) -> int:
    """torch CPU threads per worker so that ``workers`` processes share the cores given to this one."""
    return max(1, available_cores() // max(1, workers))


@dataclass(frozen=True)
class MaskJob:
    """A picklable description of mask generation: one model per worker, built in :meth:`setup`.

    Attributes
    ----------
    images
        Image id -> image file.
    out
        Output folder.
    model_type
        A registered SAM model type (``vit_h``, ``sam2.1_hiera_l``, ... or a plugin's).
    checkpoint
        The model's checkpoint file.
    settings
        The family generator's keyword arguments (see :func:`~sepl_tree.sam.presets.generator_settings`).
    fmt
        ``"rle"`` or ``"png"``.
    device
        ``auto``, ``cpu`` or ``cuda``; resolved in the worker (``masks`` resolves it first,
        except for Ray, whose workers may have GPUs that this machine has not).
    plugins
        ``--plugin`` files and modules, loaded again in each worker to find ``model_type``.
    torch_threads
        CPU threads per worker (``None``: torch's default); on Ray also the CPUs each worker
        reserves (:attr:`cpus_per_worker`).
    engine
        ``fast`` or ``stock`` (:data:`ENGINES`).
    precision
        ``fp32``, ``bf16`` or ``fp16`` (fast engine).
    batch_images
        Images (or crops) per encoder pass (fast engine); ``None``: :data:`GPU_BATCH_IMAGES` on a
        GPU, 1 on the CPU, decided where the model loads (a Ray worker's GPU is not this machine's).
    point_batch
        Point prompts per decoder pass (fast engine; ``None``: automatic).
    """

    images: Mapping[str, Path]
    out: Path
    model_type: str
    checkpoint: Path
    settings: Mapping[str, Any] = field(default_factory=dict)
    fmt: str = "rle"
    device: str = "auto"
    plugins: tuple[str, ...] = ()
    torch_threads: int | None = None
    engine: str = "fast"
    precision: str = "fp32"
    batch_images: int | None = 1
    point_batch: int | None = None

    def batch_on(self, device: str) -> int:
        """Images per encoder pass on the resolved ``device`` (``cpu`` or ``cuda``)."""
        return self.batch_images or (GPU_BATCH_IMAGES if device == "cuda" else 1)

    @property
    def ids_per_task(self) -> int:
        """Ids per task for executors that hand out tasks (see :func:`sepl_tree.executors.ids_per_task`).

        One for the stock engine, and for the fast engine on the CPU one image at a time (there
        is nothing to batch, and reading ahead saves milliseconds of minutes); otherwise
        :data:`BATCHES_PER_TASK` encoder batches (of a GPU's batch where the workers decide it).
        """
        batch = self.batch_on("cpu" if self.device == "cpu" else "cuda")
        if self.engine != "fast" or (self.device == "cpu" and batch == 1):
            return 1
        return batch * BATCHES_PER_TASK

    @property
    def cpus_per_worker(self) -> int:
        """CPUs a Ray worker reserves: one per torch thread (so Ray places no more workers on a
        node than its cores hold, and sets their ``OMP_NUM_THREADS`` to it)."""
        return self.torch_threads or 1

    def without_gpus(self) -> MaskJob:
        """This job on a cluster without GPUs (the Ray executor asks): ``--device auto`` is the
        CPU there, so tasks are sized for it (one image each) rather than for a GPU's batch."""
        return dataclasses.replace(self, device="cpu") if self.device == "auto" else self

    @property
    def uses_gpu(self) -> bool:
        """Whether a worker should be given a GPU when the cluster has one."""
        return self.device in ("auto", "cuda")

    def builder(self) -> Callable[..., Any]:
        """The registered builder of ``model_type`` (plugins loaded)."""
        from sepl_tree.plugins import load_host

        return load_host(list(self.plugins)).sam_model(self.model_type)

    def load_model(self, build: Callable[..., Any] | None = None) -> Any:
        """Build ``model_type`` from the checkpoint on the resolved device, in eval mode."""
        from sepl_tree.sam.models import CheckpointError, family_of, require_family

        build = build or self.builder()
        require_family(family_of(build), self.model_type)
        import torch

        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        device = resolve_device(self.device)
        check_checkpoint(Path(self.checkpoint))
        try:
            model = build(str(self.checkpoint))
        except Exception as exc:  # torch/pickle raise many types for a wrong or corrupt file
            problem = str(exc) if isinstance(exc, CheckpointError) else _first_sentence(exc)
            raise InputError(self.checkpoint, f"cannot load as a {self.model_type!r} SAM checkpoint: {problem}") from None
        return model.to(device).eval()

    def make_worker(self, model: Any, family: str) -> Callable[[str], MaskResult]:
        """The per-image function of this job's engine over a loaded model of ``family``."""
        from sepl_tree.sam.fast import FastMaskGenerator
        from sepl_tree.sam.generator import build_generator

        if self.engine == "stock":
            generator = build_generator(model, dict(self.settings), family, output_mode="coco_rle")
            return StockWorker(generator, self.images, self.out, self.fmt)
        if self.engine != "fast":
            raise SeplError(f"unknown engine {self.engine!r}; valid choices: {', '.join(ENGINES)}")
        batch = self.batch_on(resolve_device(self.device))
        generator = FastMaskGenerator(model, family, dict(self.settings), self.precision, batch, self.point_batch)
        return FastWorker(generator, self.images, self.out, self.fmt, batch)

    @property
    def output_folders(self) -> tuple[Path, ...]:
        """Where its workers write (see :class:`sepl_tree.executors.JobSpec`)."""
        return (self.out,)

    def setup(self) -> Callable[[str], MaskResult]:
        """Load the model once; a model that cannot load fails the first image with its error.

        (A pool worker whose initialiser raises only reports a broken pool; raising from the
        first call carries the one-line error back to the command.)
        """
        from sepl_tree.sam.models import family_of

        try:
            build = self.builder()
            return self.make_worker(self.load_model(build), family_of(build))
        except SeplError as exc:
            return failing_worker(exc)


def check_checkpoint(path: Path) -> None:
    """``InputError`` for a checkpoint that is missing or is a folder."""
    if path.is_dir():
        raise InputError(path, "cannot load a SAM checkpoint from it: it is a folder, not a checkpoint file")
    if not path.exists():
        raise InputError(path, "checkpoint not found")


def _first_sentence(exc: BaseException) -> str:
    """The first sentence of an error message, whole (never cut in the middle)."""
    text = one_line(exc, typed=True)
    for end in (". ", "; "):
        if end in text:
            text = text.split(end, 1)[0]
    return text.rstrip(".")
