"""The sliders page: steer an exported GAN or VAE with one slider per latent direction (`ember sliders`).

GET  /                the page (its HTML, CSS and JavaScript are package files served by this app:
                      nothing is fetched from elsewhere, so it works offline)
GET  /directions      the sliders: `directions` (k, d), `sigmas` (k,), `mean` (d,), `labels`, `range`
GET  /sample?seed=n   the seed's latent vector `z` and its slider positions `coords`
POST /decode          `{"z": [...]}` or `{"coords": [...]}` -> the image, as a PNG
POST /encode          a VAE only: an image (multipart field `file`, or the raw body) -> `{"z", "coords"}`;
                      `?fit=true` first converts it to the model's channels and squashes it to its size
GET  /health

A slider's position is in standard deviations of the data along its direction: `{"coords": c}` decodes
`z = mean + sum_i c_i sigma_i d_i`, and a vector's positions are `c_i = (z - mean) . d_i / sigma_i`. The
page moves from where it started, `z = z0 + sum_i (c_i - c0_i) sigma_i d_i`, so that the part of an
uploaded image's code that no slider reaches is kept. One forward runs at a time, off the event loop.

>>> app = create_sliders_app("gan.pkl")  # doctest: +SKIP
>>> run_sliders(Path("gan.pkl"), port=8000)  # doctest: +SKIP
sliders for BasicGenerator GAN generator (gan.pkl) on http://127.0.0.1:8000 (local only; ...); 8 sliders
"""

from __future__ import annotations

import functools
import html
import json
import time
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import anyio
import torch
import uvicorn
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, Response
from PIL import Image
from starlette.datastructures import UploadFile
from torch import Tensor

from ember.learner.app import InputRejected
from ember.learner.export import load_learner, read_export_info
from ember.serve.limits import BodyLimit
from ember.serve.routes import add_error_handlers
from ember.vision.core import ImageLoadError, ImageTooLarge, open_image

from .app import MAX_SEED, N_DIRECTIONS, GenerativeLearner, png_of

__all__ = ["NotGenerativeError", "SliderModel", "create_sliders_app", "mount_sliders", "run_sliders"]

RANGE = 3.0  # the sliders go from -RANGE to +RANGE standard deviations
_MODES = {1: "L", 3: "RGB"}


class NotGenerativeError(ValueError):
    """An export that is not a GAN's or a VAE's, given to the sliders page."""


@dataclass
class SliderModel:
    """A loaded generative export and the `k` directions its sliders move along."""

    learn: GenerativeLearner
    directions: Tensor  # (k, d) unit rows
    sigmas: Tensor  # (k,)
    mean: Tensor  # (d,)
    labels: list[str]
    name: str

    @classmethod
    def load(cls, path: str | Path, k: int = N_DIRECTIONS) -> SliderModel:
        """The export at `path` with its first `k` directions (all it holds when it holds fewer); a clear
        error for an export that is not a GAN's or a VAE's."""
        path = Path(path)
        info = read_export_info(path)
        if info.get("app") != "generative":
            raise NotGenerativeError(
                f"{path} holds a {info.get('app') or 'DataBlock'} model ({info.get('arch') or '?'}, task: "
                f"{info.get('task') or '?'}); the sliders page needs the export of a GAN or a VAE "
                "(learn.export() of a GANLearner or a VAELearner). Serve this model with `ember serve` "
                "instead"
            )
        learn = load_learner(path)
        assert isinstance(learn, GenerativeLearner)
        return cls.of(learn, str(info.get("arch") or path.stem), k)

    @classmethod
    def of(cls, learn: GenerativeLearner, name: str, k: int = N_DIRECTIONS) -> SliderModel:
        """`learn`'s first `k` directions (all it holds when it holds fewer), for the page titled `name`."""
        dirs = learn.directions
        if k < 1:
            raise ValueError(f"--k {k}: the page needs at least one slider")
        raw = len(dirs.sigmas) == learn.latent_dim and torch.equal(
            dirs.directions, torch.eye(learn.latent_dim)
        )
        # An export holds N_DIRECTIONS (latent_dim when fewer); one the data does not vary along (fewer
        # items than directions) would move nothing, and its positions would divide by a zero sigma.
        idx = torch.nonzero(dirs.sigmas > 1e-6 * dirs.sigmas.max()).flatten()[:k]
        labels = [f"z[{i}]" if raw else f"PC{i + 1} · {100 * float(dirs.explained[i]):.0f}%" for i in idx]
        return cls(learn, dirs.directions[idx], dirs.sigmas[idx], dirs.mean, labels, name)

    def z_of(self, coords: Tensor) -> Tensor:
        """The latent vector `(d,)` at slider positions `coords` `(k,)`: `mean + sum_i c_i sigma_i d_i`."""
        return self.mean + (coords * self.sigmas) @ self.directions

    def coords_of(self, z: Tensor) -> Tensor:
        """The slider positions `(k,)` of a latent vector `(d,)`: its projections, in sigmas."""
        return (z - self.mean) @ self.directions.T / self.sigmas

    def png(self, z: Tensor) -> bytes:
        return png_of(self.learn.decode(z[None])[0])


