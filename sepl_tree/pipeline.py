"""One image's job (read, select, write) and a dataset run over image ids.

Each image: the reader plugin gives the pseudo-label P, :func:`sepl_tree.masks.read_masks`
the masks, the strategy plugin the enhanced label, written atomically to ``OUT/<id>.png``.
An existing output is skipped (resume) unless ``overwrite``. The outputs do not depend on the
executor or the number of workers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sepl_tree.errors import InputError, SeplError, StrategyError
from sepl_tree.executors import execute
from sepl_tree.files import remove_stale_temporaries, write_label_png
from sepl_tree.label_maps import IGNORE, label_values
from sepl_tree.masks import MaskSet, find_mask_source, read_masks
from sepl_tree.plugins import PluginHost, load_host
from sepl_tree.registry import ReadContext, Reader, Strategy, coerce_params
from sepl_tree.sample import Sample

__all__ = [
    "EvalJob",
    "ImageResult",
    "RunConfig",
    "RunJob",
    "Selector",
    "bind_strategy",
    "check_inputs",
    "pending_ids",
    "read_context",
    "read_inputs",
    "run_images",
    "route_params",
]

MISSING_MASKS = ("error", "keep")


@dataclass(frozen=True)
class RunConfig:
    """Everything a dataset run needs; picklable, so workers rebuild their plugins from it."""

    pseudo_dir: Path
    masks_dir: Path
    out_dir: Path
    strategy: str = "threshold"
    params: Mapping[str, Any] = field(default_factory=dict)
    reader: str = "png"
    reader_params: Mapping[str, Any] = field(default_factory=dict)
    num_classes: int = 21
    plugins: tuple[str, ...] = ()
    labels: Path | None = None
    missing_masks: str = "error"
    overwrite: bool = False


@dataclass(frozen=True)
class ImageResult:
    """What happened to one image."""

    image_id: str
    masks: int
    changed_pixels: int
    no_masks: bool = False


def route_params(given: Mapping[str, str], strategies: Mapping[str, Strategy],
                 reader: Reader) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Send each ``--param`` to the strategies and reader that declare it.

    ``STRATEGY:NAME=VALUE`` goes to that strategy only, ``reader:NAME=VALUE`` to the reader;
    a bare ``NAME=VALUE`` goes to the reader if it declares NAME, else to every listed strategy
    that declares it. A name nobody declares is an error.

    >>> from sepl_tree.plugins import load_host
    >>> host = load_host(autoload=False)
    >>> s = {n: host.strategy(n) for n in ("threshold", "official")}
    >>> route_params({"t2": "0.9", "threshold:t1": "0.6"}, s, host.reader("png"))
    ({'threshold': {'t2': '0.9', 't1': '0.6'}, 'official': {'t2': '0.9'}}, {})
    """
    per: dict[str, dict[str, str]] = {name: {} for name in strategies}
    to_reader: dict[str, str] = {}
    for key, value in given.items():
        owner, colon, name = key.rpartition(":")
        if colon:
            if owner == "reader":
                to_reader[name] = value
            elif owner in strategies:
                per[owner][name] = value
            else:
                raise SeplError(f"--param {key}: {owner!r} is neither 'reader' nor a strategy of this run "
                                f"({', '.join(strategies)})")
        elif key in reader.params:
            to_reader[key] = value
        else:
            takers = [s for s, strat in strategies.items() if key in strat.params]
            if not takers:
                declared = "; ".join(f"strategy {n!r}: {', '.join(st.params) or 'none'}" for n, st in strategies.items())
                raise SeplError(f"--param {key}: no such parameter ({declared}; reader {reader.name!r}: "
                                f"{', '.join(reader.params) or 'none'})")
            for s in takers:
                per[s][key] = value
    return per, to_reader



