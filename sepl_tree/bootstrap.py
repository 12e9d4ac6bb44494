"""How sure a difference in mIoU is: a paired bootstrap over the images.

A dataset-level mIoU is computed once from the summed confusion matrix of the images
(:func:`sepl_tree.metrics.scores`), so it is no mean over images and has no textbook error bar.
The bootstrap redraws the images: each draw takes ``n`` of the ``n`` images with replacement,
sums the confusion matrices of those drawn and scores the sum as :func:`~sepl_tree.metrics.scores`
does. Every column (the input and each strategy) is scored on the same draws, so a difference
between two columns is paired: an image that is hard for both moves both. The interval of a
difference is the central ``level`` share of its values over the draws (percentile bootstrap).

Conventions: confusion matrices are ``(K, K+1)``, rows the ground-truth classes, columns the
predicted ones, the last column predictions that are no label (as :mod:`sepl_tree.metrics`);
per image they are held sparse (the indices of the non-zero cells of the flattened matrix and
their counts), which at COCO's K = 81 is a few hundred bytes instead of 53 KB. Pure functions.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["BOOTSTRAP_LEVEL", "BOOTSTRAP_MIN_IMAGES", "BOOTSTRAP_SEED", "bootstrap_miou", "change_text", "draw_indices",
           "drawn_subsets", "interval", "mean_iou", "sparse_cells"]

#: The share of the draws an interval holds.
BOOTSTRAP_LEVEL = 0.95
#: The seed of the draws: the same images give the same intervals.
BOOTSTRAP_SEED = 0
#: Fewer images get no interval: draws of a handful of images repeat the same few, and the
#: interval they give is narrower than what the images can tell (one image: no width at all).
BOOTSTRAP_MIN_IMAGES = 10
#: Draws scored at once are bounded so that neither their image indices (draws x images) nor
#: their summed matrices (draws x K(K+1)) pass this many values (32 MB each as float64).
_DRAWN_AT_ONCE = 4_000_000


def sparse_cells(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, counts)`` of the non-zero cells of a confusion matrix, flattened.

    >>> [a.tolist() for a in sparse_cells(np.array([[3, 0, 1], [0, 2, 0]]))]
    [[0, 2, 4], [3, 1, 2]]
    """
    flat = np.asarray(cm).reshape(-1)
    idx = np.flatnonzero(flat)
    return idx.astype(np.int32), flat[idx].astype(np.int64)


def mean_iou(cms: np.ndarray, average: str = "defined") -> np.ndarray:
    """The mIoU (%) of each ``(K, K+1)`` matrix in ``cms (..., K, K+1)``, by the rule of
    :func:`sepl_tree.metrics.scores` for ``average``: ``"defined"``, a class absent from both
    ground truth and prediction is left out of the mean; ``"all"``, every class counts, an
    absent one as 0; ``"gt"``, the mean is over the classes the ground truth holds. An empty
    matrix (no pixel scored) has no mIoU, NaN, under each.

    >>> cms = np.array([[[1, 0, 0], [0, 1, 1]], [[0, 0, 0], [0, 2, 0]]])
    >>> mean_iou(cms).tolist(), mean_iou(cms, "all").tolist(), mean_iou(cms, "gt").tolist()
    ([75.0, 100.0], [75.0, 50.0], [75.0, 100.0])
    """
    if average not in ("defined", "all", "gt"):
        raise ValueError(f"unknown class average: {average!r}")
    cms = np.asarray(cms, np.float64)
    k = cms.shape[-2]
    tp = np.diagonal(cms[..., :k], axis1=-2, axis2=-1)
    in_gt = cms.sum(axis=-1)
    union = cms[..., :k].sum(axis=-2) + in_gt - tp
    iou = np.zeros(tp.shape)
    np.divide(tp * 100.0, union, out=iou, where=union > 0)
    defined = union > 0
    anything = np.broadcast_to(defined.any(axis=-1, keepdims=True), defined.shape)  # (an empty matrix: no mIoU)
    counted = {"defined": defined, "all": anything, "gt": in_gt > 0}[average]
    count = counted.sum(axis=-1)
    total = np.where(counted, iou, 0.0).sum(axis=-1)
    return np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)


