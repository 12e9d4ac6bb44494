"""Pictures and files of a comparison: bar charts, image strips, ``report.md``, JSON/CSV, trees.

Renderers return bytes (PNG, Markdown, CSV) and touch no files; :func:`write_report` writes
them, each atomically with :func:`sepl_tree.files.atomic_write_bytes`. Figures are built on
:class:`matplotlib.figure.Figure` with the Agg canvas (no pyplot state, no display needed).

Conventions: label maps ``uint8 (H, W)`` with 0 background, 1..K-1 classes, 255 ignore, shown
in the VOC palette (255 in white); masks ``bool (L, H, W)``; images ``uint8 (H, W, 3)`` RGB.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import hsv_to_rgb
from matplotlib.figure import Figure

from sepl_tree.bootstrap import BOOTSTRAP_MIN_IMAGES, change_text, drawn_subsets
from sepl_tree.files import atomic_folder, atomic_write_bytes
from sepl_tree.label_maps import IGNORE, voc_palette

__all__ = [
    "bar_chart",
    "csv_bytes",
    "draw_tree",
    "image_strip",
    "label_to_rgb",
    "mask_colours",
    "masks_overlay",
    "report_markdown",
    "tidy_layout",
    "write_report",
]

_PALETTE = voc_palette()
_PALETTE[IGNORE] = (255, 255, 255)
#: Tableau-like colours for the bars: input first, then one per strategy.
_BAR_COLOURS = ("#9e9e9e", "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                "#17becf", "#bcbd22")


def _png(fig: Figure, dpi: int = 100) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def label_to_rgb(label: np.ndarray) -> np.ndarray:
    """A label map in the VOC palette, ``uint8 (H, W, 3)`` (ignore in white)."""
    return _PALETTE[np.asarray(label, np.uint8)]


def mask_colours(n: int) -> np.ndarray:
    """``n`` well-spread RGB colours (golden-ratio hues), ``uint8 (n, 3)``, the same every time."""
    hsv = np.stack([(np.arange(n) * 0.618033988749895) % 1.0, np.full(n, 0.75), np.full(n, 0.95)], axis=1)
    return (hsv_to_rgb(hsv) * 255).astype(np.uint8)


def masks_overlay(masks: np.ndarray, image: np.ndarray | None = None, alpha: float = 0.6) -> np.ndarray:
    """Every mask in its own colour over the image (or grey): largest first, so parts show on top."""
    shape = masks.shape[1:]
    base = np.full((*shape, 3), 128, np.uint8) if image is None else image
    out = base.astype(np.float64)
    areas = masks.reshape(len(masks), -1).sum(axis=1)
    colours = mask_colours(len(masks)).astype(np.float64)
    for m in np.argsort(-areas, kind="stable"):
        region = masks[m]
        out[region] = (1 - alpha) * base[region] + alpha * colours[m]
    return out.astype(np.uint8)


# -------------------------------------------------------------------------------------- charts


def bar_chart(summary: Mapping[str, Any], metric: str, strategies: Sequence[str]) -> bytes:
    """Grouped bars of one metric (``miou``, ``precision`` or ``recall``): one group per subset,
    the input pseudo-label then each strategy; a subset without images has no bars."""
    subsets = list(summary)
    columns = ["input", *strategies]
    width = 0.8 / len(columns)
    fig = Figure(figsize=(max(6.0, 1.2 * len(subsets) * len(columns) / 3 + 2), 4.2))
    ax = fig.subplots()
    x = np.arange(len(subsets))
    for j, col in enumerate(columns):
        values = []
        for subset in subsets:
            entry = summary[subset]
            doc = entry["input"] if col == "input" else entry["strategies"][col]
            values.append(np.nan if doc[metric] is None else doc[metric])
        ax.bar(x + (j - (len(columns) - 1) / 2) * width, np.nan_to_num(values), width,
               label=col, color=_BAR_COLOURS[j % len(_BAR_COLOURS)])
    ax.set_xticks(x, [f"{s}\n(n={summary[s]['images']})" for s in subsets], fontsize=8)
    ax.set_ylabel(f"{metric} (%)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{metric} per subset")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncols=min(len(columns), 4), loc="upper center", bbox_to_anchor=(0.5, -0.18))
    fig.tight_layout()
    return _png(fig)


def image_strip(panels: Sequence[tuple[str, np.ndarray]], title: str = "") -> bytes:
    """One row of captioned RGB panels (image | pseudo-label | masks | strategies... | GT)."""
    h, w = panels[0][1].shape[:2]
    size = 2.6
    fig = Figure(figsize=(size * len(panels), size * h / w + 0.6))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (caption, rgb) in zip(axes, panels):
        ax.imshow(rgb, interpolation="nearest")
        ax.set_title(caption, fontsize=9)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _png(fig, dpi=90)


# ---------------------------------------------------------------------------------------- tree


def tidy_layout(tree: nx.DiGraph) -> dict[int, tuple[float, float]]:
    """Positions ``(x, depth)`` for a forest: leaves on consecutive x, a parent above the middle
    of its children; roots and siblings ordered by decreasing area (then index).

    >>> tidy_layout(nx.DiGraph([(0, 1), (0, 2)]))
    {1: (0.0, 1.0), 2: (1.0, 1.0), 0: (0.5, 0.0)}
    """

    def order(nodes: Any) -> list[int]:
        return sorted(nodes, key=lambda n: (-tree.nodes[n].get("area", 0), n))

    pos: dict[int, tuple[float, float]] = {}
    next_x = 0.0
    roots = order(n for n in tree.nodes if tree.in_degree(n) == 0)
    for root in roots:
        stack: list[tuple[int, int, bool]] = [(root, 0, False)]
        while stack:
            node, depth, expanded = stack.pop()
            kids = order(tree.successors(node))
            if not kids:
                pos[node] = (next_x, float(depth))
                next_x += 1.0
            elif expanded:
                pos[node] = ((pos[kids[0]][0] + pos[kids[-1]][0]) / 2, float(depth))
            else:
                stack.append((node, depth, True))
                stack.extend((k, depth + 1, False) for k in reversed(kids))
    return pos


def _thumbnail(mask: np.ndarray, image: np.ndarray | None, colour: np.ndarray, side: int) -> np.ndarray:
    step = max(1, math.ceil(max(mask.shape) / side))
    m = mask[::step, ::step]
    base = (np.full((*m.shape, 3), 60, np.uint8) if image is None else image[::step, ::step]).astype(np.float64)
    out = base * 0.35
    out[m] = 0.45 * base[m] + 0.55 * colour
    return out.astype(np.uint8)


def draw_tree(tree: nx.DiGraph, masks: np.ndarray, image: np.ndarray | None = None, title: str = "",
              thumb_side: int = 96) -> bytes:
    """The containment forest as a PNG: each node a thumbnail of its mask over the image.

    Parents sit above their children, so what envelops what reads from top to bottom; each
    thumbnail is captioned with the mask index and area.
    """
    pos = tidy_layout(tree)
    h, w = masks.shape[1:] if len(masks) else (1, 1)
    aspect = h / w
    cell_w, cell_h = 0.9, 0.9 * aspect
    level = cell_h + 0.45
    leaves = max((x for x, _ in pos.values()), default=0.0) + 1
    depth = max((d for _, d in pos.values()), default=0.0) + 1
    fig = Figure(figsize=(min(max(4.0, 1.25 * leaves), 400.0), max(2.5, 1.25 * level * depth + 0.6)))
    ax = fig.subplots()
    colours = mask_colours(len(masks))
    for parent, child in tree.edges:
        (px, pd), (cx, cd) = pos[parent], pos[child]
        ax.plot([px, cx], [-pd * level - cell_h / 2 - 0.2, -cd * level + cell_h / 2], color="#555555", lw=0.8,
                zorder=1)  # from below the parent's caption to the child's top
    for node, (x, d) in pos.items():
        y = -d * level
        thumb = _thumbnail(masks[node], image, colours[node], thumb_side)
        ax.imshow(thumb, extent=(x - cell_w / 2, x + cell_w / 2, y - cell_h / 2, y + cell_h / 2),
                  interpolation="nearest", zorder=2)
        ax.text(x, y - cell_h / 2 - 0.04, f"#{node} ({tree.nodes[node].get('area', int(masks[node].sum()))} px)",
                ha="center", va="top", fontsize=6, zorder=3)
    ax.set_xlim(-0.6, leaves - 0.4)
    ax.set_ylim(-(depth - 1) * level - cell_h / 2 - 0.3, cell_h / 2 + 0.1)
    ax.set_aspect("equal")
    ax.set_axis_off()
    ax.set_title(title or f"containment tree: {tree.number_of_nodes()} masks, {len(tree.edges)} edges", fontsize=9)
    fig.tight_layout()
    return _png(fig, dpi=80)


# ------------------------------------------------------------------------------------- reports


def csv_bytes(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Rows (all with the keys of the first) as CSV; ``None`` becomes an empty cell."""
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: ("" if v is None else v) for k, v in row.items()} for row in rows)
    return buf.getvalue().encode()


