"""``sepl-tree run``: one image's job (read, select, write, score) and the dataset run.

Each image: :class:`~sepl_tree.inputs.InputReader` gives the pseudo-label P (through the reader
plugin) and the masks, the bound strategy (:class:`~sepl_tree.selection.Selector`) the enhanced
label, written atomically to ``OUT/<id>.png``. An existing output is reused (resume) unless
``overwrite``. With ground truth, the same pass scores the input and the output (one
confusion matrix each, read once per image), reused outputs included. The outputs do not
depend on the executor or the number of workers.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sepl_tree import __version__
from sepl_tree.executors import execute
from sepl_tree.files import read_label_png, remove_stale_temporaries, write_label_png
from sepl_tree.inputs import InputConfig, InputReader
from sepl_tree.metrics import CONVENTIONS, ruled_confusion
from sepl_tree.outputs import output_done, plugin_fingerprints
from sepl_tree.plugins import PluginHost, load_host
from sepl_tree.provenance import masks_provenance
from sepl_tree.selection import Selector, bind_strategy

__all__ = ["ImageResult", "RunConfig", "RunJob", "run_images", "run_manifest", "run_settings"]


@dataclass(frozen=True)
class RunConfig:
    """Everything a dataset run needs; picklable, so workers rebuild their plugins from it."""

    inputs: InputConfig
    out_dir: Path
    strategy: str = "threshold"
    params: Mapping[str, Any] = field(default_factory=dict)
    overwrite: bool = False
    #: Ids whose output is made again although it is there: its inputs changed since it was made
    #: (:func:`sepl_tree.outputs.refresh_made_from`).
    redo: frozenset[str] = frozenset()
    #: How the scores against ``inputs.gt_dir`` are taken (a name of
    #: :data:`sepl_tree.metrics.CONVENTIONS`); no setting of the outputs.
    convention: str = "default"

    def output_path(self, image_id: str) -> Path:
        return self.out_dir / f"{image_id}.png"

    def done(self, image_id: str) -> bool:
        """Whether the image's output is finished (and so is reused unless ``overwrite``)."""
        return not self.overwrite and image_id not in self.redo and output_done(self.output_path(image_id))


@dataclass(frozen=True)
class ImageResult:
    """What happened to one image.

    ``confusion`` is ``int64 (2, K, K+1)``, the input's and the output's confusion matrices
    against the ground truth (the config's ``convention`` applied), when the run has one.
    """

    image_id: str
    masks: int
    changed_pixels: int
    no_masks: bool = False
    written: bool = True
    confusion: np.ndarray | None = None


@dataclass(frozen=True)
class RunJob:
    """The per-image job of ``sepl-tree run`` (a :class:`sepl_tree.executors.JobSpec`)."""

    config: RunConfig

    def resolve(self, host: PluginHost) -> tuple[Selector, InputReader]:
        """Look up the strategy and reader and check their parameters."""
        c = self.config
        return bind_strategy(host, c.strategy, c.params, c.inputs.num_classes), InputReader.from_host(c.inputs, host)

    @property
    def output_folders(self) -> tuple[Path, ...]:
        """Where its workers write (see :class:`sepl_tree.executors.JobSpec`)."""
        return (self.config.out_dir,)

    def setup(self) -> Callable[[str], ImageResult]:
        c = self.config
        selector, inputs = self.resolve(load_host(c.inputs.plugins))
        k, non_labels = c.inputs.num_classes, CONVENTIONS[c.convention].non_labels

        def process(image_id: str) -> ImageResult:
            path = c.output_path(image_id)
            if c.done(image_id):  # resumed: read back, to be scored (only sent here with GT)
                pseudo, out, n_masks, no_masks, written = inputs.pseudo(image_id), read_label_png(path, k), 0, False, False
            else:
                data = inputs.read(image_id)
                pseudo, n_masks, no_masks, written = data.pseudo, len(data.masks), data.no_masks, True
                out = selector(pseudo, data.masks, image_id)
                write_label_png(path, out)
            confusion = None
            if c.inputs.gt_dir is not None:
                gt = inputs.gt(image_id, pseudo.shape)
                confusion = np.stack([ruled_confusion(pseudo, gt, k, non_labels), ruled_confusion(out, gt, k, non_labels)])
            return ImageResult(image_id, n_masks, int(np.count_nonzero(out != pseudo)), no_masks, written, confusion)

        return process


def run_images(config: RunConfig, ids: list[str], workers: int = 1, executor: str = "process",
               **executor_options: Any) -> Iterator[ImageResult]:
    """Process ``ids`` and yield each result as it completes.

    Without ground truth, pass only the pending ids (``not config.done(i)``); with it, every id
    of the run, so that finished ones are scored too.
    """
    remove_stale_temporaries(config.out_dir)
    if not ids:
        return iter(())
    config.out_dir.mkdir(parents=True, exist_ok=True)
    return execute(RunJob(config), ids, executor=executor, workers=workers, **executor_options)


#: The settings of :func:`run_settings` a rerun may change (``claim_folder``'s ``free``):
#: ``missing_masks`` only says what an id without masks gets, and such an output is recorded as
#: made from no masks (``made_from.jsonl``), so it is made again once its masks appear, while
#: ``error`` refuses an id without masks before any work. Either way no output is reused wrongly.
FREE_SETTINGS = ("missing_masks",)


def run_settings(selector: Selector, inputs: InputReader) -> dict[str, Any]:
    """What decides a strategy's outputs, as ``run.json`` records it and a resumed run must match:
    strategy and checked parameters, reader and checked parameters, K, what an id without masks
    gets, the inputs and the plugins (a plugin file by its content too), the version, and how the
    masks were made where their folder records it (:func:`sepl_tree.provenance.masks_provenance`).

    ``compare`` records the same for each strategy's folder, so the two agree on what is done."""
    c = inputs.config
    return {
        "sepl_tree": __version__,
        "strategy": selector.strategy.name,
        "params": dict(selector.params),
        "reader": inputs.reader.name,
        "reader_params": dict(inputs.reader_params),
        "num_classes": c.num_classes,
        "missing_masks": c.missing_masks,
        "inputs": {"pseudo_labels": str(c.pseudo_dir), "masks": str(c.masks_dir),
                   "labels": None if c.labels is None else str(c.labels)},
        "plugins": plugin_fingerprints(c.plugins, {f"strategy {selector.strategy.name}": selector.source,
                                                   f"reader {inputs.reader.name}": inputs.source}),
        **({"masks_made_with": made} if (made := masks_provenance(c.masks_dir)) is not None else {}),
    }


def run_manifest(settings: Mapping[str, Any], counts: Mapping[str, int], started: str, seconds: float,
                 extra: Mapping[str, Any]) -> dict[str, Any]:
    """The ``run.json`` document: the settings (:func:`run_settings`), counts, versions, time."""
    return {
        "settings": dict(settings),
        "status": "finished",
        "counts": dict(counts),
        "versions": {"sepl_tree": __version__, "numpy": np.__version__, "python": platform.python_version()},
        "started": started,
        "seconds": seconds,
        **extra,
    }
