"""The extension point through which an application plugs into export, loading, the web server, the
report and `show_results`.

An application describes its learners with one `AppSpec` and calls `register_app(spec)` when its module
is imported. The core never imports an application: `learn.export()` asks the registered specs which one
claims the learner, and `load_learner` imports an application's module only by looking its name up in the
fixed table of `ember.apps`, so a file can never name a module to import.

>>> SPEC = AppSpec(name="sketch", task=task, describe=describe, build=build)  # doctest: +SKIP
>>> register_app(SPEC)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from ember.learner.learner import Learner
    from ember.learner.report import Section

__all__ = ["AppSpec", "InputRejected", "RequestIO", "app_of", "register_app", "registered_app"]


class InputRejected(ValueError):
    """A request body that is not an input the model takes; `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _same(learn: Learner, x: Any) -> Any:
    return x


def _any_model(info: dict[str, Any]) -> str | None:
    return None


def _this_one(info: dict[str, Any]) -> None:
    return None


@dataclass(frozen=True)
class RequestIO:
    """How the web server talks to one application's models: request bodies in, JSON answers out.

    `kind` is "image" (uploads: a multipart `file`, or the raw image as the body) or "json" (a JSON
    object, or a list of them, with the keys in `fields`). `read(data, max_pixels, name)` turns one
    upload's bytes (image) or one parsed JSON object (json) into an input, raising `InputRejected`;
    `prepare(learn, x)` may shrink it before it waits for the model; `predict(learn, xs)` answers a batch
    with one JSON-able dict each, in one forward; `check(info)` says why an export cannot be served
    (None when it can).

    An application that serves several tasks gives each its own `RequestIO`: `variant(info)` is the one
    for an export (None: this one). Answers that hold a picture (a segmentation's overlay, a predicted
    image) set `draw`: each answer of `predict` holds under "image" what `draw` turns into PNG bytes,
    called off the forward thread; the server sends it as a `data:image/png;base64,...` URI, or the PNG
    itself for `POST /predict?format=png`. Such an answer may also hold `classes` (name -> share of the
    picture) and `colors` (name -> CSS colour), which the page shows as the picture's legend.

    `mount(app, learn)` (None: none) adds an application's own page and routes to the server's FastAPI
    `app` for the served learner `learn` (the one the API answers with, not a second copy), before the
    common ones, so its `GET /` page replaces the common one (a generative export's sliders page); the
    common JSON API stays.
    """

    kind: str
    read: Callable[[Any, int, str], Any]
    predict: Callable[[Learner, list[Any]], list[dict[str, Any]]]
    prepare: Callable[[Learner, Any], Any] = _same
    check: Callable[[dict[str, Any]], str | None] = _any_model
    fields: tuple[str, ...] = ()
    example: str = ""  # a request that works, for the page and the API's description
    draw: Callable[[Any], bytes] | None = None  # PNG bytes from an answer's "image"; None: no picture
    about: str = ""  # what an answer holds, for the page and the API's description
    variant: Callable[[dict[str, Any]], RequestIO | None] = _this_one
    mount: Callable[[Any, Learner], None] | None = None


@dataclass(frozen=True)
class AppSpec:
    """One application's answers to what the core asks of a learner.

    - `task(learn)`: the task's name ("<app>.classify", ...) when `learn` is this application's, else None.
    - `describe(learn)`: a JSON-safe description of the model and the inference pipeline (architecture
      and its arguments, vocabularies, transforms) plus `info` (arch, task, vocab, input_size...).
    - `build(description, folder, device)`: a Learner for inference from that description, its weights
      not yet loaded (the core loads them, strictly).
    - `request_io`: how the web server reads requests and answers them (None: not servable).
    - `report_sections(learn)`: the report's sections after the common ones (None: the core's classifier
      sections, which appear only for single-label classifiers).
    - `show_results(learn, ds_idx, max_n)`: inputs, targets and predictions (None: the DataBlock's).
    - `microscope(learn, path, dl=..., **kwargs)`: writes a page browsing what each channel of the model
      responds to and returns its path (None: the application has none); `interp.microscope` calls it.
    - `export_model(learn)`: the network whose weights the export holds, the one `build`'s learner has
      as its model (None: `learn.model`; a GAN exports its generator without the critic).
    """

    name: str
    task: Callable[[Learner], str | None]
    describe: Callable[[Learner], dict[str, Any]]
    build: Callable[[dict[str, Any], Path, torch.device], Learner]
    request_io: RequestIO | None = None
    report_sections: Callable[[Learner], Iterable[Section]] | None = None
    show_results: Callable[[Learner, int, int], Any] | None = None
    microscope: Callable[..., Path] | None = None
    export_model: Callable[[Learner], torch.nn.Module] | None = None


_REGISTERED: dict[str, AppSpec] = {}


def register_app(spec: AppSpec) -> None:
    """Make `spec` known to export, `load_learner`, the server and the report (an application does this
    once, when its module is imported). A name belongs to one spec."""
    old = _REGISTERED.get(spec.name)
    if old is not None and old.task.__module__ != spec.task.__module__:  # a module imported again is fine
        raise ValueError(f"register_app: the application name {spec.name!r} is taken; choose another")
    _REGISTERED[spec.name] = spec


def registered_app(name: str) -> AppSpec | None:
    """The spec registered under `name`, or None."""
    return _REGISTERED.get(name)


def app_of(learn: Learner) -> tuple[AppSpec, str] | None:
    """The registered application that claims `learn`, with its task's name; None when none does.

    The last registered is asked first: an application built on another imports it, so registers after
    it, and claims its own learners (which the other might also take for its own) before the other does."""
    for spec in reversed(_REGISTERED.values()):
        task = spec.task(learn)
        if task is not None:
            return spec, task
    return None
