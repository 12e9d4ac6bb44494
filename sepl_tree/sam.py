"""SAM automatic mask generation: presets, the level-aware generator and the per-image job.

Conventions
-----------
- Images are read as ``uint8 (H, W, 3)`` RGB; an image's id is its file name without suffix.
- Masks come out as a :class:`~sepl_tree.masks.MaskSet` at the image's own size, with
  segment-anything's record fields (``area``, ``bbox`` XYWH, ``predicted_iou``, ``point_coords``,
  ``stability_score``, ``crop_box`` XYWH) plus ``level``: which of SAM's three multimask outputs
  the mask came from (0 sub-part, 1 part, 2 whole, by SAM's training order of its outputs).
- Output folders hold exactly what ``sepl-tree run --masks`` reads (``<id>.json`` or ``<id>/``),
  plus ``errors.log`` (``id<TAB>message``, one line per failed image).
"""

from __future__ import annotations

import inspect
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from sepl_tree.errors import InputError, SeplError
from sepl_tree.files import atomic_write_bytes, remove_stale_temporaries
from sepl_tree.masks import MaskSet, find_mask_source, write_masks_png_folder, write_masks_rle
from sepl_tree.registry import Param, coerce_params

__all__ = [
    "DEVICES",
    "ERROR_LOG",
    "FORMATS",
    "IMAGE_SUFFIXES",
    "PRESETS",
    "RUN_LOG",
    "LevelledMaskGenerator",
    "MaskJob",
    "MaskResult",
    "MaskRunSummary",
    "append_error",
    "append_run_log",
    "check_same_settings",
    "build_generator",
    "check_settings",
    "default_torch_threads",
    "find_images",
    "generate_maskset",
    "generator_params",
    "generator_settings",
    "load_image",
    "pending_ids",
    "remove_stale_temporaries",
    "resolve_device",
    "start_error_log",
    "write_png_folder_with_levels",
]

#: Image files ``masks`` reads (case-insensitive suffixes).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
#: Output layouts: one COCO-RLE ``<id>.json`` per image, or amg.py's ``<id>/`` PNG folder.
FORMATS = ("rle", "png")
DEVICES = ("auto", "cpu", "cuda")
#: The per-image error log inside the output folder.
ERROR_LOG = "errors.log"
#: One JSON line per run (model, settings, counts) inside the output folder.
RUN_LOG = "masks_run.jsonl"

#: Generator settings on top of ``SamAutomaticMaskGenerator``'s own defaults.
PRESETS: dict[str, dict[str, Any]] = {
    # The paper's setting: the library defaults with looser quality thresholds.
    "paper": {"pred_iou_thresh": 0.86, "stability_score_thresh": 0.92},
    # segment-anything's defaults, unchanged.
    "sam-default": {},
    # The denser setting of segment-anything's example notebook: a second crop layer with
    # half as many points per side, and small holes and islands removed (needs OpenCV).
    "heavy": {
        "points_per_side": 32,
        "pred_iou_thresh": 0.86,
        "stability_score_thresh": 0.92,
        "crop_n_layers": 1,
        "crop_n_points_downscale_factor": 2,
        "min_mask_region_area": 100,
    },
}

_NOT_PARAMS = ("self", "model", "point_grids", "output_mode")


def generator_params() -> dict[str, Param]:
    """``SamAutomaticMaskGenerator``'s tunable parameters, with their library defaults."""
    from segment_anything import SamAutomaticMaskGenerator

    params = {}
    for p in inspect.signature(SamAutomaticMaskGenerator.__init__).parameters.values():
        if p.name in _NOT_PARAMS or p.default is p.empty:
            continue
        params[p.name] = Param(p.name, p.default, type(p.default))
    return params


