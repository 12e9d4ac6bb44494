"""Label quality: every strategy on every bed, REAL SAM masks and SYNTHETIC ones, in one table.

Usage::

    python benchmarks/quality.py [--beds real,synth,demo] [--seeds 0,1,2] [--rates 0.3,0.5]
                                 [--plugin FILE.py ...] [--workers 2] [--limit N]
                                 [--markdown FILE] [--json FILE]

Beds (each one skipped, with a line saying so, when its data is not here):

- ``real SAM 2.1``: ``../shared/data/sam2-voc-val-dev``: REAL SAM 2.1 hiera-large masks
  (box-prompted, multimask output), CAM-like pseudo-labels and the VOC ground truth. Also
  reported on the two halves of its ids (``crc32(id) % 2``), a first look at how much of a
  difference is the noise of these few hundred images.
- ``synth r<rate> s<seed>``: SYNTHETIC masks, made by :mod:`sepl_tree.synth` from the ground
  truth of ``../shared/data/voc2012-sample`` (what ``sepl-tree synth --seed S --envelope-rate R``
  writes), with that sample's real TransCAM pseudo-labels.
- ``demo``: the 16 SYNTHETIC scenes of ``sepl-tree run`` with no inputs.

Rows: ``input`` (the pseudo-label), every registered strategy at its defaults, and ``GT-guided``
(each mask assigned to a class as usual and kept when more than half of it lies in that class's
ground truth: the room a selection rule has). mIoU, mean precision and mean recall in %, from one
confusion matrix per bed (GT 255 ignored), as ``sepl-tree eval`` computes them; Δ = mIoU minus
``threshold``'s on the same bed.

On the synthetic beds, whose masks say what they are (``kind``), the envelope target of the
tree: *Env* images are those where ``threshold`` keeps an ``envelope`` mask; the *gap* is
``threshold``'s mIoU there with the envelope masks removed minus with them; *rec* is the share of
the gap a strategy recovers on Env; *Δ other* its mIoU minus ``threshold``'s on the other images.

The second table compares the structure of the masks: real SAM 2.1 against ``synth`` (default
prompt generator and the legacy one), at envelope rate 0.3 and seed 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL = SHARED / "sam2-voc-val-dev"
VOC = SHARED / "voc2012-sample"
NUM_CLASSES = 21
INPUT, GUIDED, NO_ENVELOPE = "input", "GT-guided", "threshold without envelopes"
MIN_PROMPTS = 20  # prompts of several outputs needed for the prompt columns of the structure table

_selectors: dict | None = None
_plugins: list[str] = []


# ------------------------------------------------------------------------------- one image


def _get_selectors() -> dict:
    """Every registered strategy (loop-* oracles aside) bound to its defaults, threshold first."""
    global _selectors
    if _selectors is None:
        from sepl_tree.plugins import load_host
        from sepl_tree.selection import bind_strategy

        host = load_host(_plugins, autoload=False)
        names = ["threshold", *sorted(n for n in host.strategies if n != "threshold" and not n.startswith("loop-"))]
        _selectors = {n: bind_strategy(host, n, {}, NUM_CLASSES) for n in names}
    return _selectors


def _init_worker(plugins: list[str]) -> None:
    os.environ.setdefault("SEPL_TREE_DISABLE_PLUGIN_AUTOLOAD", "1")
    _plugins[:] = plugins


def gt_guided(sample, gt: np.ndarray) -> np.ndarray:
    """Masks assigned as usual, kept when more than half of the mask lies in its class's ground truth."""
    from sepl_tree.masks.rle import pack_rows
    from sepl_tree.painting import paint_kept

    masks, assigned = sample.masks, sample.assigned
    keep = np.zeros(len(masks), bool)
    flat_gt = masks.flat_label(gt)
    for k in np.unique(assigned[assigned >= 0]):
        bits = pack_rows((flat_gt == k)[None])[0]
        idx = np.flatnonzero(assigned == k)
        inside = np.bitwise_count(masks.packed[idx] & bits).sum(axis=1)
        keep[idx] = inside > 0.5 * masks.areas[idx]
    return paint_kept(sample, keep)


