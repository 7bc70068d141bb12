"""A web server for an exported model: a page to try it, and a JSON API.

What a request holds and what its answer says come from the model's application (its `RequestIO`, see
`ember.learner.app`): an image classifier takes image uploads and answers a label and probabilities; a
segmentation model answers its mask drawn over the upload, as a PNG (`ember.serve.pictures`); a
recommender takes `{"user": ..., "item": ...}` and answers the rating.

The model is loaded once, when the app is made. Images are decoded in a thread pool and every forward
runs in one worker thread, off the event loop; requests that arrive together share a forward
(micro-batching, see `ember.serve.batcher`). Bad input gets a 4xx answer `{"error": "..."}` and the
server goes on serving. Under overload the server sheds load instead of queueing without end: with
`max_queue` images waiting, or a request not answered within `timeout_s`, the answer is 503 with a
Retry-After header. Every setting is an argument; nothing is read from the environment or set for the
whole process.

>>> app = create_app("models/export.pkl")  # doctest: +SKIP
>>> run_server(Path("models/export.pkl"), port=8000)  # doctest: +SKIP
serving resnet34 (export.pkl) on http://127.0.0.1:8000 (local only; use --host 0.0.0.0 to expose it)

`create_app` gives an ASGI app for any server (or fastapi's TestClient); `run_server` runs it with
uvicorn. From a shell, once the server runs:

    curl -F file=@cat.jpg http://127.0.0.1:8000/predict
    curl --data-binary @cat.jpg -H 'Content-Type: image/jpeg' http://127.0.0.1:8000/predict
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import anyio
import torch
import uvicorn
from fastapi import APIRouter, FastAPI
from uvicorn.supervisors import Multiprocess

from ember.learner.export import read_export_info
from ember.serve.batcher import MicroBatcher
from ember.serve.limits import BodyLimit
from ember.serve.model import ServedModel, check_servable
from ember.serve.pictures import json_picture_router, picture_router
from ember.serve.routes import add_error_handlers, image_router, json_router, router

__all__ = ["Limits", "create_app", "run_server"]


@dataclass(frozen=True)
class Limits:
    """What one request may hold (bytes of body, pixels per image, files per batch request) and how long
    it may wait for its answer."""

    max_upload_mb: float = 10
    max_pixels: int = 40_000_000
    max_files: int = 64
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_upload_mb", "max_pixels", "max_files", "timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"create_app: {name} must be positive, got {getattr(self, name)}")

    @property
    def max_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)


@dataclass
class Served:
    """What the routes use, kept on `app.state.served`."""

    model: ServedModel
    batcher: MicroBatcher
    limits: Limits
    decode_limiter: anyio.CapacityLimiter  # images being decoded at once


def create_app(
    model_path: str | Path,
    max_upload_mb: float = 10,
    max_pixels: int = 40_000_000,
    max_files: int | None = None,
    max_batch: int = 16,
    max_wait_ms: float = 2.0,
    max_queue: int = 64,
    timeout_s: float = 30.0,
    threads: int | None = None,
) -> FastAPI:
    """A FastAPI app serving the export at `model_path`, loaded now (a bad file fails here).

    `max_pixels` is checked per image from its header, before decoding (Pillow's process-wide
    `Image.MAX_IMAGE_PIXELS` is left alone). `max_batch=1` turns micro-batching off. `max_queue` images
    may wait for the model; beyond that, and for a request not answered within `timeout_s` of its
    arrival, the answer is 503 with Retry-After. `max_files` per batch request (None: `max_queue`, the
    most that can be queued at once). `threads` sets torch's threads for the process (None leaves
    torch's setting).

    >>> from fastapi.testclient import TestClient
    >>> with TestClient(create_app("export.pkl")) as client:  # doctest: +SKIP
    ...     client.post("/predict", files={"file": open("cat.jpg", "rb")}).json()["label"]
    'cat'
    """
    max_files = max_queue if max_files is None else max_files
    if max_files > max_queue:
        raise ValueError(
            f"create_app: max_files={max_files} is more than max_queue={max_queue} images can wait at once, "
            "so a full batch request could never be queued: lower max_files or raise max_queue"
        )
    limits = Limits(max_upload_mb, max_pixels, max_files, timeout_s)
    model = ServedModel(model_path)
    if threads is not None:
        torch.set_num_threads(threads)
    batcher = MicroBatcher(model.predict_batch, max_batch, max_wait_ms, max_queue)
    served = Served(model, batcher, limits, anyio.CapacityLimiter(os.cpu_count() or 1))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await served.batcher.start()
        yield
        await served.batcher.stop()

    app = FastAPI(title=f"ember · {model.name}", description=f"{_about(model)} {_ERRORS}", lifespan=lifespan)
    app.state.served = served
    app.add_middleware(BodyLimit, max_bytes=served.limits.max_bytes)
    add_error_handlers(app)
    if model.io.mount is not None:  # the application's own page and routes, ahead of the common page
        model.io.mount(app, model.learn)
    app.include_router(router)
    app.include_router(_requests_router(model))
    return app


def _requests_router(model: ServedModel) -> APIRouter:
    if model.io.kind != "image":
        return json_router if model.io.draw is None else json_picture_router
    return image_router if model.io.draw is None else picture_router


def _about(model: ServedModel) -> str:
    if model.io.kind != "image":
        about = f" {model.io.about}" if model.io.about else ""
        return f"Send JSON, e.g. `{model.io.example}`.{about}"
    if model.io.draw is None:
        return _IMAGES
    about = f" {model.io.about}" if model.io.about else ""
    return f"{_PICTURES}{about} For example: `{model.io.example}`."


_IMAGES = (
    "Classify an image with an exported ember model. Send it as multipart form data (field `file`) or as "
    "the raw body with `Content-Type: image/*`."
)
_PICTURES = (
    "Send an image to an exported ember model as multipart form data (field `file`) or as the raw body "
    "with `Content-Type: image/*`. The answer holds the model's picture as a PNG data URI in `image`; "
    "`POST /predict?format=png` answers the PNG itself."
)
_ERRORS = 'Errors come as `{"error": "..."}`.'


def run_server(
    model: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    max_upload_mb: float = 10,
    max_queue: int = 64,
    timeout_s: float = 30.0,
) -> None:
    """Serve the export `model` over HTTP until interrupted (what `ember serve` runs).

    Local only unless `host="0.0.0.0"`. A file that is not an ember export raises `NotAnExportError`
    (one line, saying what the file is) before anything else happens; nothing in it is unpickled.
    Each of the `workers` processes loads its own copy of the model, with its own queue of `max_queue`,
    and gets an equal share of the CPU cores for torch's threads.
    """
    model = Path(model)
    if workers < 1:
        raise ValueError(f"run_server: workers must be at least 1, got {workers}")
    info = read_export_info(model)
    check_servable(model, info)
    threads = max(1, (os.cpu_count() or 1) // workers)
    settings = {"max_upload_mb": max_upload_mb, "max_queue": max_queue, "timeout_s": timeout_s}
    if workers == 1:
        app = create_app(model, threads=threads, **settings)
        print(_banner(model, app.state.served.model.name, host, port), flush=True)
        uvicorn.run(app, host=host, port=port)
        return
    # Each worker is a spawned process that builds its own app: uvicorn pickles the config for it, and a
    # partial of create_app pickles with its arguments (uvicorn.run itself takes only an import string).
    factory = partial(create_app, model, threads=threads, **settings)
    config = uvicorn.Config(factory, host=host, port=port, workers=workers, factory=True)
    print(_banner(model, str(info.get("arch") or model.stem), host, port), flush=True)
    Multiprocess(config, sockets=[config.bind_socket()]).run()


def _banner(model: Path, name: str, host: str, port: int) -> str:
    where = f"http://{host}:{port}"
    if host in ("127.0.0.1", "localhost", "::1"):
        return f"serving {name} ({model.name}) on {where} (local only; use --host 0.0.0.0 to expose it)"
    return f"serving {name} ({model.name}) on {where}: reachable from other machines, with no authentication"
