"""The endpoints for a model whose answers are pictures (its `RequestIO` sets `draw`: a segmentation's
overlay, an image-to-image model's image). They read images as `image_router` does; the answer holds the
picture as a PNG data URI in `image`, or is the PNG itself:

POST /predict                one image -> {"image": "data:image/png;base64,...", ..., "model", "ms"}
POST /predict?format=png     one image -> the PNG (image/png)
POST /predict/batch          several images (multipart field `files`) -> {"results": [...], "ms"}

The picture is drawn and encoded in the decoding threads, not in the one thread that runs the model.
"""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from ember.serve.routes import (
    _BINARY,
    _ERRORS,
    _form_body,
    _images_answered,
    _many_uploads,
    _ms_since,
    _one_upload,
)

__all__ = ["PictureAnswer", "PictureBatch", "picture_router"]

picture_router = APIRouter()


class PictureAnswer(BaseModel):
    """The picture, and whatever else the application answers (e.g. a segmentation's `classes`)."""

    model_config = ConfigDict(extra="allow")
    image: str  # data:image/png;base64,...
    model: str
    ms: float  # time in the server, from the request's arrival to its answer


class PictureBatch(BaseModel):
    results: list[PictureAnswer]
    ms: float


Format = Annotated[
    Literal["json", "png"],
    Query(description="json: the answer, with the picture as a data URI in `image`; png: the picture alone"),
]
_PNG = {
    200: {"content": {"image/png": {"schema": _BINARY}}, "description": "the answer; with format=png the PNG"}
}


@picture_router.post(
    "/predict",
    response_model=PictureAnswer,
    responses={**_PNG, **_ERRORS},
    openapi_extra=_form_body("file", many=False, raw=True),
)
async def predict_picture(request: Request, format: Format = "json") -> Any:
    """One image's answer: the picture as a data URI in `image` (`format=png`: the PNG itself)."""
    start = time.perf_counter()
    data, name = await _one_upload(request)
    [answer] = await _images_answered(request, [(data, name)], start)
    [png] = await _drawn(request, [answer])
    if format == "png":
        headers = {"X-Model": answer["model"], "X-Server-Ms": str(_ms_since(start))}
        return Response(png, media_type="image/png", headers=headers)
    return {**answer, "image": _data_uri(png), "ms": _ms_since(start)}


@picture_router.post(
    "/predict/batch",
    response_model=PictureBatch,
    responses=_ERRORS,
    openapi_extra=_form_body("files", many=True, raw=False),
)
async def predict_picture_batch(request: Request) -> dict[str, Any]:
    """Several images' answers (multipart field `files`), in the order sent."""
    start = time.perf_counter()
    answers = await _images_answered(request, await _many_uploads(request), start)
    pngs = await _drawn(request, answers)
    ms = _ms_since(start)
    return {"results": [{**a, "image": _data_uri(p), "ms": ms} for a, p in zip(answers, pngs)], "ms": ms}


async def _drawn(request: Request, answers: list[dict[str, Any]]) -> list[bytes]:
    """Each answer's picture as PNG bytes, drawn in worker threads (at most `decode_limiter` at once: a
    picture at a camera photo's size holds as much memory as its decoded upload)."""
    served = request.app.state.served
    draw = served.model.io.draw

    async def one(answer: dict[str, Any]) -> bytes:
        return await anyio.to_thread.run_sync(draw, answer["image"], limiter=served.decode_limiter)

    return list(await asyncio.gather(*(one(a) for a in answers)))


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
