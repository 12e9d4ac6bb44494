"""Dataset-level evaluation: one confusion matrix, then mIoU, precision and recall.

Conventions (those of the published WSSS numbers):

- one confusion matrix over all pixels of the dataset where GT != 255;
- a predicted value outside 0..K-1 (e.g. 255) counts as a miss of the GT class: a false
  negative for that class and a false positive for none;
- IoU = TP/(TP+FP+FN), precision = TP/(TP+FP), recall = TP/(TP+FN), each averaged over the
  classes whose denominator is non-zero, reported in percent.

The matrix is ``int64 (K, K+1)``: rows are GT classes, columns predicted classes, and the last
column counts predictions outside 0..K-1.

Baselines' own scripts part from these rules in two places, and :data:`CONVENTIONS` names each
reading so that ``sepl-tree eval --convention`` can reproduce their numbers: what a predicted
non-label does (:func:`apply_pixel_rule`) and which classes a mean is taken over
(``scores(cm, average=...)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sepl_tree.label_maps import IGNORE, more_classes_hint

__all__ = ["CONVENTIONS", "Convention", "Scores", "apply_pixel_rule", "confusion_matrix", "ruled_confusion", "scores"]


@dataclass(frozen=True)
class Convention:
    """One way of scoring that a baseline's evaluation script follows.

    ``non_labels``: what a predicted value outside 0..K-1 does on a scored pixel: ``"miss"`` (a
    miss of the GT class), ``"drop"`` (the pixel is left out) or ``"background"`` (255 reads as
    class 0, other non-labels are left out). ``average``: the classes each mean is taken over:
    ``"defined"`` (those the GT or the prediction holds), ``"all"`` (every class, an empty one
    counted as 0) or ``"gt"`` (those the GT holds). ``follows``: the scripts; ``rule``: how it
    parts from the default, in words.
    """

    non_labels: str
    average: str
    follows: str
    rule: str


#: The conventions ``eval --convention`` offers, by name ("default" is this package's own).
CONVENTIONS: dict[str, Convention] = {
    "default": Convention("miss", "defined", "sepl-tree's own", "README, Conventions"),
    "irn": Convention("background", "defined", "IRN's, ReCAM's and AMN's step/eval_sem_seg.py",
                      "a predicted 255 is background, other non-labels are left out"),
    "seam": Convention("miss", "all", "SEAM's evaluation.py (also TransCAM's, MCTformer's, PuzzleCAM's)",
                       "every class counts in the means, an empty one as 0"),
    "eps": Convention("drop", "defined", "EPS's evaluate_png.py (also SIPE's eval_sem_seg.py)",
                      "pixels predicted as a non-label (255 included) are left out"),
    "clip-es": Convention("miss", "gt", "CLIP-ES's eval_cam.py (also ToCo's scores)",
                          "the means are over the classes the GT holds"),
}


def apply_pixel_rule(pred: np.ndarray, gt: np.ndarray, num_classes: int, non_labels: str) -> tuple[np.ndarray, np.ndarray]:
    """``pred`` and ``gt`` with ``non_labels`` applied, ready for :func:`confusion_matrix`: a
    dropped pixel becomes GT 255 (ignored); ``"miss"`` changes nothing. Copies only when a
    prediction holds a non-label.

    >>> pred, gt = np.array([[0, 255, 7]], np.uint8), np.array([[1, 1, 1]], np.uint8)
    >>> [a.tolist() for a in apply_pixel_rule(pred, gt, 3, "background")]
    [[[0, 0, 7]], [[1, 1, 255]]]
    >>> [a.tolist() for a in apply_pixel_rule(pred, gt, 3, "drop")]
    [[[0, 255, 7]], [[1, 255, 255]]]
    """
    if non_labels == "miss":
        return pred, gt
    if non_labels not in ("drop", "background"):
        raise ValueError(f"unknown rule for non-label predictions: {non_labels!r}")
    outside = (pred < 0) | (pred >= num_classes)
    if not outside.any():
        return pred, gt
    if non_labels == "background":
        as_background = pred == IGNORE
        pred = np.where(as_background, 0, pred).astype(pred.dtype)
        outside &= ~as_background
    kept = gt.dtype if gt.dtype.kind == "u" else np.int64  # (a 1-bit GT is bool: 255 would turn into True)
    return pred, np.where(outside, IGNORE, gt).astype(kept)


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """The ``(K, K+1)`` confusion matrix of one image (add matrices to pool a dataset).

    >>> confusion_matrix(np.array([[0, 1, 255]]), np.array([[0, 1, 1]]), 2).tolist()
    [[1, 0, 0], [0, 1, 1]]
    """
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    if pred.dtype == np.uint8 and gt.dtype == np.uint8 and num_classes <= 255:
        return _uint8_confusion(pred, gt, num_classes)
    k = num_classes
    if gt.dtype.kind not in "biu":  # (bool: a 1-bit PNG)
        raise ValueError(f"ground truth of {gt.dtype} values; a label map holds integers 0..{k - 1} or 255")
    valid = gt != IGNORE
    g = gt[valid].astype(np.int64)
    if g.size and (g.max() >= k or g.min() < 0):
        bad = int(g.max()) if g.max() >= k else int(g.min())
        raise ValueError(f"ground-truth value {bad} is out of range 0..{k - 1} or 255{more_classes_hint(bad, k)}")
    p = pred[valid].astype(np.int64)
    p = np.where((p >= 0) & (p < k), p, k)
    return np.bincount(g * (k + 1) + p, minlength=k * (k + 1)).reshape(k, k + 1)


def ruled_confusion(pred: np.ndarray, gt: np.ndarray, num_classes: int, non_labels: str = "miss") -> np.ndarray:
    """:func:`confusion_matrix` of ``pred`` against ``gt`` with ``non_labels`` applied first
    (:func:`apply_pixel_rule`; ``"miss"``, the default, is the plain matrix).

    >>> ruled_confusion(np.array([[0, 255]], np.uint8), np.array([[0, 1]], np.uint8), 2, "background").tolist()
    [[1, 0, 0], [1, 0, 0]]
    """
    return confusion_matrix(*apply_pixel_rule(pred, gt, num_classes, non_labels), num_classes)


def _uint8_confusion(pred: np.ndarray, gt: np.ndarray, k: int) -> np.ndarray:
    """:func:`confusion_matrix` of label maps as stored (``uint8``), about 10x faster: one
    ``uint16`` code per pixel, ``gt * (K+1) + min(pred, K)``, counted over all 256 GT values, so
    that neither the ignore mask nor an ``int64`` copy is made; GT 255's row is dropped after."""
    code = gt.astype(np.uint16) * (k + 1)  # at most 255 * 256 + 255: fits
    code += np.minimum(pred, k)
    rows = np.bincount(code.ravel(), minlength=256 * (k + 1)).reshape(256, k + 1)
    bad = np.flatnonzero(rows[k:IGNORE].any(axis=1))
    if bad.size:
        value = int(k + bad[-1])
        raise ValueError(f"ground-truth value {value} is out of range 0..{k - 1} or 255{more_classes_hint(value, k)}")
    return rows[:k].copy()