@dataclass
class Selector:
    """A strategy bound to its parameters, applied to in-memory arrays (no files).

    What the strategy returns is checked: a ``(H, W)`` map of values 0..K-1 or 255, else a
    :class:`~sepl_tree.errors.StrategyError` naming the strategy (and nothing is written). An
    exception inside the strategy becomes one such error naming the strategy, where it comes
    from and the image.
    """

    strategy: Strategy
    params: dict[str, Any]
    num_classes: int = 21
    source: str = ""

    def __call__(self, pseudo: np.ndarray, masks: MaskSet, image_id: str = "") -> np.ndarray:
        return self.apply(Sample(pseudo, masks, self.num_classes, image_id=image_id))

    def apply(self, sample: Sample) -> np.ndarray:
        """Run on a prepared sample (which caches its overlap and trees for several strategies)."""
        try:
            out = self.strategy.select(sample, **self.params)
        except SeplError:
            raise
        except Exception as exc:  # a plugin's rule can fail in any way: say whose and where
            raise StrategyError(self._who(sample) + f" failed: {type(exc).__name__}: {exc}{_api_hint(self, exc)}") from exc
        return self._checked(out, sample)

    def _who(self, sample: Sample) -> str:
        where = f" ({self.source})" if self.source and self.source != "built-in" else ""
        on = f" on image {sample.image_id!r}" if sample.image_id else ""
        return f"strategy {self.strategy.name!r}{where}{on}"

    def _checked(self, out: Any, sample: Sample) -> np.ndarray:
        if not isinstance(out, np.ndarray) or out.shape != sample.pseudo.shape:
            got = getattr(out, "shape", type(out).__name__)
            raise StrategyError(f"{self._who(sample)} returned {got}, expected an array of shape {sample.pseudo.shape}")
        if out.dtype != np.uint8:
            if out.dtype.kind not in "iub" or (out.size and (out.min() < 0 or out.max() > IGNORE)):
                raise StrategyError(f"{self._who(sample)} returned {out.dtype} values that are not labels "
                                    f"0..{self.num_classes - 1} or {IGNORE}")
            out = out.astype(np.uint8)
        if out.size and out.max() >= self.num_classes:  # the common case (max < K) costs one pass
            values = label_values(out)
            bad = values[(values >= self.num_classes) & (values != IGNORE)]
            if bad.size:
                raise StrategyError(f"{self._who(sample)} returned label {int(bad[0])}, outside "
                                    f"0..{self.num_classes - 1} and {IGNORE}")
        return out


def bind_strategy(host: PluginHost, name: str, given: Mapping[str, Any], num_classes: int) -> Selector:
    """The strategy ``name`` bound to its checked parameters (``given`` over the defaults)."""
    strategy = host.strategy(name)
    params = coerce_params(f"strategy {strategy.name!r}", strategy.params, given)
    return Selector(strategy, params, num_classes, host.strategies[strategy.name].source)


def _api_hint(selector: Selector, exc: Exception) -> str:
    """What changed, for a plugin written against the API before ``sample.tree(tau)``."""
    on_tree = isinstance(exc, AttributeError) and getattr(getattr(exc, "obj", None), "__name__", "") == "tree"
    if on_tree or (selector.strategy.needs_tree and isinstance(exc, (AttributeError, TypeError))):
        return ("; sample.tree is now a method: call sample.tree(tau) for the containment tree "
                "(needs_tree is no longer needed)")
    return ""


def _load_labels(config: RunConfig) -> Mapping[str, frozenset[int]] | None:
    if config.labels is None:
        return None
    from sepl_tree.image_labels import load_image_labels

    return load_image_labels(config.labels, config.num_classes)


def read_context(config: RunConfig) -> ReadContext:
    """What the reader needs beyond its parameters (K, and image-level labels if given)."""
    return ReadContext(num_classes=config.num_classes, image_labels=_load_labels(config))


def read_inputs(config: RunConfig, reader: Reader, reader_params: Mapping[str, Any], ctx: ReadContext,
                image_id: str) -> tuple[np.ndarray, MaskSet, bool]:
    """One image's pseudo-label and masks: ``(pseudo, masks, no_masks)``.

    Without masks and with ``missing_masks="keep"``, the masks are empty and ``no_masks`` is set.
    """
    pseudo = reader.read(config.pseudo_dir, image_id, ctx, **reader_params)
    if find_mask_source(config.masks_dir, image_id) is None and config.missing_masks == "keep":
        return pseudo, MaskSet.empty(*pseudo.shape), True
    return pseudo, read_masks(config.masks_dir, image_id, shape=pseudo.shape), False