@dataclass
class _Served:
    model: SliderModel
    forward: anyio.CapacityLimiter  # one forward at a time
    max_pixels: int


router = APIRouter()


def create_sliders_app(
    model_path: str | Path, k: int = N_DIRECTIONS, max_upload_mb: float = 10, max_pixels: int = 40_000_000
) -> FastAPI:
    """A FastAPI app serving the sliders page of the generative export at `model_path`, loaded now.

    >>> from fastapi.testclient import TestClient
    >>> with TestClient(create_sliders_app("gan.pkl")) as client:  # doctest: +SKIP
    ...     png = client.post("/decode", json={"coords": [0] * 8}).content
    """
    model = SliderModel.load(model_path, k)
    app = FastAPI(title=f"ember sliders · {model.name}", description=__doc__.split("\n\n")[1])
    app.add_middleware(BodyLimit, max_bytes=int(max_upload_mb * 2**20))
    add_error_handlers(app)
    _add_sliders(app, model, max_pixels)
    return app


def mount_sliders(
    app: FastAPI, learn: GenerativeLearner, k: int = N_DIRECTIONS, max_pixels: int = 40_000_000
) -> None:
    """Add the sliders page of the loaded `learn` and its API to another FastAPI `app` (what `ember serve`
    of a generative export does, through `RequestIO.mount`, with the learner it serves): its `GET /`
    becomes the sliders page."""
    name = str(learn.export_info.get("arch") or "generative model")
    _add_sliders(app, SliderModel.of(learn, name, k), max_pixels)


def _add_sliders(app: FastAPI, model: SliderModel, max_pixels: int) -> None:
    app.state.sliders = _Served(model, anyio.CapacityLimiter(1), max_pixels)
    app.include_router(router)


def _model(request: Request) -> SliderModel:
    return request.app.state.sliders.model


@functools.cache
def _static(name: str) -> str:
    return files("ember.generative").joinpath("static", name).read_text(encoding="utf-8")


_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self' blob:; base-uri 'none'; form-action 'none'"
)
_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page(request: Request) -> HTMLResponse:
    m = _model(request)
    learn, (h, w) = _model(request).learn, _model(request).learn.img_size
    summary = f"{learn.kind.upper()} · latent size {learn.latent_dim} · {w}×{h} px · {len(m.labels)} sliders"
    body = _static("sliders.html").format(
        title=html.escape(f"{m.name} · ember sliders"), name=html.escape(m.name),
        summary=html.escape(summary),
        width=w, height=h, range_note=f"−{RANGE:g}σ to +{RANGE:g}σ",
        encode_note=", <code>POST /encode</code>" if learn.kind == "vae" else "",
    )  # fmt: skip
    return HTMLResponse(body, headers={"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff"})


@router.get("/static/{name}", include_in_schema=False)
async def static(name: str) -> Response:
    if name not in ("sliders.js", "sliders.css"):
        raise InputRejected(f"no such file: /static/{name}", status=404)
    return Response(_static(name), media_type=_TYPES[name.rsplit(".", 1)[1]])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/directions")
async def directions(request: Request) -> dict[str, Any]:
    """The sliders: each one's direction (unit rows), its data's standard deviation, their origin, labels."""
    m = _model(request)
    learn = m.learn
    return {
        "directions": m.directions.tolist(), "sigmas": m.sigmas.tolist(), "mean": m.mean.tolist(),
        "labels": m.labels, "range": RANGE, "kind": learn.kind, "latent_dim": learn.latent_dim,
        "img_size": list(learn.img_size), "n_channels": learn.n_channels, "can_encode": learn.kind == "vae",
        "name": m.name,
    }  # fmt: skip


@router.get("/sample")
async def sample(
    request: Request, seed: int = Query(0, ge=0, le=MAX_SEED, description="the random seed")
) -> dict[str, Any]:
    """The latent vector of `seed` (the same as `learn.sample_z(1, seed=seed)`) and its slider positions."""
    m = _model(request)
    z = m.learn.sample_z(1, seed=seed)[0]
    return {"seed": seed, "z": z.tolist(), "coords": m.coords_of(z).tolist()}