def load_item(bed: tuple, image_id: str):
    """``(pseudo, gt, masks)`` of one image of a bed (``("real",)``, ``("synth", seed, rate, prompts)``)."""
    from sepl_tree.files import read_label_png
    from sepl_tree.masks import read_masks

    if bed[0] == "real":
        pseudo = read_label_png(REAL / "pseudo" / f"{image_id}.png", NUM_CLASSES)
        gt = read_label_png(REAL / "gt" / f"{image_id}.png", NUM_CLASSES)
        return pseudo, gt, read_masks(REAL / "masks_rle", image_id, pseudo.shape)
    from sepl_tree.synth import SynthConfig
    from sepl_tree.synth.dataset import synth_image

    _, seed, rate, prompts = bed
    gt = read_label_png(VOC / "SegmentationClass" / f"{image_id}.png", NUM_CLASSES)
    pseudo = read_label_png(VOC / "pseudo_labels" / "transcam" / f"{image_id}.png", NUM_CLASSES)
    masks = synth_image(VOC, image_id, seed, SynthConfig(envelope_rate=rate, prompts=prompts)).masks
    return pseudo, gt, masks


def score_image(image_id: str, pseudo: np.ndarray, gt: np.ndarray, masks) -> tuple[list[str], dict[str, np.ndarray]]:
    """Which subsets the image belongs to, and the confusion matrix of every row on it."""
    from sepl_tree.metrics import confusion_matrix
    from sepl_tree.sample import Sample

    selectors = _get_selectors()
    sample = Sample(pseudo, masks, NUM_CLASSES, image_id=image_id)
    outputs = {INPUT: pseudo, **{n: s.apply(sample) for n, s in selectors.items()}, GUIDED: gt_guided(sample, gt)}
    subsets = ["all", f"half {zlib.crc32(image_id.encode()) % 2}"]
    kinds = np.array([r.get("kind") for r in masks.records], dtype=object)
    if (kinds != None).any():  # noqa: E711 -- synthetic masks say what they are
        envelope = kinds == "envelope"
        subsets.append("env" if (sample.sepl_keep() & envelope).any() else "other")
        stay = np.flatnonzero(~envelope)
        outputs[NO_ENVELOPE] = selectors["threshold"](pseudo, masks.subset(stay), image_id)
    return subsets, {name: confusion_matrix(out, gt, NUM_CLASSES) for name, out in outputs.items()}


def score_job(job: tuple[tuple, str, bool]) -> tuple[list[str], dict[str, np.ndarray], dict[str, list[float]] | None]:
    """One image of a bed: its subsets and confusion matrices, and (if asked) its mask-structure statistics."""
    bed, image_id, with_structure = job
    pseudo, gt, masks = load_item(bed, image_id)
    subsets, cms = score_image(image_id, pseudo, gt, masks)
    return subsets, cms, mask_structure(masks, gt) if with_structure else None


# -------------------------------------------------------------------------------- one bed


@dataclass
class BedResult:
    name: str
    images: int = 0
    cms: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # subset -> row -> confusion matrix
    counts: dict[str, int] = field(default_factory=dict)  # subset -> images
    stats: dict[str, list[float]] = field(default_factory=dict)  # mask-structure statistics, when measured
    seconds: float = 0.0

    def add(self, subsets: list[str], cms: dict[str, np.ndarray], stats: dict[str, list[float]] | None = None) -> None:
        self.images += 1
        for key, values in (stats or {}).items():
            self.stats.setdefault(key, []).extend(values)
        for subset in subsets:
            self.counts[subset] = self.counts.get(subset, 0) + 1
            into = self.cms.setdefault(subset, {})
            for name, cm in cms.items():
                into[name] = into.get(name, 0) + cm


def voc_sample_ids() -> list[str]:
    from sepl_tree.synth.dataset import voc_ids

    return [i for i in voc_ids(VOC) if (VOC / "pseudo_labels" / "transcam" / f"{i}.png").is_file()]


def measure_bed(name: str, bed: tuple, ids: list[str], pool: ProcessPoolExecutor | None,
                structure: bool = False) -> BedResult:
    start, result = time.perf_counter(), BedResult(name)
    jobs = [(bed, i, structure) for i in ids]
    for subsets, cms, stats in (pool.map(score_job, jobs, chunksize=4) if pool else map(score_job, jobs)):
        result.add(subsets, cms, stats)
    result.seconds = time.perf_counter() - start
    return result