def draw_indices(n: int, draws: int, seed: int = BOOTSTRAP_SEED, cells: int = 1) -> Iterator[np.ndarray]:
    """The bootstrap draws of ``n`` images, in chunks: ``int64 (b, n)`` arrays of image indices
    (each row one draw of ``n`` with replacement), ``draws`` rows in all, from one seeded stream
    (the same rows however they are chunked); ``cells``: the size of a matrix, which also bounds
    a chunk."""
    rng = np.random.default_rng(seed)
    chunk = max(1, _DRAWN_AT_ONCE // max(n, cells, 1))
    for start in range(0, draws, chunk):
        yield rng.integers(0, n, size=(min(chunk, draws - start), n))


def bootstrap_miou(cells: Sequence[Sequence[tuple[np.ndarray, np.ndarray]]], num_classes: int, draws: int,
                   seed: int = BOOTSTRAP_SEED, average: str = "defined") -> np.ndarray:
    """``float64 (columns, draws)``: the mIoU of each column on each draw of the images, its
    mean over the classes ``average`` names (:func:`mean_iou`).

    ``cells[i][c]`` is image ``i``'s confusion matrix in column ``c`` (:func:`sparse_cells`);
    every column is scored on the same draws (:func:`draw_indices`).
    """
    from scipy import sparse

    n, size = len(cells), num_classes * (num_classes + 1)
    columns = len(cells[0]) if n else 0
    out = np.full((columns, draws), np.nan)
    if not n or not draws:
        return out
    matrices = []  # per column: images x cells, sparse
    for c in range(columns):
        lengths = np.array([len(cells[i][c][0]) for i in range(n)])
        indptr = np.concatenate([[0], np.cumsum(lengths)])
        indices = np.concatenate([cells[i][c][0] for i in range(n)]) if lengths.sum() else np.zeros(0, np.int32)
        data = np.concatenate([cells[i][c][1] for i in range(n)]).astype(np.float64) if lengths.sum() else np.zeros(0)
        matrices.append(sparse.csr_matrix((data, indices, indptr), shape=(n, size)).T.tocsr())
    done = 0
    for drawn in draw_indices(n, draws, seed, size):
        b = len(drawn)
        flat = (drawn + np.arange(b)[:, None] * n).reshape(-1)
        times = np.bincount(flat, minlength=b * n).reshape(b, n).astype(np.float64)  # how often each image
        for c, matrix in enumerate(matrices):
            sums = (matrix @ times.T).T  # (b, cells): each draw's summed matrix, exact in float64
            out[c, done:done + b] = mean_iou(sums.reshape(b, num_classes, num_classes + 1), average)
        done += b
    return out


def interval(values: np.ndarray, level: float = BOOTSTRAP_LEVEL) -> tuple[float, float] | None:
    """The central ``level`` share of ``values`` (NaN left out), or ``None`` without any.

    >>> interval(np.arange(101.0), 0.5)
    (25.0, 75.0)
    """
    values = np.asarray(values, np.float64)
    values = values[~np.isnan(values)]
    if not values.size:
        return None
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def drawn_subsets(summary: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], int]:
    """The bootstrap entries of a ``compare`` summary's subsets (subset -> entry, for those that
    have one) and the draws behind their intervals: the largest count, as a subset too small for
    an interval has 0 (so 0: no subset has one).

    >>> drawn_subsets({"all": {"bootstrap": {"draws": 1000}}, "few": {"bootstrap": {"draws": 0}}, "none": {}})
    ({'all': {'draws': 1000}, 'few': {'draws': 0}}, 1000)
    """
    drawn = {subset: entry["bootstrap"] for subset, entry in summary.items() if "bootstrap" in entry}
    return drawn, max((boot["draws"] for boot in drawn.values()), default=0)


def change_text(change: dict | None) -> str:
    """A change with its interval as reports print it (``compare.json``'s ``{"change", "interval"}``).

    >>> change_text({"change": 1.24, "interval": [0.81, 1.71]})
    '+1.24 [+0.81, +1.71]'
    """
    if change is None or change["change"] is None:
        return "n/a"
    if change["interval"] is None:
        return f"{change['change']:+.2f}"
    low, high = change["interval"]
    return f"{change['change']:+.2f} [{low:+.2f}, {high:+.2f}]"