def generator_settings(preset: str = "paper", overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The generator's keyword arguments for ``preset``, with ``overrides`` (e.g. ``--param``) on top.

    >>> s = generator_settings("paper", {"points_per_side": "8"})
    >>> s["pred_iou_thresh"], s["stability_score_thresh"], s["points_per_side"]
    (0.86, 0.92, 8)
    """
    if preset not in PRESETS:
        raise SeplError(f"unknown preset {preset!r}; valid choices: {', '.join(PRESETS)}")
    declared = generator_params()
    settings = coerce_params("SAM mask generator", declared, PRESETS[preset])
    return coerce_params("SAM mask generator", {n: Param(n, v, declared[n].type) for n, v in settings.items()},
                         dict(overrides or {}))


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


# ------------------------------------------------------------------------------- generator


def _generator_class() -> type:
    from segment_anything import SamAutomaticMaskGenerator
    from segment_anything.utils.amg import MaskData

    class _Levelled(SamAutomaticMaskGenerator):
        """``SamAutomaticMaskGenerator`` whose records also say which multimask output made them.

        The model runs once per point batch as usual; the library's own batch post-processing
        then runs once per output (the predictor hands it one output at a time), so each
        surviving mask carries its output index in a ``levels`` field that ``MaskData`` filters
        and concatenates along with the others.
        """

        def _process_batch(self, points, im_size, crop_box, orig_size):  # noqa: ANN001, ANN202
            predictor = self.predictor
            real_predict = predictor.predict_torch
            state: dict[str, Any] = {}

            def one_output(*args: Any, **kwargs: Any) -> tuple[Any, ...]:
                if "outputs" not in state:
                    state["outputs"] = real_predict(*args, **kwargs)
                k = state["level"]
                return tuple(t[:, k:k + 1] for t in state["outputs"])

            merged = MaskData()
            predictor.predict_torch = one_output
            try:
                level = 0
                while level == 0 or level < state["outputs"][0].shape[1]:
                    state["level"] = level
                    data = super()._process_batch(points, im_size, crop_box, orig_size)
                    data["levels"] = np.full(len(data["rles"]), level, np.int64)
                    merged.cat(data)
                    level += 1
            finally:
                del predictor.predict_torch  # back to the class's method
            return merged

        def _generate_masks(self, image):  # noqa: ANN001, ANN202
            self._last_data = super()._generate_masks(image)
            return self._last_data

        def generate(self, image):  # noqa: ANN001, ANN202
            records = super().generate(image)
            # generate() builds its records in the order of the (filtered in place) mask data.
            levels = self._last_data["levels"] if records else []
            for record, level in zip(records, levels, strict=True):
                record["level"] = int(level)
            return records

    return _Levelled


def __getattr__(name: str) -> Any:
    # The class needs segment-anything; build it on first use so importing sam.py stays cheap.
    if name == "LevelledMaskGenerator":
        cls = _generator_class()
        globals()[name] = cls
        return cls
    raise AttributeError(name)


def check_settings(settings: Mapping[str, Any]) -> None:
    """Fail early for settings the generator cannot honour here (small-region removal without OpenCV)."""
    if settings.get("min_mask_region_area", 0) > 0:
        try:
            import cv2  # noqa: F401
        except ImportError:
            raise SeplError(
                "min_mask_region_area > 0 (preset heavy) removes small regions with OpenCV, which is not "
                "installed: pip install 'sepl-tree[opencv]' (opencv-python-headless), "
                "or pass --param min_mask_region_area=0"
            ) from None


def build_generator(model: Any, settings: Mapping[str, Any]) -> Any:
    """A :class:`LevelledMaskGenerator` over ``model`` with binary-mask output.

    Raises ``SeplError`` when the settings ask for small-region removal without OpenCV.
    """
    check_settings(settings)
    cls = __getattr__("LevelledMaskGenerator")
    try:
        return cls(model, output_mode="binary_mask", **settings)
    except (AssertionError, ValueError) as exc:
        raise SeplError(f"invalid SAM mask generator settings {dict(settings)}: {exc}") from None


def generate_maskset(generator: Any, image: np.ndarray) -> MaskSet:
    """Run ``generator`` on a ``uint8 (H, W, 3)`` image and return its masks with their records."""
    records = generator.generate(image)
    height, width = image.shape[:2]
    if not records:
        return MaskSet.empty(height, width)
    masks = np.stack([np.asarray(r.pop("segmentation"), dtype=bool) for r in records])
    return MaskSet(masks, records)


# ------------------------------------------------------------------------------------- images


def find_images(images_dir: Path, ids: Sequence[str] | None = None) -> dict[str, Path]:
    """Image id -> file for every image in ``images_dir`` (or for ``ids``), sorted by id.

    Raises ``InputError`` for a missing folder, two files with one id, or ids without an image.
    """
    if not images_dir.is_dir():
        raise InputError(images_dir, "image folder not found")
    found: dict[str, Path] = {}
    for path in sorted(images_dir.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file() or path.name.startswith("."):
            continue
        if path.stem in found:
            raise InputError(path, f"two images have the id {path.stem!r} (also {found[path.stem].name})")
        found[path.stem] = path
    if ids is None:
        if not found:
            raise InputError(images_dir, f"no images ({', '.join(IMAGE_SUFFIXES)}) in this folder")
        return dict(sorted(found.items()))
    missing = [i for i in ids if i not in found]
    if missing:
        raise InputError(images_dir, f"{len(missing)} requested id(s) have no image here, e.g. {missing[0]!r}")
    return {i: found[i] for i in dict.fromkeys(ids)}


def load_image(path: Path) -> np.ndarray:
    """An image file as ``uint8 (H, W, 3)`` RGB, or ``InputError`` naming the file."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(path, f"not a readable image ({exc})") from None


# ------------------------------------------------------------------------------------ writing


def write_png_folder_with_levels(folder: Path, maskset: MaskSet) -> None:
    """amg.py's PNG folder, with a ``level`` column appended to ``metadata.csv``; atomic.

    The folder is written under a hidden ``.tmp`` name (which a rerun clears if the process
    dies), the column is added there, and the folder is then renamed into place.
    """
    import shutil

    staging = folder.with_name(f".{folder.name}.levels.tmp")
    write_masks_png_folder(staging, maskset)
    levels = [r.get("level") for r in maskset.records]
    csv_path = staging / "metadata.csv"
    lines = csv_path.read_text().splitlines()
    if levels and None not in levels and "level" not in lines[0].split(","):
        rows = [f"{row},{level}" for row, level in zip(lines[1:], levels, strict=True)]
        csv_path.write_text("\n".join([lines[0] + ",level", *rows]) + "\n")
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)


