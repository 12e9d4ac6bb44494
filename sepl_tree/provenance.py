"""How a folder of masks was made, as the tools that wrote it recorded it.

``run`` and ``compare`` key their resume on it (:func:`sepl_tree.pipeline.run_settings`): masks
regenerated into the same folder with other settings (another SAM model, preset or precision,
another ``synth`` seed or generator, a new demo) make the outputs made from the old ones stale, and
a rerun refuses them instead of reusing them. Folders written by other tools record nothing and
give ``None``: their masks are known by their path only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["MASKS_RUN_LOG", "SYNTH_MANIFEST", "last_masks_run", "masks_provenance"]

#: Written by ``sepl-tree masks``: one JSON line per run start (model, settings, precision ...).
MASKS_RUN_LOG = "masks_run.jsonl"
#: Written by ``sepl-tree synth`` and the demo: ``{"settings": ...}``.
SYNTH_MANIFEST = "synth.json"
#: The fields of a ``masks`` run start that decide the masks (not where or how fast they were made).
_MASK_FIELDS = ("model_type", "family", "checkpoint", "preset", "settings", "precision")


def last_masks_run(masks_dir: Path) -> dict[str, Any] | None:
    """The last run start that ``sepl-tree masks`` logged in ``masks_dir`` (its settings), or ``None``."""
    path = Path(masks_dir) / MASKS_RUN_LOG
    if not path.is_file():
        return None
    last = None
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut short by a killed run
        if isinstance(entry, dict) and "settings" in entry:
            last = entry
    return last


def masks_provenance(masks_dir: Path) -> dict[str, Any] | None:
    """What made the masks in ``masks_dir``: ``{"synth": settings}`` or ``{"masks": {...}}``, else ``None``.

    An unreadable record counts as none (the reader reports bad mask files where they matter).
    """
    try:
        synth = Path(masks_dir) / SYNTH_MANIFEST
        if synth.is_file():
            doc = json.loads(synth.read_text())
            if isinstance(doc, dict) and isinstance(doc.get("settings"), dict):
                return {"synth": doc["settings"]}
        last = last_masks_run(masks_dir)
        if last is not None:
            return {"masks": {k: last.get(k) for k in _MASK_FIELDS}}
    except (OSError, ValueError):
        return None
    return None