def measure_demo() -> BedResult:
    from sepl_tree.demo import make_scene

    start, result = time.perf_counter(), BedResult("demo")
    rng = np.random.default_rng(0)  # as write_demo(seed=0) draws its 16 scenes
    for n in range(16):
        scene = make_scene(rng)
        result.add(*score_image(f"demo_{n:03d}", scene.pseudo, scene.gt, scene.masks))
    result.seconds = time.perf_counter() - start
    return result


def bed_rows(bed: BedResult) -> list[dict]:
    """One row per input / strategy / GT-guided: mIoU, P, R, Δ vs threshold, halves, rec, Δ other."""
    from sepl_tree.metrics import scores

    def miou(subset: str, name: str) -> float:
        cm = bed.cms.get(subset, {}).get(name)
        return float("nan") if cm is None else scores(cm).miou

    gap = miou("env", NO_ENVELOPE) - miou("env", "threshold") if "env" in bed.cms else float("nan")
    rows = []
    for name, cm in bed.cms["all"].items():
        if name == NO_ENVELOPE:
            continue
        s = scores(cm)
        row = {"bed": bed.name, "images": bed.images, "row": name, "miou": s.miou, "precision": s.mean_precision,
               "recall": s.mean_recall, "delta": s.miou - miou("all", "threshold"),
               "delta_halves": [miou(f"half {h}", name) - miou(f"half {h}", "threshold") for h in (0, 1)]}
        if "env" in bed.cms or "other" in bed.cms:
            row["env_images"] = bed.counts.get("env", 0)
            row["gap"] = gap
            row["rec"] = (miou("env", name) - miou("env", "threshold")) / gap if gap > 0 else float("nan")
            row["delta_other"] = miou("other", name) - miou("other", "threshold")
        rows.append(row)
    return rows


# ------------------------------------------------------------------------- mask structure


def prompt_structure(masks) -> dict[str, list[float]]:
    """Per prompt of several outputs: outputs, the smaller outputs' containment in the largest, and
    how much of the largest the others cover; per tree parent: whether its children cover 90 %."""
    from sepl_tree.prompts import prompt_ids

    ids = prompt_ids(masks.records)
    bits, areas = masks.packed, masks.areas
    out: dict[str, list[float]] = {"outputs": [], "containment": [], "largest_covered": [], "children_cover": []}
    for p in np.unique(ids[ids >= 0]):
        members = np.flatnonzero(ids == p)
        out["outputs"].append(len(members))
        if len(members) < 2:
            continue
        big = members[np.argmax(areas[members])]
        others = np.bitwise_or.reduce(bits[[m for m in members if m != big]], axis=0)
        for m in members:
            if m != big and areas[m]:
                out["containment"].append(int(np.bitwise_count(bits[m] & bits[big]).sum()) / areas[m])
        out["largest_covered"].append(int(np.bitwise_count(others & bits[big]).sum()) / max(int(areas[big]), 1))
    from sepl_tree.tree import build_tree

    tree = build_tree(masks)
    for parent in tree.nodes:
        children = list(tree.successors(parent))
        if children and areas[parent]:
            union = np.bitwise_or.reduce(bits[children], axis=0)
            out["children_cover"].append(float(np.bitwise_count(union & bits[parent]).sum() / areas[parent] >= 0.9))
    return out


def score_quality(masks, gt: np.ndarray) -> tuple[list[float], list[float]]:
    """Each scored mask's ``predicted_iou`` and its IoU with the ground truth of its main GT class
    (the class, not background or 255, holding most of its pixels; masks on background are left out)."""
    from sepl_tree.masks.rle import pack_rows
    from sepl_tree.prompts import mask_scores

    scores, ious = [], []
    flat_gt = masks.flat_label(gt)
    classes = [k for k in np.unique(flat_gt) if 0 < k < 255]
    if not classes or not len(masks):
        return scores, ious
    bits = {k: pack_rows((flat_gt == k)[None])[0] for k in classes}
    inter = np.stack([np.bitwise_count(masks.packed & bits[k]).sum(axis=1) for k in classes], axis=1)
    class_area = np.array([int(np.bitwise_count(bits[k]).sum()) for k in classes])
    piou = mask_scores(masks.records)
    for n in range(len(masks)):
        j = int(np.argmax(inter[n]))
        if inter[n, j] == 0 or not np.isfinite(piou[n]):
            continue
        scores.append(float(piou[n]))
        ious.append(float(inter[n, j] / (masks.areas[n] + class_area[j] - inter[n, j])))
    return scores, ious


