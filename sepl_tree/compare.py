"""Run several strategies on the same images and score them per failure subset.

Each image is read once (pseudo-label through the reader plugin, masks, ground truth), one
:class:`~sepl_tree.sample.Sample` is built (overlap computed once; the containment tree built
once per ``tau`` and only if a strategy or subset needs it), every strategy runs on it and its
output is written atomically to ``OUT/<strategy>/<id>.png``. The job returns the image's
confusion matrices (input pseudo-label and each strategy, :func:`sepl_tree.metrics.ruled_confusion`,
under the config's ``convention``) and its subset flags (:mod:`sepl_tree.subsets`).
:class:`CompareTotals` sums the matrices per subset: scores are dataset-level, the published
convention.

Resume: a strategy whose ``OUT/<strategy>/<id>.png`` exists is not run again for that image
(unless ``overwrite``); the file is read back and scored, so the totals are the same as on a
fresh run. Results do not depend on the
number of workers (integer sums; rows sorted by id).

Label maps are ``uint8 (H, W)``: 0 background, 1..K-1 classes, 255 ignore.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sepl_tree.bootstrap import (
    BOOTSTRAP_LEVEL,
    BOOTSTRAP_MIN_IMAGES,
    BOOTSTRAP_SEED,
    bootstrap_miou,
    interval,
    sparse_cells,
)
from sepl_tree.errors import SeplError
from sepl_tree.evaluate import scores_to_json
from sepl_tree.executors import execute
from sepl_tree.files import read_label_png, remove_stale_temporaries, write_label_png
from sepl_tree.images import read_image
from sepl_tree.inputs import InputConfig, InputReader, check_same_size
from sepl_tree.metrics import CONVENTIONS, ruled_confusion, scores
from sepl_tree.outputs import claim_folder, output_done
from sepl_tree.plugins import PluginHost, load_host
from sepl_tree.sample import Sample
from sepl_tree.selection import Selector, bind_strategy
from sepl_tree.subsets import SUBSETS, compute_subsets

__all__ = [
    "CompareConfig",
    "CompareJob",
    "CompareTotals",
    "ImageComparison",
    "METRICS",
    "RESERVED_NAMES",
    "SUBSET_TAU",
    "claim_strategy_folders",
    "compare_document",
    "disagreement",
    "run_compare",
    "strip_panels",
]

#: The tree used by the ``envelope`` and ``nested`` subsets (build_tree's default).
SUBSET_TAU = 0.9
#: Report metric -> attribute of :class:`sepl_tree.metrics.Scores`.
METRICS: dict[str, str] = {"miou": "miou", "precision": "mean_precision", "recall": "mean_recall"}
#: Folder names under ``OUT`` that are not strategy outputs.
RESERVED_NAMES = frozenset({"figures", "input"})


@dataclass(frozen=True)
class CompareConfig:
    """What ``sepl-tree compare`` needs; picklable.

    Attributes
    ----------
    inputs
        Where pseudo-labels, masks and ground truth (``gt_dir``, required) come from, the
        reader, K, plugins, ``--labels``, ``missing_masks``.
    out_dir
        The compare output folder (``OUT/<strategy>/<id>.png`` and the report).
    strategies
        Strategy names, in report order.
    params
        Strategy name -> its given parameters (coerced against the strategy's declaration).
    subsets
        The subsets to decide (see :data:`sepl_tree.subsets.SUBSETS`).
    overwrite
        Recompute outputs that exist.
    bootstrap
        Draws of the images for the intervals of the mIoU differences (:mod:`sepl_tree.bootstrap`);
        0: none.
    convention
        How the scores are taken (a name of :data:`sepl_tree.metrics.CONVENTIONS`): its rule for
        predicted non-labels in every matrix, its class average in the subsets' means and their
        bootstrap (a per-image row of ``compare.csv`` averages the classes defined in that image).
    """

    inputs: InputConfig
    out_dir: Path
    strategies: tuple[str, ...]
    params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    subsets: tuple[str, ...] = SUBSETS
    overwrite: bool = False
    bootstrap: int = 0
    #: Ids whose outputs are made again although they are there: out of date
    #: (:func:`sepl_tree.outputs.refresh_made_from`).
    redo: frozenset[str] = frozenset()
    convention: str = "default"

    def output_path(self, strategy: str, image_id: str) -> Path:
        return self.out_dir / strategy / f"{image_id}.png"


@dataclass(frozen=True)
class ImageComparison:
    """One image's result: confusion matrices, subset flags and how much the strategies differ."""

    image_id: str
    input_cm: np.ndarray
    cms: dict[str, np.ndarray]
    flags: dict[str, bool]
    details: dict[str, Any]
    disagreement: float
    masks: int
    computed: tuple[str, ...] = ()
    synthetic: bool = False
    no_masks: bool = False  # (--missing-masks keep, and this image had none)


def disagreement(outputs: Sequence[np.ndarray]) -> float:
    """Share of pixels where the label maps are not all equal (0 for fewer than two maps).

    >>> disagreement([np.array([[1, 1, 0, 0]]), np.array([[1, 2, 0, 0]])])
    0.25
    """
    if len(outputs) < 2:
        return 0.0
    first = outputs[0]
    differ = np.zeros(first.shape, bool)
    for out in outputs[1:]:
        differ |= out != first
    return round(float(differ.mean()), 6)


@dataclass(frozen=True)
class CompareJob:
    """The per-image job of ``sepl-tree compare`` (a :class:`sepl_tree.executors.JobSpec`)."""

    config: CompareConfig

    def resolve(self, host: PluginHost) -> tuple[dict[str, Selector], InputReader]:
        """The bound strategies (in order) and the input reader, parameters checked."""
        c = self.config
        selectors = {name: bind_strategy(host, name, c.params.get(name, {}), c.inputs.num_classes)
                     for name in c.strategies}
        return selectors, InputReader.from_host(c.inputs, host)

    @property
    def output_folders(self) -> tuple[Path, ...]:
        """Where its workers write (see :class:`sepl_tree.executors.JobSpec`)."""
        return tuple(self.config.out_dir / name for name in self.config.strategies)

    def setup(self) -> Callable[[str], ImageComparison]:
        c = self.config
        k, non_labels = c.inputs.num_classes, CONVENTIONS[c.convention].non_labels
        selectors, inputs = self.resolve(load_host(c.inputs.plugins))
        thr = selectors["threshold"].params if "threshold" in selectors else {}
        t1, t2 = float(thr.get("t1", 0.5)), float(thr.get("t2", 0.85))

        def process(image_id: str) -> ImageComparison:
            data = inputs.read(image_id)
            pseudo, masks, gt = data.pseudo, data.masks, data.gt
            sample = Sample(pseudo, masks, k, image_id=image_id)  # shares overlap and trees among strategies
            outputs, computed = {}, []
            for name, selector in selectors.items():
                path = c.output_path(name, image_id)
                if not c.overwrite and image_id not in c.redo and output_done(path):
                    out = read_label_png(path, k)
                    check_same_size(path, out, pseudo.shape, "pseudo-label")
                else:
                    out = selector.apply(sample)
                    write_label_png(path, out)
                    computed.append(name)
                outputs[name] = out
            subsets = compute_subsets(sample, gt, names=c.subsets, t1=t1, t2=t2, tau=SUBSET_TAU)
            maps = list(outputs.values()) if len(outputs) > 1 else [pseudo, *outputs.values()]
            return ImageComparison(
                image_id=image_id,
                input_cm=ruled_confusion(pseudo, gt, k, non_labels),
                cms={name: ruled_confusion(out, gt, k, non_labels) for name, out in outputs.items()},
                flags=subsets.flags,
                details=subsets.details,
                disagreement=disagreement(maps),
                masks=len(masks),
                computed=tuple(computed),
                synthetic=any(bool(r.get("synthetic")) for r in masks.records),
                no_masks=data.no_masks,
            )

        return process


def _num(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 4)


def _change(point: float, drawn: np.ndarray | None) -> dict[str, Any]:
    """A change in mIoU and its bootstrap interval (none without ``drawn``), as ``compare.json`` holds them."""
    found = None if drawn is None else interval(drawn)
    return {"change": _num(point), "interval": None if found is None else [_num(found[0]), _num(found[1])]}


class CompareTotals:
    """Confusion matrices summed per subset, and one row per image; with ``bootstrap`` draws, each
    image's matrices too (sparse), for the intervals of the mIoU differences. ``average``: the
    classes a subset's means are over (:func:`sepl_tree.metrics.scores`)."""

    def __init__(self, strategies: Sequence[str], subsets: Sequence[str], num_classes: int,
                 bootstrap: int = 0, average: str = "defined") -> None:
        self.strategies, self.subsets, self.num_classes = tuple(strategies), tuple(subsets), num_classes
        self.bootstrap, self.average = bootstrap, average
        #: With ``bootstrap``: per image, its columns' non-zero cells packed in one ``int32 (2, n)``
        #: array (indices, counts) and where each column's run starts (about 1 KB an image).
        self.cells: dict[str, tuple[np.ndarray, tuple[int, ...]]] = {}
        shape = (num_classes, num_classes + 1)
        columns = ("input", *self.strategies)
        self.cm = {s: {col: np.zeros(shape, np.int64) for col in columns} for s in self.subsets}
        self.images = {s: 0 for s in self.subsets}
        self.rows: dict[str, dict[str, Any]] = {}
        self.details: dict[str, dict[str, Any]] = {}
        self.synthetic_masks = 0
        self.kept_without_masks = 0

    def add(self, r: ImageComparison) -> None:
        self.synthetic_masks += r.synthetic
        self.kept_without_masks += r.no_masks
        for subset in self.subsets:
            if r.flags.get(subset):
                self.images[subset] += 1
                self.cm[subset]["input"] += r.input_cm
                for name in self.strategies:
                    self.cm[subset][name] += r.cms[name]
        row: dict[str, Any] = {"id": r.image_id, "masks": r.masks, "disagreement": r.disagreement}
        row.update({s: int(r.flags.get(s, False)) for s in self.subsets})
        for col, cm in (("input", r.input_cm), *r.cms.items()):
            s = scores(cm)
            row.update({f"{col}_{m}": _num(getattr(s, attr)) for m, attr in METRICS.items()})
        self.rows[r.image_id] = row
        self.details[r.image_id] = {"subsets": [s for s in self.subsets if r.flags.get(s)], "details": r.details}
        if self.bootstrap:
            parts = [sparse_cells(r.input_cm), *(sparse_cells(r.cms[n]) for n in self.strategies)]
            starts = tuple(np.cumsum([0, *(len(idx) for idx, _ in parts)]).tolist())
            # (int32 holds any count: an image has at most files.MAX_PIXELS, about 89M, pixels)
            packed = np.concatenate([np.stack([idx, counts.astype(np.int32)]) for idx, counts in parts], axis=1)
            self.cells[r.image_id] = (packed, starts)

    def _columns(self, image_id: str) -> list[tuple[np.ndarray, np.ndarray]]:
        packed, starts = self.cells[image_id]
        return [(packed[0, a:b], packed[1, a:b]) for a, b in zip(starts, starts[1:])]

    def intervals(self, subset: str, miou: Mapping[str, float]) -> dict[str, Any] | None:
        """The bootstrap of ``subset`` (``None`` without draws or images): each strategy's mIoU
        change against the input and against the first strategy (from ``miou``, the subset's
        scores by column), each with its interval ``[low, high]`` (``None`` under
        :data:`~sepl_tree.bootstrap.BOOTSTRAP_MIN_IMAGES` images)."""
        members = sorted(i for i in self.cells if subset in self.details[i]["subsets"])  # draws by id
        if not self.bootstrap or not members:
            return None
        draws = self.bootstrap if len(members) >= BOOTSTRAP_MIN_IMAGES else 0
        drawn = bootstrap_miou([self._columns(i) for i in members], self.num_classes, draws, average=self.average)
        first = self.strategies[0]
        doc: dict[str, Any] = {"draws": draws, "level": BOOTSTRAP_LEVEL, "seed": BOOTSTRAP_SEED,
                               "against_input": {}, "against": first, "against_first": {}}
        for c, name in enumerate(self.strategies, start=1):
            doc["against_input"][name] = _change(miou[name] - miou["input"], drawn[c] - drawn[0] if draws else None)
            if name != first:
                doc["against_first"][name] = _change(miou[name] - miou[first], drawn[c] - drawn[1] if draws else None)
        return doc

    def table(self) -> list[dict[str, Any]]:
        """Per-image rows sorted by id (the ``compare.csv`` content)."""
        return [self.rows[i] for i in sorted(self.rows)]

    def most_disagreeing(self, n: int) -> list[str]:
        """The ``n`` image ids where the strategies differ most (ties by id)."""
        ranked = sorted(self.rows.values(), key=lambda row: (-row["disagreement"], row["id"]))
        return [row["id"] for row in ranked[:n] if row["disagreement"] > 0]

    def summary(self, class_names: Sequence[str]) -> dict[str, Any]:
        """Per subset: image count, input scores, each strategy's scores and deltas vs input."""
        out: dict[str, Any] = {}
        for subset in self.subsets:
            n = self.images[subset]
            before = scores(self.cm[subset]["input"], self.average)
            miou = {"input": before.miou}
            entry: dict[str, Any] = {"images": n, "input": scores_to_json(before, class_names, n), "strategies": {}}
            for name in self.strategies:
                after = scores(self.cm[subset][name], self.average)
                miou[name] = after.miou
                doc = scores_to_json(after, class_names, n)
                doc["delta"] = {m: _num(getattr(after, a) - getattr(before, a)) for m, a in METRICS.items()}
                entry["strategies"][name] = doc
            if (drawn := self.intervals(subset, miou)) is not None:
                entry["bootstrap"] = drawn
            out[subset] = entry
        return out


def strip_panels(config: CompareConfig, image_id: str, images_dir: Path | None = None,
                 host: PluginHost | None = None) -> list[tuple[str, np.ndarray]]:
    """The panels of one image's strip: image | pseudo-label | masks | each strategy | GT (RGB).

    The strategies' panels are read back from ``OUT/<strategy>/<id>.png``; ``host`` (the loaded
    plugins) saves loading them again.
    """
    from sepl_tree.report import label_to_rgb, masks_overlay

    k = config.inputs.num_classes
    data = InputReader.from_host(config.inputs, host or load_host(config.inputs.plugins)).read(image_id)
    image = None if images_dir is None else read_image(images_dir, image_id, data.pseudo.shape)
    panels = [] if image is None else [("image", image)]
    panels += [("pseudo-label", label_to_rgb(data.pseudo)),
               (f"masks ({len(data.masks)})", masks_overlay(data.masks.dense, image))]
    panels += [(name, label_to_rgb(read_label_png(config.output_path(name, image_id), k)))
               for name in config.strategies]
    panels.append(("ground truth", label_to_rgb(data.gt)))
    return panels


def claim_strategy_folders(config: CompareConfig, selectors: Mapping[str, Selector],
                           inputs: InputReader) -> dict[str, dict[str, Any]]:
    """Make each ``OUT/<strategy>/`` the folder of that strategy's settings (its ``run.json``, as
    ``run`` writes it), or refuse in one line (see :func:`sepl_tree.outputs.claim_folder`);
    return each strategy's settings."""
    from sepl_tree.pipeline import FREE_SETTINGS, run_settings

    for name in config.strategies:
        if name in RESERVED_NAMES:
            raise SeplError(f"a strategy named {name!r} would clash with the report folder OUT/{name}/")
    settings = {name: run_settings(selector, inputs) for name, selector in selectors.items()}
    for name in selectors:
        claim_folder(config.out_dir / name, "run.json", settings[name], config.overwrite,
                     lambda d: d.glob("*.png"), option=f"--out (strategy {name})", free=FREE_SETTINGS)
    return settings


def run_compare(config: CompareConfig, ids: Sequence[str], workers: int = 1,
                on_image: Callable[[ImageComparison], None] | None = None, executor: str = "process",
                **executor_options: Any) -> CompareTotals:
    """Compare the strategies on ``ids``; ``on_image`` sees each result as it completes.

    ``executor`` is one of :data:`sepl_tree.executors.EXECUTORS` (``ray`` takes ``ray_address``).
    """
    totals = CompareTotals(config.strategies, config.subsets, config.inputs.num_classes, config.bootstrap,
                           CONVENTIONS[config.convention].average)
    if not ids:
        raise SeplError("no images to compare")
    config.out_dir.mkdir(parents=True, exist_ok=True)
    for name in config.strategies:
        remove_stale_temporaries(config.out_dir / name)
    results: Iterator[ImageComparison] = execute(CompareJob(config), ids, executor=executor, workers=workers,
                                                 **executor_options)
    for result in results:
        totals.add(result)
        if on_image is not None:
            on_image(result)
    return totals


#: The subset thresholds recorded in ``compare.json`` (see :mod:`sepl_tree.subsets`).
THRESHOLD_NAMES = ("MIN_REGION_FRACTION", "PSEUDO_MIN_RECALL", "SAM_MATCH_IOU", "MERGE_MIN_SHARE",
                   "ENVELOPE_MAX_INSIDE", "ENVELOPE_MIN_BACKGROUND", "NESTED_MIN_DEPTH")


def compare_document(config: CompareConfig, selectors: Mapping[str, Selector], reader_params: Mapping[str, Any],
                     totals: CompareTotals, summary: Mapping[str, Any], computed: int, seconds: float,
                     images_dir: Path | None = None, given: Mapping[str, str] | None = None,
                     class_names: Sequence[str] = ()) -> dict[str, Any]:
    """The ``compare.json`` document: settings, counts, per-subset results and per-image evidence.

    ``given`` holds the paths as the user typed them (default: the config's absolute ones);
    ``class_names``, the names of the class indices in the per-image evidence (``class``).
    """
    from sepl_tree import subsets as subsets_module

    c, n = config.inputs, len(totals.rows)
    typed = dict(given or {})
    return {
        "strategies": list(config.strategies),
        "params": {name: s.params for name, s in selectors.items()},
        "reader": c.reader,
        "reader_params": dict(reader_params),
        "num_classes": c.num_classes,
        "class_names": list(class_names),
        "inputs": {"pseudo_labels": typed.get("pseudo_labels", str(c.pseudo_dir)),
                   "masks": typed.get("masks", str(c.masks_dir)), "gt": typed.get("gt", str(c.gt_dir)),
                   "images": None if images_dir is None else str(images_dir),
                   "plugins": list(typed.get("plugins", c.plugins))},
        "subsets": list(config.subsets),
        "bootstrap": config.bootstrap,
        "convention": config.convention,
        "thresholds": {name: getattr(subsets_module, name) for name in THRESHOLD_NAMES},
        "counts": {"images": n, "synthetic_masks": totals.synthetic_masks,
                   "kept_without_masks": totals.kept_without_masks, "outputs_computed": computed,
                   "outputs_reused": n * len(config.strategies) - computed},
        "seconds": seconds,
        "results": dict(summary),
        "images": {i: totals.details[i] for i in sorted(totals.details)},
    }