@dataclass(frozen=True)
class Scores:
    """Per-class and mean IoU, precision and recall, in percent (NaN: undefined class).

    Each mean is over ``averaged`` (``None``: every class) leaving out an undefined value, or,
    when ``empty_is_zero``, counting it as 0 (SEAM's reading; NaN still when every class is
    undefined, as for an empty subset).
    """

    iou: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    averaged: np.ndarray | None = None
    empty_is_zero: bool = False

    @property
    def miou(self) -> float:
        return self._mean(self.iou)

    @property
    def mean_precision(self) -> float:
        return self._mean(self.precision)

    @property
    def mean_recall(self) -> float:
        return self._mean(self.recall)

    @property
    def miou_classes(self) -> int:
        """How many classes the mIoU averages."""
        return int(np.isfinite(self._chosen(self.iou)).sum())

    def _chosen(self, values: np.ndarray) -> np.ndarray:
        values = values if self.averaged is None else values[self.averaged]
        return np.nan_to_num(values, nan=0.0) if self.empty_is_zero else values

    def _mean(self, values: np.ndarray) -> float:
        if self.empty_is_zero and np.isnan(self.iou).all():  # (no pixel scored at all: no score, not 0)
            return float("nan")
        chosen = self._chosen(values)
        defined = chosen[~np.isnan(chosen)]
        return float(defined.mean()) if defined.size else float("nan")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    np.divide(num * 100.0, den, out=out, where=den > 0)
    return out


def scores(cm: np.ndarray, average: str = "defined") -> Scores:
    """Scores of a ``(K, K+1)`` confusion matrix, means over the classes ``average`` names
    (:class:`Convention`).

    >>> cm = np.array([[1, 0, 0, 0], [0, 1, 0, 1], [0, 0, 0, 0]])  # class 2: neither in GT nor predicted
    >>> s = scores(cm)
    >>> s.iou.tolist(), s.precision.tolist(), s.recall.tolist()
    ([100.0, 50.0, nan], [100.0, 100.0, nan], [100.0, 50.0, nan])
    >>> s.miou, scores(cm, "all").miou
    (75.0, 50.0)
    """
    k = cm.shape[0]
    tp = np.diag(cm[:, :k]).astype(np.float64)
    fp = cm[:, :k].sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    iou, precision, recall = _ratio(tp, tp + fp + fn), _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    if average == "defined":
        return Scores(iou, precision, recall)
    if average == "all":
        return Scores(iou, precision, recall, empty_is_zero=True)
    if average == "gt":
        return Scores(iou, precision, recall, averaged=cm.sum(axis=1) > 0)
    raise ValueError(f"unknown class average: {average!r}")