def spearman(a: list[float], b: list[float]) -> float:
    if len(a) < 3:
        return float("nan")
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def mask_structure(masks, gt: np.ndarray) -> dict[str, list[float]]:
    """One image's contribution to the structure table."""
    stats = prompt_structure(masks)
    stats["masks"] = [float(len(masks))]
    stats["score"], stats["iou"] = score_quality(masks, gt)
    return stats


def structure_row(bed: BedResult) -> dict:
    """The structure table's row of a bed measured with ``structure=True``."""
    merged = {key: list(values) for key, values in bed.stats.items()}
    rows = {row["row"]: row["miou"] for row in bed_rows(bed)}
    gain = rows["threshold"] - rows[INPUT]
    several = merged["largest_covered"]
    if len(several) < MIN_PROMPTS:  # a handful of masks that share a point by chance: no prompt statistics
        merged["containment"], several = [], []
    return {"bed": bed.name, "masks_per_image": float(np.mean(merged["masks"])), "several": len(merged["largest_covered"]),
            "outputs_per_prompt": float(np.mean(merged["outputs"])) if merged["outputs"] else float("nan"),
            "containment_median": float(np.median(merged["containment"])) if merged["containment"] else float("nan"),
            "containment_mean": float(np.mean(merged["containment"])) if merged["containment"] else float("nan"),
            "largest_covered_below_90": float(np.mean(np.array(several) < 0.9)) if several else float("nan"),
            "children_cover_90": float(np.mean(merged["children_cover"])) if merged["children_cover"] else float("nan"),
            "score_spearman": spearman(merged["score"], merged["iou"]), "threshold_gain": gain}


# ------------------------------------------------------------------------------- rendering


