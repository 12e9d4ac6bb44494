"""``sepl-tree convert``'s per-image job: read with any reader, write a canonical label PNG.

Not a plugin: the job behind the ``convert`` command (a picklable
:class:`sepl_tree.executors.JobSpec`, so it runs in a process pool too). Output: ``<out>/<id>.png``,
a VOC-palette PNG whose pixel values are the labels (0 background, 1..K-1, 255 ignore), the
format ``sepl-tree run`` writes and the ``png`` reader reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sepl_tree.files import write_label_png
from sepl_tree.inputs import InputConfig, InputReader

__all__ = ["ConvertJob", "ConvertResult", "convert_settings"]


@dataclass(frozen=True)
class ConvertResult:
    """One converted image: its id and the pixel count of each label value (256 bins)."""

    image_id: str
    counts: np.ndarray


@dataclass(frozen=True)
class ConvertJob:
    """Read each image of ``inputs`` with its reader and write ``<out_dir>/<id>.png``
    (``inputs`` carries the ``--labels`` the parent read once: :meth:`InputConfig.with_labels_read`)."""

    inputs: InputConfig
    out_dir: Path

    @property
    def output_folders(self) -> tuple[Path, ...]:
        """Where its workers write (see :class:`sepl_tree.executors.JobSpec`)."""
        return (self.out_dir,)

    def setup(self) -> Callable[[str], ConvertResult]:
        from sepl_tree.plugins import load_host

        reader = InputReader.from_host(self.inputs, load_host(self.inputs.plugins))

        def convert(image_id: str) -> ConvertResult:
            label = reader.pseudo(image_id)  # checked there
            write_label_png(self.out_dir / f"{image_id}.png", label)
            return ConvertResult(image_id, np.bincount(label.reshape(-1), minlength=256))

        return convert


def convert_settings(inputs: InputReader) -> dict[str, Any]:
    """What decides ``convert``'s outputs, as ``OUT/convert.json`` records it: the reader and its
    checked parameters, K, the input folder, ``--labels``, the plugins and the version."""
    from sepl_tree import __version__
    from sepl_tree.outputs import plugin_fingerprints

    c = inputs.config
    return {"sepl_tree": __version__, "reader": inputs.reader.name, "reader_params": dict(inputs.reader_params),
            "num_classes": c.num_classes, "inputs": {"input": str(c.pseudo_dir),
                                                      "labels": None if c.labels is None else str(c.labels)},
            "plugins": plugin_fingerprints(c.plugins, {f"reader {inputs.reader.name}": inputs.source})}