def _cell(value: float | None, delta: float | None = None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}" if delta is None else f"{value:.2f} ({delta:+.2f})"


def _interval_lines(summary: Mapping[str, Any], strategies: Sequence[str]) -> list[str]:
    """The section of the mIoU changes with their bootstrap intervals (none without draws)."""
    drawn, draws = drawn_subsets(summary)
    if not drawn:
        return []
    if not draws:
        return ["## mIoU changes, with bootstrap intervals", "",
                f"None: every subset has fewer than {BOOTSTRAP_MIN_IMAGES} images.", ""]
    some = next(iter(drawn.values()))  # (against, level and seed are every subset's)
    first = some["against"]
    lines = ["## mIoU changes, with bootstrap intervals", "",
             f"Each change with its {some['level']:.0%} interval over {draws} draws of the subset's images (with "
             "replacement, the same draws for every column: a paired percentile bootstrap, seed "
             f"{some['seed']}). An interval that does not hold 0 is a change the images support. A subset "
             f"of fewer than {BOOTSTRAP_MIN_IMAGES} images gets none.", ""]
    several = len(strategies) > 1  # else no column against the first
    lines += ([f"| subset | strategy | vs input | vs {first} |", "|---|---|---:|---:|"] if several
              else ["| subset | strategy | vs input |", "|---|---|---:|"])
    for subset, boot in drawn.items():
        for name in strategies:
            cells = [name, change_text(boot["against_input"][name])]
            if several:
                cells.append("" if name == first else change_text(boot["against_first"][name]))
            lines.append(f"| {subset} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def report_markdown(summary: Mapping[str, Any], strategies: Sequence[str], charts: Mapping[str, str],
                    strips: Mapping[str, str], meta: Mapping[str, Any]) -> str:
    """``report.md``: the settings, one table per metric, the charts and the strips.

    ``charts`` maps a metric to its picture's path relative to the report, ``strips`` an image
    id to its strip's relative path.
    """
    lines = ["# sepl-tree compare", ""]
    if meta.get("synthetic"):
        lines += ["**SYNTHETIC masks** (made from ground truth, not by SAM): the numbers show how the "
                  "strategies react to controlled failures, not how they do on real SAM output.", ""]
    lines += [f"- {key}: `{value}`" for key, value in meta.items() if key != "synthetic"]
    lines += ["", "Scores are dataset-level (one confusion matrix per subset), in percent; "
              "brackets: change against the input pseudo-labels. Subsets are defined in docs/compare.md.", ""]
    for metric in ("miou", "precision", "recall"):
        lines += [f"## {metric}", "", "| subset | images | input | " + " | ".join(strategies) + " |",
                  "|---|---:|---:|" + "---:|" * len(strategies)]
        for subset, entry in summary.items():
            cells = [_cell(entry["strategies"][s][metric], entry["strategies"][s]["delta"][metric]) for s in strategies]
            head = f"| {subset} | {entry['images']} | {_cell(entry['input'][metric])} | "
            lines.append(head + " | ".join(cells) + " |")
        lines.append("")
        if metric in charts:
            lines += [f"![{metric} per subset]({charts[metric]})", ""]
    lines += _interval_lines(summary, strategies)
    lines += ["## Where the strategies disagree most", ""]
    if not strips:
        lines += ["The strategies agree on every pixel of every image.", ""]
    for image_id, path in strips.items():
        lines += [f"### {image_id}", "", f"![{image_id}]({path})", ""]
    return "\n".join(lines)


