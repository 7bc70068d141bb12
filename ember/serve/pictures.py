"""The endpoints for a model whose answers are pictures (its `RequestIO` sets `draw`: a segmentation's
overlay, an image-to-image model's image). They read images as `image_router` does; the answer holds the
picture as a PNG data URI in `image`, or is the PNG itself:

POST /predict                one image -> {"image": "data:image/png;base64,...", ..., "model", "ms"}
POST /predict?format=png     one image -> the PNG (image/png)
POST /predict/batch          several images (multipart field `files`) -> {"results": [...], "ms"}

A model that reads JSON and answers a picture (a generator's `{"seed": 3}`) has the same endpoints in
`json_picture_router`, with JSON bodies: one object to `/predict`, a list of them to `/predict/batch`.

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
from starlette.exceptions import HTTPException

from ember.serve.routes import (
    _BINARY,
    _ERRORS,
    _form_body,
    _images_answered,
    _json,
    _json_answered,
    _json_body,
    _many_uploads,
    _ms_since,
    _one_upload,
)

__all__ = ["PictureAnswer", "PictureBatch", "json_picture_router", "picture_router"]

picture_router = APIRouter()  # images in
json_picture_router = APIRouter()  # JSON objects in


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
    return _one_answer(answer, png, format, start)


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
    return _batch_answer(answers, await _drawn(request, answers), start)


# No response_model: FastAPI would reorder an answer's keys to the model's fields. `responses` documents
# the same schema and the answer keeps the application's order (its answer first, as the form page shows).
@json_picture_router.post(
    "/predict",
    response_model=None,
    responses={200: {**_PNG[200], "model": PictureAnswer}, **_ERRORS},
    openapi_extra=_json_body(many=False),
)
async def predict_json_picture(request: Request, format: Format = "json") -> Any:
    """One JSON object's answer: the picture as a data URI in `image` (`format=png`: the PNG itself)."""
    start = time.perf_counter()
    body = await _json(request)
    if isinstance(body, list):
        raise HTTPException(400, "POST /predict takes one JSON object; send a list of them to /predict/batch")
    [answer] = await _json_answered(request, [body], start)
    [png] = await _drawn(request, [answer])
    return _one_answer(answer, png, format, start)


@json_picture_router.post(
    "/predict/batch",
    response_model=None,
    responses={200: {"model": PictureBatch, "description": "the answers"}, **_ERRORS},
    openapi_extra=_json_body(many=True),
)
async def predict_json_picture_batch(request: Request) -> dict[str, Any]:
    """A list of JSON objects' answers, in the order sent."""
    start = time.perf_counter()
    body = await _json(request)
    if not isinstance(body, list):
        raise HTTPException(400, "POST /predict/batch takes a JSON list of objects; send one to /predict")
    answers = await _json_answered(request, body, start)
    return _batch_answer(answers, await _drawn(request, answers), start)


def _one_answer(answer: dict[str, Any], png: bytes, format: str, start: float) -> Any:
    if format == "png":
        headers = {"X-Model": answer["model"], "X-Server-Ms": str(_ms_since(start))}
        return Response(png, media_type="image/png", headers=headers)
    return {**answer, "image": _data_uri(png), "ms": _ms_since(start)}


def _batch_answer(answers: list[dict[str, Any]], pngs: list[bytes], start: float) -> dict[str, Any]:
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
