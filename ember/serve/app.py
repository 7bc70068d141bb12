"""A web server for an exported image classifier: a page to try it, and a JSON API.

The model is loaded once, when the app is made. Images are decoded in a thread pool and every forward
runs in one worker thread, off the event loop; requests that arrive together share a forward
(micro-batching, see `ember.serve.batcher`). Bad input gets a 4xx answer `{"error": "..."}` and the
server goes on serving.

>>> app = create_app("models/export.pkl")  # doctest: +SKIP
>>> run_server(Path("models/export.pkl"), port=8000)  # doctest: +SKIP
serving resnet34 (export.pkl) on http://127.0.0.1:8000 (local only; use --host 0.0.0.0 to expose it)

`create_app` gives an ASGI app for any server (or fastapi's TestClient); `run_server` runs it with
uvicorn. From a shell, once the server runs:

    curl -F file=@cat.jpg http://127.0.0.1:8000/predict
    curl --data-binary @cat.jpg -H 'Content-Type: image/jpeg' http://127.0.0.1:8000/predict
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import torch
import uvicorn
from fastapi import FastAPI
from PIL import Image

from ember.learner.export import read_export_info
from ember.serve.batcher import MicroBatcher
from ember.serve.limits import BodyLimit
from ember.serve.model import ServedModel, check_servable
from ember.serve.routes import add_error_handlers, router

__all__ = ["Limits", "create_app", "run_server"]

_ENV = "EMBER_SERVE_ARGS"  # create_app's arguments, for the worker processes uvicorn starts itself


@dataclass(frozen=True)
class Limits:
    """What one request may hold: bytes of body, pixels per image, files per batch request."""

    max_upload_mb: float = 10
    max_pixels: int = 40_000_000
    max_files: int = 64

    def __post_init__(self) -> None:
        for name in ("max_upload_mb", "max_pixels", "max_files"):
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
    max_files: int = 64,
    max_batch: int = 16,
    max_wait_ms: float = 2.0,
    threads: int | None = None,
) -> FastAPI:
    """A FastAPI app serving the export at `model_path`, loaded now (a bad file fails here).

    `max_batch=1` turns micro-batching off. `threads` sets torch's threads for the process (None leaves
    torch's setting). Pillow's process-wide `Image.MAX_IMAGE_PIXELS` is set to `max_pixels`, so that
    Pillow too refuses decompression bombs (at twice that) wherever it opens images in this process.

    >>> from fastapi.testclient import TestClient
    >>> with TestClient(create_app("export.pkl")) as client:  # doctest: +SKIP
    ...     client.post("/predict", files={"file": open("cat.jpg", "rb")}).json()["label"]
    'cat'
    """
    model = ServedModel(model_path)
    if threads is not None:
        torch.set_num_threads(threads)
    Image.MAX_IMAGE_PIXELS = max_pixels
    batcher = MicroBatcher(model.predict_batch, max_batch, max_wait_ms)
    limits = Limits(max_upload_mb, max_pixels, max_files)
    served = Served(model, batcher, limits, anyio.CapacityLimiter(os.cpu_count() or 1))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await served.batcher.start()
        yield
        await served.batcher.stop()

    app = FastAPI(title=f"ember · {model.name}", description=_DESCRIPTION, lifespan=lifespan)
    app.state.served = served
    app.add_middleware(BodyLimit, max_bytes=served.limits.max_bytes)
    add_error_handlers(app)
    app.include_router(router)
    return app


_DESCRIPTION = (
    "Classify an image with an exported ember model. Send it as multipart form data (field `file`) or as "
    'the raw body with `Content-Type: image/*`. Errors come as `{"error": "..."}`.'
)


def run_server(
    model: Path, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, max_upload_mb: float = 10
) -> None:
    """Serve the export `model` over HTTP until interrupted (what `ember serve` runs).

    Local only unless `host="0.0.0.0"`. A file that is not an ember export raises `NotAnExportError`
    (one line, saying what the file is) before anything else happens; nothing in it is unpickled.
    Each of the `workers` processes loads its own copy of the model and gets an equal share of the
    CPU cores for torch's threads.
    """
    model = Path(model)
    if workers < 1:
        raise ValueError(f"run_server: workers must be at least 1, got {workers}")
    info = read_export_info(model)
    check_servable(model, info)
    threads = max(1, (os.cpu_count() or 1) // workers)
    if workers == 1:
        app = create_app(model, max_upload_mb=max_upload_mb, threads=threads)
        print(_banner(model, app.state.served.model.name, host, port), flush=True)
        uvicorn.run(app, host=host, port=port)
        return
    os.environ[_ENV] = json.dumps(
        {"model_path": str(model), "max_upload_mb": max_upload_mb, "threads": threads}
    )
    print(_banner(model, str(info.get("arch") or model.stem), host, port), flush=True)
    uvicorn.run("ember.serve.app:_app_from_env", factory=True, host=host, port=port, workers=workers)


def _app_from_env() -> FastAPI:
    """The app in a worker process that uvicorn started (it can only pass an import string)."""
    args: dict[str, Any] = json.loads(os.environ[_ENV])
    return create_app(**args)


def _banner(model: Path, name: str, host: str, port: int) -> str:
    where = f"http://{host}:{port}"
    if host in ("127.0.0.1", "localhost", "::1"):
        return f"serving {name} ({model.name}) on {where} (local only; use --host 0.0.0.0 to expose it)"
    return f"serving {name} ({model.name}) on {where}: reachable from other machines, with no authentication"