@router.post("/decode", response_class=Response, responses={200: {"content": {"image/png": {}}}})
async def decode(request: Request) -> Response:
    """`{"z": [...]}` (latent_dim numbers) or `{"coords": [...]}` (k slider positions) -> the image (PNG)."""
    start = time.perf_counter()
    served: _Served = request.app.state.sliders
    z = _z_of(served.model, await _json(request))
    png = await anyio.to_thread.run_sync(served.model.png, z, limiter=served.forward)
    ms = f"{(time.perf_counter() - start) * 1000:.2f}"
    return Response(png, media_type="image/png", headers={"X-Server-Ms": ms, "Cache-Control": "no-store"})


@router.post("/encode")
async def encode(request: Request, fit: bool = False) -> dict[str, Any]:
    """A VAE's code of an image (multipart field `file`, or the raw body) and its slider positions.
    `fit=true` converts the image to the model's channels and squashes it to its size (as the page does)."""
    served: _Served = request.app.state.sliders
    m = served.model
    if m.learn.kind != "vae":
        raise InputRejected("this export is a GAN's generator, which cannot encode an image: only a VAE can")
    data, name = await _upload(request)
    img = _open(data, name, served.max_pixels)
    img, fitted = _fitted(m.learn, img) if fit else (img, "")
    try:
        z = await anyio.to_thread.run_sync(m.learn.encode, img, limiter=served.forward)
    except ValueError as e:
        raise InputRejected(str(e).replace("the image", name)) from e
    return {"z": z[0].tolist(), "coords": m.coords_of(z[0]).tolist(), "fitted": fitted}


# ---- reading requests ------------------------------------------------------------------------------
async def _json(request: Request) -> Any:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise InputRejected(f'Content-Type {ctype or "(none)"!r}: send JSON, e.g. {{"z": [...]}}', status=415)
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputRejected(f"the body is not valid JSON ({e})") from None


def _z_of(m: SliderModel, body: Any) -> Tensor:
    """The latent vector a `/decode` body asks for, checked: `z` of latent_dim numbers, or `coords` of k."""
    key = next((k for k in ("z", "coords") if isinstance(body, dict) and k in body), None)
    values = body.get(key) if key else None
    if not isinstance(values, list) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        raise InputRejected(
            'send {"z": [...]} (the latent vector) or {"coords": [...]} (the sliders\' positions), lists of '
            f"numbers; got {str(body)[:80]}"
        )
    size = m.learn.latent_dim if key == "z" else len(m.labels)
    if len(values) != size:
        what = "this model's latent size" if key == "z" else "the number of sliders"
        raise InputRejected(f'"{key}" has {len(values)} values, but {what} is {size}: send {size} numbers')
    x = torch.tensor(values, dtype=torch.float32)
    if not torch.isfinite(x).all():
        raise InputRejected(f'"{key}" holds a value that is not a finite number')
    return x if key == "z" else m.z_of(x)


async def _upload(request: Request) -> tuple[bytes, str]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "multipart/form-data":
        return await request.body(), "the request body"
    form = await request.form(max_files=1, max_fields=1)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise InputRejected("no file in the form field `file`; send e.g. curl -F file=@digit.png URL/encode")
    return await upload.read(), f"file {upload.filename!r}"


def _open(data: bytes, name: str, max_pixels: int) -> Image.Image:
    try:
        return open_image(data, mode=None, max_pixels=max_pixels, name=name)
    except ImageTooLarge as e:
        raise InputRejected(str(e), status=413) from e
    except ImageLoadError as e:
        raise InputRejected(str(e)) from e


def _fitted(learn: GenerativeLearner, img: Image.Image) -> tuple[Image.Image, str]:
    """`img` in the model's mode and size, and what was done to it ("" when nothing)."""
    done, (h, w) = [], learn.img_size
    mode = _MODES.get(learn.n_channels, img.mode)
    if img.mode != mode:
        done.append(f"converted from {img.mode} to {mode}")
        img = img.convert(mode)
    if img.size != (w, h):
        done.append(f"squashed from {img.width}x{img.height} to {w}x{h}")
        img = img.resize((w, h), Image.Resampling.BILINEAR)
    return img, ", ".join(done)


def run_sliders(
    model: Path, host: str = "127.0.0.1", port: int = 8000, k: int = N_DIRECTIONS, max_upload_mb: float = 10
) -> None:
    """Serve the sliders page of the generative export `model` until interrupted (what `ember sliders` runs).
    Local only unless `host="0.0.0.0"`."""
    app = create_sliders_app(model, k, max_upload_mb)
    name, where = app.state.sliders.model.name, f"http://{host}:{port}"
    local = host in ("127.0.0.1", "localhost", "::1")
    note = "local only; use --host 0.0.0.0 to expose it" if local else "reachable from other machines"
    n = len(app.state.sliders.model.labels)
    print(f"sliders for {name} ({Path(model).name}) on {where} ({note}); {n} sliders", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
