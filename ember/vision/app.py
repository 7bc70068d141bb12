"""The vision application's entry in the core's extension point: how image learners are exported,
loaded, served, reported and shown (`ember.learner.app`).

A learner is vision's when its DataBlock's first input is an `ImageBlock`; its task is named from the
target block: "vision.classify", "vision.multilabel", "vision.points", "vision.regression",
"vision.segment". The export is the DataBlock's description (`ember.learner.export.describe_datablock`).

>>> VISION.task(vision_learner(dls, resnet18))  # doctest: +SKIP
'vision.classify'
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ember.learner.app import AppSpec, register_app
from ember.learner.export import build_datablock, describe_datablock
from ember.learner.report import classifier_sections
from ember.vision.serve_io import IMAGE_IO

if TYPE_CHECKING:
    import torch

    from ember.learner.learner import Learner

__all__ = ["VISION"]

# target block's kind -> (task name, what read_export_info says)
_TASKS = {
    "category": ("vision.classify", "single-label classification"),
    "multicategory": ("vision.multilabel", "multi-label classification"),
    "points": ("vision.points", "point regression"),
    "regression": ("vision.regression", "regression"),
    "mask": ("vision.segment", "segmentation"),
}
_OTHER = ("vision.other", "other")


def _task(learn: Learner) -> str | None:
    from ember.data.block import TfmdDataLoaders
    from ember.vision.data import ImageBlock

    if not isinstance(learn.dls, TfmdDataLoaders) or not isinstance(learn.dls.datasets.blocks[0], ImageBlock):
        return None
    return _TASKS.get(learn.dls.datasets.blocks[-1].kind, _OTHER)[0]


def _describe(learn: Learner) -> dict[str, Any]:
    cfg = describe_datablock(learn)
    cfg["info"]["task"] = _TASKS.get(learn.dls.datasets.blocks[-1].kind, _OTHER)[1]
    return cfg


def _build(cfg: dict[str, Any], folder: Path, device: torch.device) -> Learner:
    # the modules that register vision's blocks, transforms and models with ember.core.serial
    import ember.vision.augment
    import ember.vision.data
    import ember.vision.learner
    import ember.vision.unet_learner  # noqa: F401

    return build_datablock(cfg, folder, device)


VISION = AppSpec(
    name="vision",
    task=_task,
    describe=_describe,
    build=_build,
    request_io=IMAGE_IO,
    report_sections=classifier_sections,
)
register_app(VISION)
