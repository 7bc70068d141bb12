"""The served model: an export file loaded once, and a batch of images in, one answer per image out.

>>> model = ServedModel("export.pkl")  # doctest: +SKIP
>>> model.predict_batch([PILImage.create("cat.jpg")])[0]["label"]  # doctest: +SKIP
'cat'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image

from ember.learner.export import load_learner, read_export_info

__all__ = ["ServeError", "ServedModel", "check_servable"]

SERVABLE = "single-label classification"


class ServeError(ValueError):
    """A model file that is an ember export, but not one this server can serve."""


def check_servable(path: Path, info: dict[str, Any]) -> None:
    """Refuse, with what to do, an export whose predictions are not one label out of a vocabulary."""
    if info.get("task") != SERVABLE or not info.get("vocab"):
        raise ServeError(
            f"{path} holds a {info.get('task', 'unknown')} model; `ember serve` serves {SERVABLE} models "
            "(a vision_learner on a CategoryBlock): for this one, use load_learner(...).predict in your code"
        )


class ServedModel:
    """An export file's learner on the CPU, its description (`info`) and its labels as strings."""

    def __init__(self, path: str | Path, cpu: bool = True) -> None:
        self.path = Path(path)
        info = read_export_info(self.path)  # refuses a file that is not an export before anything is built
        check_servable(self.path, info)
        self.learn = load_learner(self.path, cpu=cpu)
        self.info: dict[str, Any] = dict(self.learn.export_info)
        self.name: str = str(self.info.get("arch") or self.path.stem)
        self.labels = [str(v) for v in self.info["vocab"]]  # JSON keys are strings; True -> "True"
        self.input_hw = _hw(self.info.get("input_size"))  # (h, w), None when the model takes any size

    def prepare(self, img: Image.Image) -> Image.Image:
        """`img` shrunk by a whole factor while it stays at least twice the model's input size: the same
        picture for the model's Resize, without a camera-sized image waiting in memory for its forward
        and being resized in the one forward thread."""
        if self.input_hw is None:
            return img
        h, w = self.input_hw
        factor = min(img.width // (2 * w), img.height // (2 * h))
        return img.reduce(factor) if factor >= 2 else img  # a box filter: averages, no aliasing

    def predict_batch(self, images: list[Image.Image]) -> list[dict[str, Any]]:
        """One forward over `images` (RGB); for each: label, index and every class's probability."""
        dl = self.learn.dls.test_dl(images, with_getters=False, bs=len(images))
        with torch.inference_mode():
            probs, _ = self.learn.get_preds(dl=dl)  # (n, n_classes), softmax applied
        return [self._answer(p) for p in probs]

    def _answer(self, probs: torch.Tensor) -> dict[str, Any]:
        order = probs.argsort(descending=True).tolist()
        return {
            "label": self.labels[order[0]],
            "index": order[0],
            "probabilities": {self.labels[i]: round(float(probs[i]), 6) for i in order},  # most likely first
        }


def _hw(size: int | list[int] | None) -> tuple[int, int] | None:
    if not size:
        return None
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
