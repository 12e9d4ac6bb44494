"""``sepl-tree eval``: mIoU, precision and recall of label PNGs against ground truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from sepl_tree import __version__
from sepl_tree.cli.common import (
    ConventionName,
    ConventionOpt,
    DatasetConfigOpt,
    IdsOpt,
    NumClassesOpt,
    WorkersOpt,
    config_class_names,
    console,
    image_progress,
    note_unscored,
    print_scores,
    read_ids,
    run_guarded,
    say_convention,
    warn,
)
from sepl_tree.errors import InputError, SeplError, is_input_file
from sepl_tree.evaluate import evaluate_folders, scores_to_json
from sepl_tree.files import atomic_write_bytes, naming_hint
from sepl_tree.label_maps import more_classes_hint
from sepl_tree.metrics import CONVENTIONS, scores

#: What the warning about non-label predictions says happened to them, by rule.
_NON_LABELS_COUNT_AS = {
    "miss": "they count as misses of the GT class",
    "drop": "those pixels are left out",
    "background": "those pixels are left out (255 reads as background)",
}

__all__ = ["eval_command"]


def _ids(pred: Path, ids_file: Path | None) -> list[str]:
    ids = read_ids(ids_file)
    if ids is None:
        if not pred.is_dir():
            raise SeplError(f"{pred}: prediction folder not found")
        ids = sorted(p.stem for p in pred.glob("*.png"))
        if not ids:
            raise SeplError(f"{pred}: no .png label maps to evaluate")
    return ids


def _absent(folder: Path, ids: list[str]) -> list[str]:
    """The ids without an ``<id>.png`` in ``folder``; a folder or broken link of that name is an
    error, not a missing file (``--allow-missing`` would leave it out without a word)."""
    return [i for i in ids if not is_input_file(folder / f"{i}.png", "label map PNG")]


def _missing(ids: list[str], pred: Path, gt: Path, allow_missing: bool) -> list[str]:
    """The ids to score; a missing ground-truth file is an error, a missing prediction too unless
    ``allow_missing`` (then the rest is scored and a warning says how many were left out)."""
    no_gt = _absent(gt, ids)
    if no_gt:
        raise InputError(gt / f"{no_gt[0]}.png", f"file not found ({len(no_gt)} of {len(ids)} ground-truth files "
                                                 "are missing)" + naming_hint(gt, no_gt[0], (".png",)))
    no_pred = _absent(pred, ids)
    if no_pred and not allow_missing:
        raise InputError(pred / f"{no_pred[0]}.png", f"file not found ({len(no_pred)} of {len(ids)} predictions are "
                                                     "missing; --allow-missing scores the rest)"
                                                     + naming_hint(pred, no_pred[0], (".png",)))
    if no_pred:
        warn(f"{len(no_pred)} of {len(ids)} prediction file(s) are missing (e.g. {no_pred[0]}.png); "
             f"scoring the other {len(ids) - len(no_pred)}")
    left_out = set(no_pred)
    return [i for i in ids if i not in left_out]


def _check_json_out(json_out: Path | None, pred: Path, gt: Path) -> None:
    """Refuse a ``--json`` file that would replace a label map ``eval`` reads (a ``.png`` in either folder)."""
    if json_out is None or json_out.suffix.lower() != ".png":
        return
    for option, folder in (("--pred", pred), ("--gt", gt)):
        if json_out.resolve().parent == folder.resolve():
            raise SeplError(f"--json {json_out}: would replace a label map of {option} {folder}; "
                            "give a .json file name")


def eval_command(
    ctx: typer.Context,
    pred: Annotated[Path, typer.Option("--pred", metavar="DIR", help="Folder of predicted label PNGs (<id>.png).")],
    gt: Annotated[Path, typer.Option("--gt", metavar="DIR", help="Folder of ground-truth label PNGs (255 = ignore).")],
    num_classes: NumClassesOpt = 21,
    ids: IdsOpt = None,
    json_out: Annotated[Path | None, typer.Option("--json", metavar="FILE", help="Also write the scores to this JSON file.", show_default=False)] = None,
    allow_missing: Annotated[bool, typer.Option("--allow-missing", help="Score the images that have a prediction when some have none (says how many).")] = False,
    workers: WorkersOpt = 1,
    config: DatasetConfigOpt = None,
    convention: ConventionOpt = ConventionName.default,
) -> None:
    """mIoU, precision and recall of label maps against ground truth (published conventions)."""

    def body() -> None:
        rules = CONVENTIONS[convention.value]
        names = config_class_names(ctx, config, num_classes)
        if not gt.is_dir():
            raise SeplError(f"{gt}: ground-truth folder not found")
        _check_json_out(json_out, pred, gt)
        listed = _ids(pred, ids)
        id_list = _missing(listed, pred, gt, allow_missing)
        if ids is None:
            note_unscored(gt, id_list, "a prediction")
        with image_progress("evaluating", len(id_list)) as step:
            cm, count, not_labels = evaluate_folders(pred, gt, id_list, num_classes, workers=workers, on_image=step,
                                                     non_labels=rules.non_labels)
        if not_labels:
            first = next(iter(not_labels))
            warn(f"{len(not_labels)} of {count} predictions hold values that are no label at K = {num_classes} "
                 f"(e.g. {pred / first}.png: {not_labels[first]}); {_NON_LABELS_COUNT_AS[rules.non_labels]} "
                 "(README, Conventions)" + more_classes_hint(not_labels[first], num_classes))
        s = scores(cm, rules.average)
        print_scores(f"{pred} ({count} images)", names, {"": s})
        say_convention(convention.value)
        if json_out is not None:
            if json_out.is_dir():
                raise SeplError(f"--json {json_out}: is a folder; give a file name, e.g. {json_out / 'scores.json'}")
            doc = {**scores_to_json(s, names, count), "source": {
                "pred": str(pred.resolve()), "gt": str(gt.resolve()), "num_classes": num_classes,
                "ids": ids and str(ids.resolve()), "missing_predictions": len(listed) - len(id_list),
                "convention": convention.value,
                "sepl_tree": __version__}}
            atomic_write_bytes(json_out, json.dumps(doc, indent=2).encode())
            console.print(f"scores written to {json_out}")

    run_guarded(body)
