"""Dataset-level evaluation: one confusion matrix, then mIoU, precision and recall.

Conventions (those of the published WSSS numbers):

- one confusion matrix over all pixels of the dataset where GT != 255;
- a predicted value outside 0..K-1 (e.g. 255) counts as a miss of the GT class: a false
  negative for that class and a false positive for none;
- IoU = TP/(TP+FP+FN), precision = TP/(TP+FP), recall = TP/(TP+FN), each averaged over the
  classes whose denominator is non-zero, reported in percent.

The matrix is ``int64 (K, K+1)``: rows are GT classes, columns predicted classes, and the last
column counts predictions outside 0..K-1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sepl_tree.label_maps import IGNORE, more_classes_hint

__all__ = ["Scores", "confusion_matrix", "scores"]


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
    """Per-class and mean IoU, precision and recall, in percent (NaN: undefined class)."""

    iou: np.ndarray
    precision: np.ndarray
    recall: np.ndarray

    @property
    def miou(self) -> float:
        return _nanmean(self.iou)

    @property
    def mean_precision(self) -> float:
        return _nanmean(self.precision)

    @property
    def mean_recall(self) -> float:
        return _nanmean(self.recall)


def _nanmean(values: np.ndarray) -> float:
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(num.shape, np.nan)
    np.divide(num * 100.0, den, out=out, where=den > 0)
    return out


def scores(cm: np.ndarray) -> Scores:
    """Scores of a ``(K, K+1)`` confusion matrix.

    >>> s = scores(np.array([[1, 0, 0], [0, 1, 1]]))
    >>> s.iou.tolist(), s.precision.tolist(), s.recall.tolist()
    ([100.0, 50.0], [100.0, 100.0], [100.0, 50.0])
    """
    k = cm.shape[0]
    tp = np.diag(cm[:, :k]).astype(np.float64)
    fp = cm[:, :k].sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    return Scores(_ratio(tp, tp + fp + fn), _ratio(tp, tp + fp), _ratio(tp, tp + fn))
