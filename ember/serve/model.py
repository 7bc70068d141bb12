"""The served model: an export file loaded once, with its application's request I/O (`RequestIO`):
how a request body becomes an input, and a batch of inputs becomes one JSON answer each.

>>> model = ServedModel("export.pkl")  # doctest: +SKIP
>>> x = model.read(open("cat.jpg", "rb").read(), 40_000_000, "cat.jpg")  # doctest: +SKIP
>>> model.predict_batch([x])[0]["label"]  # doctest: +SKIP
'cat'
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ember.apps import UnknownApp, load_app
from ember.learner.app import RequestIO
from ember.learner.export import load_learner, read_export_info

__all__ = ["ServeError", "ServedModel", "check_servable"]


class ServeError(ValueError):
    """A model file that is an ember export, but not one this server can serve."""


def check_servable(path: Path, info: dict[str, Any]) -> RequestIO:
    """The request I/O of the export's application (its `variant` for this export); a `ServeError` saying
    what to do when it has none, or when it cannot serve this model (`RequestIO.check`)."""
    try:
        spec = load_app(info.get("app"))
    except UnknownApp as e:
        raise ServeError(f"{path} names no application this server knows: {e}") from e
    io = spec.request_io
    if io is not None:
        io = io.variant(info) or io  # an application with one RequestIO per task
    why = f"holds a {spec.name} model, which has no web API" if io is None else io.check(info)
    if why:
        raise ServeError(f"{path} {why}")
    assert io is not None
    return io


class ServedModel:
    """An export file's learner on the CPU, its description (`info`) and its application's request I/O."""

    def __init__(self, path: str | Path, cpu: bool = True) -> None:
        self.path = Path(path)
        info = read_export_info(self.path)  # refuses a file that is not an export before anything is built
        self.io = check_servable(self.path, info)
        self.learn = load_learner(self.path, cpu=cpu)
        self.info: dict[str, Any] = dict(self.learn.export_info)
        self.name: str = str(self.info.get("arch") or self.path.stem)

    def read(self, data: Any, max_pixels: int, name: str) -> Any:
        """One input from an upload's bytes (images) or a JSON object; `InputRejected` when it is not one."""
        return self.prepare(self.io.read(data, max_pixels, name))

    def prepare(self, x: Any) -> Any:
        """`x` made ready to wait for the model (an image shrunk towards the model's input size)."""
        return self.io.prepare(self.learn, x)

    def predict_batch(self, inputs: list[Any]) -> list[dict[str, Any]]:
        """One forward over `inputs`; one JSON-able answer for each."""
        with torch.inference_mode():
            return self.io.predict(self.learn, inputs)
