"""``tree-prompt``: the ``threshold`` rule, keeping one of the alternative masks SAM gives per prompt.

SAM answers each prompt with up to three nested alternatives of one thing (a part, the whole, the
whole with its surroundings), which share ``point_coords``: a prompt is a short chain in the
containment tree, and SEPL's union of every passing alternative is the largest of them, the one
that most often takes in the sea around the boat. This rule:

1. applies ``threshold``'s test (``o_s > t1`` or ``o_p > t2``);
2. among the kept outputs of one prompt assigned to one class, keeps only one: the one SAM scores
   highest (``sample.scores``: ``predicted_iou``, else ``stability_score``; on a tie, or without
   scores, the largest, which holds what ``threshold`` paints when the smaller outputs lie
   inside it), replaced by a larger kept output of
   the prompt when more than ``t1`` of the pixels it adds lie in the class's pseudo-label (SEPL's
   own o_s test, applied to what the larger alternative adds; larger outputs are tried in
   increasing size).

Masks without ``point_coords`` (PNG folders without metadata, other tools) are each their own
prompt, so there the rule is exactly ``threshold``.
"""

from __future__ import annotations

import numpy as np

from sepl_tree import hookimpl
from sepl_tree.masks import popcount
from sepl_tree.painting import paint_kept
from sepl_tree.registry import Share, Strategy
from sepl_tree.sample import Sample

__all__ = ["one_output_per_prompt", "tree_prompt"]


def one_output_per_prompt(sample: Sample, keep: np.ndarray, t1: float = 0.5) -> np.ndarray:
    """``keep`` (``bool (L,)``) with at most one mask per (prompt, class), chosen as step 2 of the module docstring."""
    prompts, assigned = sample.prompts, sample.assigned
    groups: dict[tuple[int, int], list[int]] = {}
    for i in np.flatnonzero(keep & (prompts >= 0)):
        groups.setdefault((int(prompts[i]), int(assigned[i])), []).append(int(i))
    groups = {key: members for key, members in groups.items() if len(members) > 1}
    if not groups:
        return keep
    score = np.nan_to_num(sample.scores, nan=-np.inf)
    area, bits = sample.masks.areas, sample.masks.packed
    class_bits = sample.overlap.class_bits
    out = keep.copy()
    for (_, k), members in groups.items():
        m = np.array(members)
        cur = int(m[np.lexsort((-m, area[m], score[m]))[-1]])  # best score, then largest, then first
        for j in m[np.argsort(area[m], kind="stable")]:
            if area[j] <= area[cur]:
                continue
            added = bits[j] & ~bits[cur]
            n = popcount(added)
            if n and popcount(added & class_bits[k]) > t1 * n:
                cur = int(j)
        out[m] = False
        out[cur] = True
    return out


def tree_prompt(sample: Sample, t1: Share = 0.5, t2: Share = 0.85) -> np.ndarray:
    """threshold, keeping one output per SAM prompt: SAM's best-scored, or a larger one whose added pixels the pseudo-label supports.

    Parameters
    ----------
    t1
        Keep a mask whose share inside its class's pseudo-label, o_s, exceeds this; a larger output
        of the same prompt replaces the chosen one when more than this share of the pixels it adds
        is in the class's pseudo-label.
    t2
        Keep a mask that covers more than this share of its class's pseudo-label, o_p.
    """
    return paint_kept(sample, one_output_per_prompt(sample, sample.sepl_keep(t1, t2), t1))


@hookimpl
def register_strategies(register):
    register(Strategy("tree-prompt", tree_prompt))