def write_report(out_dir: Path, doc: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                 strategies: Sequence[str], strips: Mapping[str, bytes], meta: Mapping[str, Any]) -> dict[str, Path]:
    """Write ``compare.json``, ``compare.csv``, ``figures/<metric>.png``, the strips
    (``figures/strip_<id>.png``) and ``report.md`` under ``out_dir``; returns the paths by role.

    ``figures/`` is this report's alone: it is replaced whole (a file put there by hand is lost)."""
    summary = doc["results"]
    written: dict[str, Path] = {}
    charts: dict[str, str] = {}
    strip_paths: dict[str, str] = {}
    # The folder is replaced whole: a rerun with fewer strips leaves none of the old ones behind.
    with atomic_folder(out_dir / "figures") as staging:
        for metric in ("miou", "precision", "recall"):
            atomic_write_bytes(staging / f"{metric}.png", bar_chart(summary, metric, strategies))
            charts[metric] = f"figures/{metric}.png"
            written[f"chart_{metric}"] = out_dir / charts[metric]
        for image_id, data in strips.items():
            atomic_write_bytes(staging / f"strip_{image_id}.png", data)
            strip_paths[image_id] = f"figures/strip_{image_id}.png"
            written[f"strip_{image_id}"] = out_dir / strip_paths[image_id]
    for name, data in (("compare.json", json.dumps(doc, indent=2, default=str).encode()),
                       ("compare.csv", csv_bytes(rows)),
                       ("report.md", report_markdown(summary, strategies, charts, strip_paths, meta).encode())):
        atomic_write_bytes(out_dir / name, data)
        written[name] = out_dir / name
    return written