# ------------------------------------------------------------------------------------ the job


@dataclass(frozen=True)
class MaskResult:
    """What happened to one image."""

    image_id: str
    n_masks: int = 0
    seconds: float = 0.0
    error: str | None = None


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if not isinstance(exc, SeplError):
        text = f"{type(exc).__name__}: {text}"
    return " ".join(text.split())


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
        A registered SAM model type (``vit_h``, ``vit_l``, ``vit_b`` or a plugin's).
    checkpoint
        The model's state dict file.
    settings
        ``SamAutomaticMaskGenerator`` keyword arguments (see :func:`generator_settings`).
    fmt
        ``"rle"`` or ``"png"``.
    device
        ``auto``, ``cpu`` or ``cuda``; resolved in the worker.
    plugins
        ``--plugin`` files and modules, loaded again in each worker to find ``model_type``.
    torch_threads
        CPU threads per worker (``None``: torch's default).
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

    @property
    def uses_gpu(self) -> bool:
        """Whether a worker should be given a GPU when the cluster has one."""
        return self.device in ("auto", "cuda")

    def load_model(self) -> Any:
        """Build ``model_type`` from the checkpoint on the resolved device, in eval mode."""
        import torch

        from sepl_tree.plugins import load_host

        if self.torch_threads:
            torch.set_num_threads(self.torch_threads)
        device = resolve_device(self.device)
        build = load_host(list(self.plugins)).sam_model(self.model_type)
        if not Path(self.checkpoint).is_file():
            raise InputError(self.checkpoint, "checkpoint not found")
        try:
            model = build(str(self.checkpoint))
        except Exception as exc:  # torch/pickle raise many types for a wrong or corrupt file
            raise InputError(self.checkpoint, f"cannot load as a {self.model_type!r} SAM checkpoint: "
                                              f"{_one_line(exc)[:300]}") from None
        return model.to(device).eval()

    def setup(self) -> Callable[[str], MaskResult]:
        """Load the model once; a model that cannot load fails the first image with its error.

        (A pool worker whose initialiser raises only reports a broken pool; raising from the
        first call carries the one-line error back to the command.)
        """
        try:
            generator = build_generator(self.load_model(), self.settings)
        except SeplError as exc:
            error = exc

            def fail(image_id: str) -> MaskResult:
                raise error

            return fail
        return lambda image_id: self.run_one(generator, image_id)

    def run_one(self, generator: Any, image_id: str) -> MaskResult:
        """Generate and write one image's masks; any failure becomes the result's ``error``."""
        start = time.perf_counter()
        try:
            maskset = generate_maskset(generator, load_image(Path(self.images[image_id])))
            if self.fmt == "png":
                write_png_folder_with_levels(Path(self.out) / image_id, maskset)
            else:
                write_masks_rle(Path(self.out) / f"{image_id}.json", maskset)
        except Exception as exc:  # one bad image must not stop a days-long run
            return MaskResult(image_id, seconds=time.perf_counter() - start, error=_one_line(exc))
        return MaskResult(image_id, len(maskset), time.perf_counter() - start)


# ------------------------------------------------------------------------ resume and errors


def check_same_settings(out: Path, model_type: str, settings: Mapping[str, Any]) -> None:
    """Refuse to resume into ``out`` with another model type or other generator settings.

    A folder whose masks came from two settings would be a silent mix; the previous run's
    choice is read from ``out/masks_run.jsonl``.
    """
    path = out / RUN_LOG
    if not path.is_file():
        return
    previous = None
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut short by a killed run
        if isinstance(entry, dict) and "settings" in entry:
            previous = entry
    if previous is None:
        return
    changed = {k: (previous["settings"].get(k), v) for k, v in settings.items() if previous["settings"].get(k) != v}
    if previous.get("model_type") != model_type:
        changed["model_type"] = (previous.get("model_type"), model_type)
    if changed:
        diff = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in sorted(changed.items()))
        raise InputError(path, f"this folder's masks were made with other settings ({diff}); "
                               "use another --out, or the same settings to resume")


def append_run_log(out: Path, entry: Mapping[str, Any]) -> None:
    """Append one JSON line to ``out/masks_run.jsonl``."""
    with open(out / RUN_LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(dict(entry), default=str) + "\n")


def pending_ids(out: Path, ids: Iterable[str]) -> list[str]:
    """The ids without finished output in ``out`` (either layout counts as finished)."""
    return [i for i in ids if find_mask_source(out, i) is None]


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
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"{result.image_id}\t{result.error}\n")


@dataclass
class MaskRunSummary:
    """Counts and timings of one ``masks`` run."""

    total: int = 0
    skipped: int = 0
    done: int = 0
    failed: int = 0
    masks: int = 0
    seconds: float = 0.0
    errors: list[MaskResult] = field(default_factory=list)

    def add(self, result: MaskResult) -> None:
        if result.error is None:
            self.done += 1
            self.masks += result.n_masks
        else:
            self.failed += 1
            self.errors.append(result)

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


def default_torch_threads(workers: int) -> int | None:
    """CPU threads per worker so that ``workers`` processes share the machine's cores."""
    if workers <= 1:
        return None
    return max(1, (os.cpu_count() or 1) // workers)
