"""``sepl-tree coco-gt``: COCO semantic ground truth from an instances JSON."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from sepl_tree.cli.common import (
    IdsOpt,
    OutOpt,
    OverwriteOpt,
    class_table,
    console,
    err_console,
    finish_folder,
    image_progress,
    out_of_date,
    read_ids,
    run_guarded,
    say_checking,
    warn,
)
from sepl_tree.files import atomic_write_bytes, file_stamp, read_json, write_label_png
from sepl_tree import __version__
from sepl_tree.classes import COCO_CATEGORY_IDS
from sepl_tree.errors import SeplError
from sepl_tree.outputs import check_apart, claim_folder, noting_a_stop, output_done, pending_ids

__all__ = ["NameBy", "Rule", "coco_gt_command"]


#: From this size on, a line says that the instances JSON is being read (and checked).
SAY_READING_BYTES = 50_000_000


class Rule(str, Enum):
    """How instances become one label map (:data:`sepl_tree.coco.RULES`)."""

    recam = "recam"
    smaller_wins = "smaller-wins"


class NameBy(str, Enum):
    """How the output files are named."""

    stem = "stem"
    id = "id"


def _rule_of_older_folders(out: Path) -> None:
    """A folder made before ``--rule`` existed was made with ``smaller-wins``: say so in its
    ``coco-gt.json``, so that rerunning it with that rule resumes and any other is refused."""
    manifest = out / "coco-gt.json"
    if not manifest.is_file():
        return
    doc = read_json(manifest)
    settings = doc.get("settings") if isinstance(doc, dict) else None
    if isinstance(settings, dict) and "rule" not in settings:
        doc["settings"] = {**settings, "rule": Rule.smaller_wins.value}
        atomic_write_bytes(manifest, json.dumps(doc, indent=2).encode())


def coco_gt_command(
    instances: Annotated[Path, typer.Option("--instances", metavar="FILE.json", help="A COCO instances JSON (e.g. instances_val2014.json).", show_default=False)],
    out: OutOpt,
    ids: IdsOpt = None,
    name_by: Annotated[NameBy, typer.Option(
        "--name-by", help="Output names: 'stem' (<file_name stem>.png, as CAM files are named) or 'id' "
                          "(<numeric image id>.png, as IRN/CLIMS's COCO loaders read them).")] = NameBy.stem,
    rule: Annotated[Rule, typer.Option(
        "--rule", help="'recam': ReCAM's mscoco/annToMask.py (CLIMS, LPCAM): instances in the file's order, the "
                       "later wins, crowds left background. 'smaller-wins': the smaller instance wins, crowds 255 "
                       "(ignore) where no instance covers them.")] = Rule.recam,
    overwrite: OverwriteOpt = False,
) -> None:
    """COCO semantic ground truth from an instances JSON: <out>/<file stem>.png, classes 1..80.

    By default the rule of ReCAM's annToMask.py, the one a WSSS method publishes: instances
    painted in the file's order (a later one wins), crowd regions left background (see
    sepl_tree.coco and docs/readers.md).
    """

    def body() -> None:
        from sepl_tree.coco import CocoInstances

        if instances.is_file() and instances.stat().st_size >= SAY_READING_BYTES:  # COCO train's: 450 MB, seconds
            err_console.print(f"reading {instances} ({instances.stat().st_size / 1e6:.0f} MB) ...", highlight=False,
                              soft_wrap=True)
        stamp = file_stamp(instances)  # before reading it: a file replaced meanwhile is not taken for the one read
        coco = CocoInstances.load(instances)  # the whole file is checked here, before anything is written
        if sorted(coco.catmap) != sorted(COCO_CATEGORY_IDS):
            warn(f"{instances}: its {len(coco.catmap)} categories are not COCO's 80, so classes are numbered "
                 f"1..{len(coco.catmap)} in its own id order (ReCAM's script and the COCO baselines number COCO's "
                 "80: a label map of a file that lists fewer is not theirs)")
        wanted = read_ids(ids) or coco.ids()
        unknown = [i for i in wanted if i not in coco.images]
        if unknown:
            raise SeplError(f"{ids}: {len(unknown)} id(s) are not images of {instances} (ids are file_name "
                            f"stems), e.g. {unknown[0]!r}")
        check_apart(out, "--out", {"--instances": instances})
        settings = {"sepl_tree": __version__, "instances": str(instances.resolve()), "name_by": name_by.value,
                    "rule": rule.value}
        _rule_of_older_folders(out)
        claim_folder(out, "coco-gt.json", settings, overwrite, lambda d: d.glob("*.png"))
        names = {i: (str(coco.images[i]["id"]) if name_by is NameBy.id else i) for i in wanted}
        say_checking(wanted, f"label maps already in {out}")
        stale = out_of_date(dict.fromkeys(wanted, (stamp,)), [out], overwrite, f"{instances} changed",  # (one file)
                            lambda i: f"{names[i]}.png", what="label map(s)")
        todo = pending_ids(wanted, lambda i: i not in stale and output_done(out / f"{names[i]}.png"), overwrite)
        counts, images = np.zeros(256, np.int64), np.zeros(256, np.int64)
        with noting_a_stop(out, "coco-gt.json", settings), image_progress("coco-gt", len(todo)) as step:
            for image_id in todo:
                label = coco.label(image_id, rule.value)
                write_label_png(out / f"{names[image_id]}.png", label)
                found = np.bincount(label.reshape(-1), minlength=256)
                counts += found
                images += found > 0
                step()
        finish_folder(out, "coco-gt.json", settings, len(wanted), len(todo), made_again=len(stale))
        if todo:
            console.print(class_table("COCO ground truth", counts, images, coco.num_classes, coco.class_names))

    run_guarded(body, resumes=True)
