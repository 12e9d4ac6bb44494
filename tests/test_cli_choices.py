"""The CLI's choice enums list exactly what the library accepts (the library checks them again, so
a value added on one side only would be refused, or never offered, without a test saying so)."""

from __future__ import annotations

import pytest

from sepl_tree import coco
from sepl_tree.cli import coco_gt, common, masks
from sepl_tree.executors import EXECUTORS
from sepl_tree.inputs import MISSING_MASKS
from sepl_tree.sam import job, presets, writing


@pytest.mark.parametrize("choices, accepted", [
    (common.Executor, tuple(EXECUTORS)),
    (common.MissingMasks, MISSING_MASKS),
    (masks.Format, writing.FORMATS),
    (masks.Device, job.DEVICES),
    (masks.Preset, tuple(presets.PRESETS)),
    (masks.Engine, job.ENGINES),
    (masks.Precision, job.PRECISIONS),
    (coco_gt.Rule, coco.RULES),
], ids=lambda value: getattr(value, "__name__", ""))
def test_a_commands_choices_are_the_librarys(choices, accepted):
    assert sorted(member.value for member in choices) == sorted(accepted)