def render_pivot(rows: list[dict], names: list[str]) -> str:
    """Strategy x bed: mIoU, and the change against ``threshold`` on that bed."""
    beds = list(dict.fromkeys(r["bed"] for r in rows))
    cell = {(r["row"], r["bed"]): r for r in rows}
    kind = ["REAL" if b.startswith("real") else "SYNTHETIC" for b in beds]
    lines = ["| mIoU (Δ vs threshold) | " + " | ".join(f"{b} ({k})" for b, k in zip(beds, kind)) + " |",
             "|---|" + "---:|" * len(beds)]
    for name in [INPUT, *names, GUIDED]:
        cells = []
        for bed in beds:
            r = cell.get((name, bed))
            cells.append("" if r is None else f"{r['miou']:.2f}" if name == "threshold" else f"{r['miou']:.2f} ({r['delta']:+.2f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render(rows: list[dict], structure: list[dict], names: list[str]) -> str:
    lines = [render_pivot(rows, names), "",
             "| bed | row | mIoU | P | R | Δ vs threshold | Δ halves | rec (Env) | Δ other |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        halves = " / ".join(f"{d:+.2f}" for d in r["delta_halves"]) if r["bed"].startswith("real") else ""
        rec = f"{r['rec']:.2f}" if np.isfinite(r.get("rec", np.nan)) else ""
        other = f"{r['delta_other']:+.2f}" if np.isfinite(r.get("delta_other", np.nan)) else ""
        lines.append(f"| {r['bed']} | {r['row']} | {r['miou']:.2f} | {r['precision']:.2f} | {r['recall']:.2f} | "
                     f"{r['delta']:+.2f} | {halves} | {rec} | {other} |")
    lines += ["", "Per strategy, against `threshold` (targets: Δ real >= +1.0; on every synth bed rec >= 0.5 and "
              "Δ other >= -0.3; never below threshold by more than 0.3):", "",
              "| strategy | Δ real SAM 2.1 | min Δ synth | min rec | min Δ other | Δ demo | envelope target | never < -0.3 |",
              "|---|---:|---:|---:|---:|---:|---|---|"]

    def fmt(values: list[float], spec: str) -> str:
        return format(min(values), spec) if values else ""

    for name in names[1:]:
        mine = [r for r in rows if r["row"] == name]
        real = [r["delta"] for r in mine if r["bed"].startswith("real")]
        synth = [r for r in mine if r["bed"].startswith("synth")]
        demo = [r["delta"] for r in mine if r["bed"] == "demo"]
        rec, other = [r["rec"] for r in synth], [r["delta_other"] for r in synth]
        target = bool(synth) and min(rec) >= 0.5 and min(other) >= -0.3
        floor = all(r["delta"] >= -0.3 for r in mine)
        lines.append(f"| {name} | {fmt(real, '+.2f')} | {fmt([r['delta'] for r in synth], '+.2f')} | {fmt(rec, '.2f')} | "
                     f"{fmt(other, '+.2f')} | {fmt(demo, '+.2f')} | {'yes' if target else 'no'} | {'yes' if floor else 'no'} |")
    if structure:
        lines += ["", "The masks themselves (prompts: masks sharing `point_coords` and `crop_box`; children: the "
                  "containment tree at tau 0.9):", "",
                  "| bed | masks / image | outputs / prompt | prompts of several outputs | "
                  "containment in the largest (median / mean) | "
                  "largest covered < 90 % by the others | parents covered >= 90 % by their children | "
                  "Spearman(predicted_iou, IoU with its GT class) | threshold - input (mIoU) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]

        def num(value: float, spec: str) -> str:
            return format(value, spec) if np.isfinite(value) else "–"

        for s in structure:
            lines.append(f"| {s['bed']} | {s['masks_per_image']:.1f} | {s['outputs_per_prompt']:.2f} | {s['several']} | "
                         f"{num(s['containment_median'], '.3f')} / {num(s['containment_mean'], '.3f')} | "
                         f"{num(s['largest_covered_below_90'], '.2f')} | {num(s['children_cover_90'], '.2f')} | "
                         f"{num(s['score_spearman'], '.2f')} | {s['threshold_gain']:+.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beds", default="real,synth,demo", help="comma-separated: real, synth, demo")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rates", default="0.3,0.5")
    parser.add_argument("--plugin", action="append", default=[], help="also measure a plugin's strategies")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="the first N images of each bed only (0: all)")
    parser.add_argument("--no-structure", action="store_true", help="skip the mask-structure table")
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    _init_worker(args.plugin)
    names = list(_get_selectors())
    wanted = set(args.beds.split(","))
    beds: list[tuple[str, tuple, list[str]]] = []
    if "real" in wanted:
        if (REAL / "ids.txt").is_file():
            ids = (REAL / "ids.txt").read_text().split()
            beds.append(("real SAM 2.1", ("real",), ids[: args.limit or None]))
        else:
            print(f"skipped: the real SAM 2.1 bed ({REAL} is not here)", file=sys.stderr)
    voc_here = (VOC / "SegmentationClass").is_dir() and (VOC / "pseudo_labels" / "transcam").is_dir()
    if "synth" in wanted:
        if voc_here:
            ids = voc_sample_ids()[: args.limit or None]
            for seed in (int(s) for s in args.seeds.split(",")):
                for rate in (float(r) for r in args.rates.split(",")):
                    beds.append((f"synth r{rate} s{seed}", ("synth", seed, rate, True), ids))
        else:
            print(f"skipped: the synth beds ({VOC} is not here)", file=sys.stderr)
    start = time.perf_counter()
    results: list[BedResult] = []
    structure: list[dict] = []
    first_seed = int(args.seeds.split(",")[0])
    pool = ProcessPoolExecutor(args.workers, initializer=_init_worker, initargs=(args.plugin,)) if args.workers > 1 else None
    try:
        for name, bed, ids in beds:
            compared = not args.no_structure and (bed[0] == "real" or bed[1:3] == (first_seed, 0.3))
            results.append(measure_bed(name, bed, ids, pool, structure=compared))
            done = results[-1]
            print(f"{name}: {done.images} images, {done.seconds:.0f} s", file=sys.stderr, flush=True)
            if compared:
                structure.append(structure_row(done))
                if bed[0] == "synth":  # the same bed from the legacy generator, for the structure table only
                    legacy = measure_bed(f"{name} (legacy generator)", (*bed[:3], False), ids, pool, structure=True)
                    structure.append(structure_row(legacy))
        if "demo" in wanted:
            results.append(measure_demo())
    finally:
        if pool:
            pool.shutdown()
    rows = [row for r in results for row in bed_rows(r)]
    text = render(rows, structure, names) + f"\n\n({len(results)} beds, {time.perf_counter() - start:.0f} s)"
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    if args.json:
        import json

        args.json.write_text(json.dumps({"rows": rows, "structure": structure}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
