"""Class activation maps to label maps: the rule every CAM reader shares.

Conventions
-----------
- Scores are ``float (N, H, W)``, one map per class in ``classes`` (N class indices). Files may
  hold NumPy arrays or torch tensors (IRN and CLIMS pickle torch tensors); both are accepted.
- A label map is ``uint8 (H, W)``: 0 background, 1..K-1 classes, 255 ignore (CAM readers write
  255 only when asked for IRN-style uncertain regions, ``bg_low``).
- The background score ``bg`` follows CLIP-ES's ``cam_eval_thres`` convention, which covers every
  baseline: a value below 1 is a constant background score (a threshold: a pixel is background
  unless some class scores above it, as in IRN, SEAM, EPS, PuzzleCAM); a value of 1 or more is an
  exponent p, the background score being ``(1 - max_c score_c) ** p`` (AffinityNet's ``alpha``,
  RecurSeed's ``bg_gamma``).
- The label is the argmax over ``[background, *classes]``; ties go to the first channel, so to
  background, as ``np.argmax`` does in the baselines' own code.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import numpy as np

from sepl_tree.errors import InputError
from sepl_tree.registry import Range, ReadContext

#: A reader's ``bg`` parameter: a constant background score (below 1) or an exponent (1 or more).
Background = Annotated[float, Range(0.0)]
#: A reader's ``bg_low`` parameter: IRN-style uncertain regions below it (-1: off).
LowBackground = Annotated[float, Range(-1.0, 1.0)]

__all__ = [
    "Background",
    "LowBackground",
    "background_first_keys",
    "allowed_classes",
    "background_scores",
    "cam_to_label",
    "load_pickled",
    "require_keys",
    "to_numpy",
]


def to_numpy(value: Any) -> np.ndarray:
    """``value`` as a NumPy array; torch tensors are detached and moved to the CPU first."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def background_first_keys(path: Path, value: Any, method: str) -> np.ndarray:
    """A file's ``keys`` as a 1-D array whose first entry is the background 0 (classes shifted by one).

    SIPE, PuzzleCAM and RecurSeed write their keys this way; anything else is an error naming the file.
    """
    keys = to_numpy(value).reshape(-1)
    if keys.size == 0 or keys[0] != 0:
        raise InputError(path, f"{method} keys must start with the background 0, got {keys.tolist()}")
    return keys