@dataclass(frozen=True)
class RunJob:
    """The per-image job of ``sepl-tree run`` (a :class:`sepl_tree.executors.JobSpec`)."""

    config: RunConfig

    def resolve(self, host: PluginHost) -> tuple[Selector, Reader, dict[str, Any]]:
        """Look up the strategy and reader and check their parameters."""
        c = self.config
        reader = host.reader(c.reader)
        reader_params = coerce_params(f"reader {reader.name!r}", reader.params, c.reader_params)
        return bind_strategy(host, c.strategy, c.params, c.num_classes), reader, reader_params

    def setup(self) -> Callable[[str], ImageResult]:
        c = self.config
        selector, reader, reader_params = self.resolve(load_host(c.plugins))
        ctx = read_context(c)

        def process(image_id: str) -> ImageResult:
            pseudo, masks, no_masks = read_inputs(c, reader, reader_params, ctx, image_id)
            out = selector(pseudo, masks, image_id)
            write_label_png(c.out_dir / f"{image_id}.png", out)
            return ImageResult(image_id, len(masks), int(np.count_nonzero(out != pseudo)), no_masks)

        return process


@dataclass(frozen=True)
class EvalJob:
    """``run --gt``'s per-image job: the confusion matrices of the input pseudo-label and of the
    written output against the ground truth, ``(input, output)``, each ``(K, K+1)``.

    Run with the same executor and workers as the run, reading each ground-truth map once.
    """

    config: RunConfig
    gt_dir: Path

    def setup(self) -> Callable[[str], tuple[np.ndarray, np.ndarray]]:
        from sepl_tree.evaluate import image_confusion, read_ground_truth
        from sepl_tree.files import read_png

        c = self.config
        _, reader, reader_params = RunJob(c).resolve(load_host(c.plugins))
        ctx = read_context(c)

        def process(image_id: str) -> tuple[np.ndarray, np.ndarray]:
            gt, gt_path = read_ground_truth(self.gt_dir, image_id), self.gt_dir / f"{image_id}.png"
            pseudo = reader.read(c.pseudo_dir, image_id, ctx, **reader_params)
            out_path = c.out_dir / f"{image_id}.png"
            return (image_confusion(pseudo, gt, c.num_classes, f"pseudo-label of {image_id}", gt_path),
                    image_confusion(read_png(out_path), gt, c.num_classes, out_path, gt_path))

        return process


def pending_ids(config: RunConfig, ids: list[str]) -> list[str]:
    """The ids still to do: all with ``overwrite``, else those without an output yet."""
    if config.overwrite:
        return list(ids)
    return [i for i in ids if not (config.out_dir / f"{i}.png").is_file()]


def check_inputs(config: RunConfig, ids: list[str]) -> None:
    """Fail early, naming the file, for an id whose masks are missing (unless ``keep``)."""
    if config.missing_masks not in MISSING_MASKS:
        raise SeplError(f"--missing-masks must be one of {', '.join(MISSING_MASKS)}, got {config.missing_masks!r}")
    if config.missing_masks == "error":
        for image_id in ids:
            if find_mask_source(config.masks_dir, image_id) is None:
                raise InputError(config.masks_dir / f"{image_id}.json",
                                 f"no masks for image {image_id!r} (neither {image_id}.json nor {image_id}/); "
                                 "use --missing-masks keep to keep its pseudo-label")


def run_images(config: RunConfig, ids: list[str], workers: int = 1, executor: str = "process",
               **executor_options: Any) -> Iterator[ImageResult]:
    """Process ``ids`` (already filtered for resume) and yield each result as it completes."""
    remove_stale_temporaries(config.out_dir)
    if not ids:
        return iter(())
    config.out_dir.mkdir(parents=True, exist_ok=True)
    return execute(RunJob(config), ids, executor=executor, workers=workers, **executor_options)
