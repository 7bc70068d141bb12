"""The vision application's entry in the core's extension point: how image learners are exported,
loaded, served, reported and shown (`ember.learner.app`).

A learner is vision's when its DataBlock's first input is an `ImageBlock`; its task is named from the
target block: "vision.classify", "vision.multilabel", "vision.points", "vision.regression",
"vision.segment", "vision.image" (image to image). The export is the DataBlock's description
(`ember.learner.export.describe_datablock`). The report's sections are chosen by task: segmentation and
image-to-image learners have their own (`ember.vision.report_sections`), the rest the core's classifier
sections; the server's request I/O likewise (`ember.vision.serve_io`).

>>> VISION.task(vision_learner(dls, resnet18))  # doctest: +SKIP
'vision.classify'
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ember.learner.app import AppSpec, register_app
from ember.learner.export import build_datablock, describe_datablock
from ember.learner.report import classifier_sections
from ember.vision.report_sections import image_to_image_sections, segmentation_sections
from ember.vision.serve_io import IMAGE_IO

if TYPE_CHECKING:
    import torch

    from ember.learner.learner import Learner
    from ember.learner.report import Section

__all__ = ["VISION"]

# target block's kind -> (task name, what read_export_info says)
_TASKS = {
    "category": ("vision.classify", "single-label classification"),
    "multicategory": ("vision.multilabel", "multi-label classification"),
    "points": ("vision.points", "point regression"),
    "regression": ("vision.regression", "regression"),
    "mask": ("vision.segment", "segmentation"),
    "image": ("vision.image", "image to image"),
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
    import ember.vision.style_learner
    import ember.vision.unet_learner  # noqa: F401

    return build_datablock(cfg, folder, device)


_SECTIONS = {"vision.segment": segmentation_sections, "vision.image": image_to_image_sections}


def _report_sections(learn: Learner) -> Iterable[Section]:
    return _SECTIONS.get(_task(learn) or "", classifier_sections)(learn)


def _microscope(learn: Learner, path: str | Path, **kwargs: Any) -> Path:
    from ember.vision.inside.microscope import microscope_page  # the page's code loads only when asked for

    return microscope_page(learn, path, **kwargs)


VISION = AppSpec(
    name="vision",
    task=_task,
    describe=_describe,
    build=_build,
    request_io=IMAGE_IO,
    report_sections=_report_sections,
    microscope=_microscope,
)
register_app(VISION)