def load_pickled(path: Path) -> Any:
    """The object in a pickled ``.npy`` (``np.save`` of a dict) or ``.pkl`` file.

    A 0-d object array (what ``np.save`` makes of a dict) is unwrapped. Any failure becomes an
    :class:`InputError` naming the file.
    """
    try:
        if path.suffix == ".pkl":
            with open(path, "rb") as f:
                return pickle.load(f)
        obj = np.load(path, allow_pickle=True)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except ModuleNotFoundError as exc:
        raise InputError(path, f"cannot be loaded: it needs the Python module {exc.name!r}") from None
    except Exception as exc:  # np.load / pickle fail in many ways on a foreign file
        raise InputError(path, f"cannot be loaded ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        return obj.item()
    return obj


def allowed_classes(ctx: ReadContext, image_id: str, path: Path) -> frozenset[int] | None:
    """The image-level classes of ``image_id`` when ``--labels`` was given, else ``None``."""
    if ctx.image_labels is None:
        return None
    try:
        return frozenset(ctx.image_labels[image_id])
    except KeyError:
        raise InputError(path, f"image {image_id!r} has no entry in the image-level labels (--labels)") from None


def background_scores(scores: np.ndarray, bg: float) -> np.ndarray:
    """The background channel ``(1, H, W)`` for ``scores (N, H, W)`` under the rule ``bg``.

    >>> background_scores(np.array([[[0.5, 1.0]]]), 0.25).tolist()
    [[[0.25, 0.25]]]
    >>> background_scores(np.array([[[0.5, 1.0]]]), 2).tolist()
    [[[0.25, 0.0]]]
    """
    shape, dtype = (1, *scores.shape[1:]), scores.dtype if np.issubdtype(scores.dtype, np.floating) else np.float32
    if bg < 1:
        return np.full(shape, bg, dtype=dtype)
    top = scores.max(axis=0, keepdims=True) if scores.shape[0] else np.zeros(shape, dtype)
    return np.power(np.clip(1.0 - top, 0.0, None), bg).astype(dtype)


def cam_to_label(
    path: Path,
    scores: Any,
    classes: Any,
    num_classes: int,
    *,
    bg: float | None,
    allowed: frozenset[int] | None = None,
    bg_low: float | None = None,
) -> np.ndarray:
    """The label map of class scores, as the baselines compute it.

    Parameters
    ----------
    path
        The file the scores came from, named by any error.
    scores
        ``(N, H, W)`` scores (array or tensor); ``(H, W)`` when N is 1.
    classes
        The N class indices of the score maps: 1..K-1, or 0..K-1 when ``bg`` is ``None`` (the file
        carries its own background channel, as SIPE's and the CRF dictionaries do).
    num_classes
        K, background included.
    bg
        Background rule (see the module docstring), or ``None`` for no added background channel.
    allowed
        Image-level classes; score maps of other classes are dropped before the argmax.
    bg_low
        A second, lower background rule: pixels that are background under ``bg`` but a class under
        ``bg_low`` become 255 (uncertain), as IRN's ``cam_to_ir_label.py`` and PuzzleCAM's
        ``make_affinity_labels.py`` do (there with ``bg`` 0.30 and ``bg_low`` 0.05, and a CRF).

    Examples
    --------
    >>> cam = np.array([[[0.9, 0.1]], [[0.2, 0.3]]])
    >>> cam_to_label(Path("x.npy"), cam, [3, 7], 21, bg=0.25).tolist()
    [[3, 7]]
    >>> cam_to_label(Path("x.npy"), cam, [3, 7], 21, bg=0.25, allowed=frozenset({7})).tolist()
    [[0, 7]]
    >>> cam_to_label(Path("x.npy"), cam, [3, 7], 21, bg=0.5, bg_low=0.25).tolist()
    [[3, 255]]
    """
    scores = to_numpy(scores)
    classes = to_numpy(classes).reshape(-1)
    if scores.ndim == 2 and classes.size == 1:
        scores = scores[None]
    if scores.ndim != 3:
        raise InputError(path, f"expected score maps of shape (classes, H, W), got shape {scores.shape}")
    if scores.shape[0] != classes.size:
        raise InputError(path, f"{scores.shape[0]} score maps but {classes.size} class keys")
    if classes.size and not np.issubdtype(classes.dtype, np.integer):
        if not np.all(np.equal(np.mod(classes, 1), 0)):
            raise InputError(path, f"class keys must be integers, got {classes.tolist()}")
    classes = classes.astype(np.int64)
    low = 0 if bg is None else 1
    bad = classes[(classes < low) | (classes >= num_classes)]
    if bad.size:
        raise InputError(path, f"class {int(bad[0])} is out of range {low}..{num_classes - 1} "
                               f"(a dataset with other classes? set --num-classes)")
    if not np.issubdtype(scores.dtype, np.number) or scores.dtype == np.bool_:
        raise InputError(path, f"score maps must be numbers, got dtype {scores.dtype}")
    # In the file's own precision, as the baselines compute (CLIP-ES keeps float16: a background
    # made in float32 would break its ties differently); integers as float32.
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float32)
    if not np.isfinite(scores).all():
        raise InputError(path, "score maps contain NaN or infinity")
    if allowed is not None:
        keep = np.array([c == 0 or int(c) in allowed for c in classes], dtype=bool)
        scores, classes = scores[keep], classes[keep]
    label = _argmax_label(scores, classes, bg)
    if bg_low is not None and bg is not None:
        uncertain = (label == 0) & (_argmax_label(scores, classes, bg_low) != 0)
        label[uncertain] = 255
    return label


def _argmax_label(scores: np.ndarray, classes: np.ndarray, bg: float | None) -> np.ndarray:
    if bg is not None:
        scores = np.concatenate([background_scores(scores, bg), scores])
        classes = np.concatenate([[0], classes])
    if classes.size == 0:
        return np.zeros(scores.shape[1:], np.uint8)
    return classes[np.argmax(scores, axis=0)].astype(np.uint8)


def require_keys(obj: Any, names: tuple[str, ...]) -> Mapping[str, Any] | None:
    """``obj`` when it is a dict holding every name in ``names``, else ``None``."""
    if isinstance(obj, Mapping) and all(n in obj for n in names):
        return obj
    return None
