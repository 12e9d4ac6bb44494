"""One image's inputs, read the same way by every command: the pseudo-label through its reader
plugin, the SAM masks, and the ground truth when there is one.

Label maps are ``uint8 (H, W)`` (0 background, 1..K-1 classes, 255 ignore); masks a
:class:`~sepl_tree.masks.MaskSet` of the pseudo-label's size (checked before anything is
decoded). Every problem is an :class:`~sepl_tree.errors.InputError` naming the file.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sepl_tree.errors import InputError, SeplError, is_input_file
from sepl_tree.files import file_stamp, naming_hint, read_label_png
from sepl_tree.label_maps import IGNORE, first_bad_label
from sepl_tree.masks import MaskSet, find_mask_source, read_masks
from sepl_tree.registry import ReadContext, Reader, coerce_params

__all__ = ["MISSING_MASKS", "ImageInputs", "InputConfig", "InputReader", "check_label", "check_same_size"]

#: What to do with an id that has a pseudo-label but no masks.
MISSING_MASKS = ("error", "keep")


def check_label(label: Any, num_classes: int, reader: str, image_id: str) -> np.ndarray:
    """``label`` as a ``uint8 (H, W)`` label map, if it is one: values 0..K-1 and 255, of an
    integer dtype (``np.argmax`` gives ``int64``; a ``bool`` array is refused), else a
    :class:`SeplError` naming ``reader`` (e.g. ``reader 'irn'``) and the image."""
    if (not isinstance(label, np.ndarray) or label.ndim != 2 or label.dtype.kind not in "iu"
            or (label.dtype != np.uint8 and label.size and (label.min() < 0 or label.max() > IGNORE))):
        got = (f"an array of {label.dtype}, shape {label.shape}," if isinstance(label, np.ndarray)
               else type(label).__name__)
        raise SeplError(f"{reader} returned {got} for image {image_id!r}; a label map is (H, W) of the "
                        f"labels 0..{num_classes - 1} or {IGNORE} (uint8, or another integer dtype)")
    label = label.astype(np.uint8, copy=False)
    if (bad := first_bad_label(label, num_classes)) is not None:
        raise SeplError(f"{reader} returned label {bad} for image {image_id!r}, outside 0..{num_classes - 1} and 255")
    return label


@dataclass(frozen=True)
class InputConfig:
    """Where a dataset's inputs are and how to read them; picklable, so workers rebuild readers from it.

    Attributes
    ----------
    pseudo_dir
        The baseline's pseudo-labels (or CAMs), read by ``reader``.
    masks_dir
        SAM masks in either amg.py layout; ``None`` when the command needs none.
    gt_dir
        Ground-truth label PNGs ``<id>.png``; ``None`` when there is none.
    reader, reader_params
        The pseudo-label reader plugin and its given parameters.
    num_classes
        K, background included.
    plugins
        ``--plugin`` files and modules, loaded again in each worker.
    labels
        Image-level labels for CAM readers (``--labels``).
    missing_masks
        ``"error"``, or ``"keep"``: an id without masks keeps its pseudo-label (no masks).
    image_labels
        ``labels`` once read (:meth:`with_labels_read`), so that workers and later readers do
        not parse the file again (COCO train's instances JSON: 450 MB, tens of seconds).
    """

    pseudo_dir: Path
    masks_dir: Path | None = None
    gt_dir: Path | None = None
    reader: str = "png"
    reader_params: Mapping[str, Any] = field(default_factory=dict)
    num_classes: int = 21
    plugins: tuple[str, ...] = ()
    labels: Path | None = None
    missing_masks: str = "error"
    image_labels: Mapping[str, frozenset[int]] | None = field(default=None, compare=False, repr=False)

    def with_labels_read(self, image_labels: Mapping[str, frozenset[int]] | None) -> InputConfig:
        """This config carrying ``labels`` as read (by the parent's :class:`InputReader`)."""
        return dataclasses.replace(self, image_labels=image_labels)


@dataclass(frozen=True)
class ImageInputs:
    """What one image brings: its pseudo-label, masks (``None`` without ``masks_dir``) and GT."""

    image_id: str
    pseudo: np.ndarray
    masks: MaskSet | None = None
    gt: np.ndarray | None = None
    no_masks: bool = False


def check_same_size(path: Path | str, label: np.ndarray, shape: tuple[int, ...], what: str) -> None:
    """An ``InputError`` naming ``path`` when ``label`` is not of ``shape`` (``what``'s size)."""
    if label.shape != tuple(shape):
        raise InputError(path, f"is {label.shape[0]}x{label.shape[1]} but the {what} is {shape[0]}x{shape[1]}")


class _Watched(Mapping[str, frozenset[int]]):
    """Image-level labels that note whether anyone looked at them."""

    def __init__(self, labels: Mapping[str, frozenset[int]]) -> None:
        self.labels, self.looked = labels, False

    def __getitem__(self, image_id: str) -> frozenset[int]:
        self.looked = True
        return self.labels[image_id]

    def __iter__(self) -> Iterator[str]:
        self.looked = True
        return iter(self.labels)

    def __len__(self) -> int:
        self.looked = True
        return len(self.labels)


class InputReader:
    """Reads the inputs of :class:`InputConfig` image by image (the reader resolved once).

    Parameters
    ----------
    config
        Where the inputs are.
    reader
        The resolved reader plugin (``host.reader(config.reader)``).
    source
        Where the reader comes from, as the plugin host says (``built-in``, ``file ...``,
        ``entry point NAME (DIST VERSION)``): the run's settings record an entry point's.
    """

    def __init__(self, config: InputConfig, reader: Reader, source: str = "built-in") -> None:
        self.config = config
        self.reader = reader
        self.source = source
        self._ids: list[str] | None = None
        self.reader_params = coerce_params(f"reader {reader.name!r}", reader.params, config.reader_params)
        image_labels = config.image_labels  # read once by the parent (with_labels_read), else read here
        if image_labels is None and config.labels is not None:
            from sepl_tree.image_labels import load_image_labels

            image_labels = load_image_labels(config.labels, config.num_classes)
        self.context = ReadContext(num_classes=config.num_classes, image_labels=image_labels)

    @classmethod
    def from_host(cls, config: InputConfig, host: Any) -> InputReader:
        """The reader of ``config`` looked up among the loaded plugins (``host``)."""
        return cls(config, host.reader(config.reader), source=host.readers[config.reader].source)

    def ids(self) -> list[str]:
        """Every image id the reader finds in the pseudo-label folder, sorted (listed once: the
        run's ids and :meth:`check` share the listing)."""
        if self._ids is None:
            self._ids = self.reader.ids(self.config.pseudo_dir)
        return list(self._ids)

    def pseudo(self, image_id: str) -> np.ndarray:
        """The pseudo-label of ``image_id`` through the reader plugin, checked (:func:`check_label`);
        an exception inside the reader becomes one :class:`SeplError` naming the reader and image."""
        return self._read(image_id, self.context)

    def _read(self, image_id: str, context: ReadContext) -> np.ndarray:
        try:
            label = self.reader.read(self.config.pseudo_dir, image_id, context, **self.reader_params)
        except Exception as exc:  # a plugin's reader can fail in any way: say whose and where
            if isinstance(exc, SeplError) or (isinstance(exc, OSError) and exc.filename):
                raise  # one line already: a bad file named, or what the system refused of a file
            raise SeplError(f"{self._who()} failed on image {image_id!r}: {type(exc).__name__}: {exc}") from exc
        return check_label(label, self.config.num_classes, self._who(), image_id)

    def reads_image_labels(self, image_id: str) -> bool:
        """Whether the reader looks at the image-level labels (``--labels``) when it reads
        ``image_id``: one read with a context that notes any look (``False`` without labels)."""
        labels = self.context.image_labels
        if labels is None:
            return False
        watched = _Watched(labels)
        self._read(image_id, dataclasses.replace(self.context, image_labels=watched))
        return watched.looked

    def _who(self) -> str:
        where = f" ({self.source})" if self.source != "built-in" else ""
        return f"reader {self.reader.name!r}{where}"

    def masks(self, image_id: str, shape: tuple[int, int]) -> tuple[MaskSet, bool]:
        """``(masks, no_masks)``: the masks of ``image_id``, of size ``shape``; without masks
        and with ``missing_masks="keep"``, an empty set and ``True``."""
        masks_dir = self.config.masks_dir
        if masks_dir is None:
            raise SeplError("no mask folder was given")
        if self.config.missing_masks == "keep" and find_mask_source(masks_dir, image_id) is None:
            return MaskSet.empty(*shape), True
        return read_masks(masks_dir, image_id, shape=shape), False

    def gt_path(self, image_id: str) -> Path:
        if self.config.gt_dir is None:
            raise SeplError("no ground-truth folder was given")
        return self.config.gt_dir / f"{image_id}.png"

    def gt(self, image_id: str, shape: tuple[int, int] | None = None) -> np.ndarray:
        """The ground truth of ``image_id`` (values 0..K-1 and 255), of size ``shape`` if given."""
        path = self.gt_path(image_id)
        gt = read_label_png(path, self.config.num_classes)
        if shape is not None:
            check_same_size(path, gt, shape, "pseudo-label")
        return gt

    def read(self, image_id: str) -> ImageInputs:
        """Everything the config names for ``image_id``: pseudo-label, then masks and GT if any."""
        pseudo = self.pseudo(image_id)
        masks, no_masks = (None, False) if self.config.masks_dir is None else self.masks(image_id, pseudo.shape)
        gt = None if self.config.gt_dir is None else self.gt(image_id, pseudo.shape)
        return ImageInputs(image_id, pseudo, masks, gt, no_masks)

    def input_stamps(self, ids: Iterable[str]) -> dict[str, tuple[tuple[int, int], ...]]:
        """Each id's input files, as ``(mtime_ns, ctime_ns)`` pairs (:func:`sepl_tree.files.file_stamp`),
        what an output of it is made from: its pseudo-label file ``<id><suffix>`` (for a reader
        that lists its own ids, each of the id's files, in name order, from one listing of the
        folder: :meth:`_listed_stamps`), its masks (the ``<id>.json`` file, else the ``<id>/``
        folder, whose times change when a mask file is added, removed or renamed; not when one is
        rewritten in place) and its image-level labels (``--labels``: the file, or the
        ``<id>.xml`` of an Annotations folder), which decide a CAM reader's classes. One ``stat``
        per file, on plain strings: a resume at 100k ids makes ~200k."""
        c = self.config
        listed = self._listed_stamps() if self.reader.list_ids is not None else None
        labels_dir = c.labels is not None and os.path.isdir(c.labels)
        labels = file_stamp(c.labels) if c.labels is not None and not labels_dir else None
        stamps = {}
        for image_id in ids:
            found = []
            if listed is not None:
                found += listed.get(image_id, ())
            elif (t := file_stamp(os.path.join(c.pseudo_dir, image_id + self.reader.suffix))) is not None:
                found.append(t)
            if c.masks_dir is not None:
                masks = os.path.join(c.masks_dir, image_id)
                t = file_stamp(masks + ".json")  # else the folder (both there is refused before this)
                if t is not None or (t := file_stamp(masks)) is not None:
                    found.append(t)
            if labels_dir and (t := file_stamp(os.path.join(c.labels, image_id + ".xml"))) is not None:
                found.append(t)
            elif labels is not None:
                found.append(labels)
            stamps[image_id] = tuple(found)
        return stamps

    def _check_pseudo(self, image_id: str, listed: set[str] | None) -> None:
        """An ``InputError`` when ``image_id`` has no pseudo-label file (``listed``: the ids of a
        reader that lists its own, e.g. from l2g's ``<id>_<class>.png`` files)."""
        c, suffix = self.config, self.reader.suffix
        if listed is not None:
            if image_id not in listed:
                raise InputError(c.pseudo_dir, f"no pseudo-label for image {image_id!r} (the {self.reader.name!r} "
                                               "reader finds no file of it in this folder)")
            return
        path = c.pseudo_dir / f"{image_id}{suffix}"
        if not is_input_file(path, "pseudo-label file"):
            raise InputError(path, f"no pseudo-label for image {image_id!r}" + naming_hint(c.pseudo_dir, image_id, (suffix,)))

    def _listed_stamps(self) -> dict[str, list[tuple[int, int]]]:
        """For a reader that lists its own ids, whose images have several files (``l2g``'s and
        ``rca``'s ``<id>_<class>.png``): the stamps of each id's ``<suffix>`` files, in name
        order, from one listing of the folder. A file ``<stem><suffix>`` counts for the ids
        ``<stem>`` and ``<stem>`` less its last ``_<part>``: a file counted for a neighbour's id
        can only make an output be made again, never one be reused."""
        named: dict[str, list[tuple[str, tuple[int, int]]]] = {}
        suffix = self.reader.suffix
        with os.scandir(self.config.pseudo_dir) as entries:
            for entry in entries:
                if not entry.name.endswith(suffix) or entry.name.startswith("."):
                    continue
                try:
                    st = entry.stat()
                except OSError:
                    continue
                stem = entry.name[: len(entry.name) - len(suffix)]  # (a suffix may be "")
                for image_id in {stem, stem.rsplit("_", 1)[0]}:
                    named.setdefault(image_id, []).append((entry.name, (st.st_mtime_ns, st.st_ctime_ns)))
        return {image_id: [t for _, t in sorted(files)] for image_id, files in named.items()}

    def check(self, ids: Iterable[str]) -> None:
        """Before any work: every id has a pseudo-label (an ``--ids`` list may name one that has
        none), masks (unless ``missing_masks="keep"``) and a GT file.

        Raises an ``InputError`` naming the first file that is missing.
        """
        c = self.config
        if c.missing_masks not in MISSING_MASKS:
            raise SeplError(f"--missing-masks must be one of {', '.join(MISSING_MASKS)}, got {c.missing_masks!r}")
        listed = set(self.ids()) if self.reader.list_ids is not None else None
        for image_id in ids:
            self._check_pseudo(image_id, listed)
            if c.masks_dir is not None and c.missing_masks == "error" and find_mask_source(c.masks_dir, image_id) is None:
                raise InputError(c.masks_dir / f"{image_id}.json",
                                 f"no masks for image {image_id!r} (neither {image_id}.json nor {image_id}/); "
                                 "use --missing-masks keep to keep its pseudo-label"
                                 + naming_hint(c.masks_dir, image_id, (".json", "")))
            if c.gt_dir is not None and not self.gt_path(image_id).is_file():
                raise InputError(self.gt_path(image_id), f"no ground truth for image {image_id!r}"
                                 + naming_hint(c.gt_dir, image_id, (".png",)))
