"""The server's endpoints and its JSON error answers (`create_app` puts them together).

GET  /               the page (ember.serve.page)
GET  /model          the export's metadata
GET  /health         {"status": "ok"}

and, for a model whose application reads images (`image_router`):
POST /predict        one image: multipart field `file`, or the raw body with Content-Type image/*
POST /predict/batch  several images: multipart field `files`

(those whose answers are pictures have their own, `ember.serve.pictures`, with `?format=png`)

or, for one that reads JSON (`json_router`, e.g. a recommender's `{"user": 15, "item": "Heat"}`):
POST /predict        one JSON object, or a list of them
POST /predict/batch  a list of JSON objects

(a model whose answers are pictures, e.g. a generator's for `{"seed": 3}`, has the same endpoints in
`ember.serve.pictures`, which answer the picture too)
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException

from ember.learner.app import InputRejected
from ember.serve.batcher import Busy, TimedOut
from ember.serve.page import content_security_policy, render_page

__all__ = ["BatchAnswer", "Prediction", "add_error_handlers", "image_router", "json_router", "router"]

router = APIRouter()  # every model
image_router = APIRouter()  # models whose inputs are images
json_router = APIRouter()  # models whose inputs are JSON objects


class Prediction(BaseModel):
    label: str
    index: int
    probabilities: dict[str, float]  # most likely first
    model: str
    ms: float  # time in the server, from the request's arrival to its answer


class BatchAnswer(BaseModel):
    results: list[Prediction]
    ms: float


class ErrorAnswer(BaseModel):
    error: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorAnswer, "description": why}
    for code, why in [
        (400, "not an input the model takes (not an image, a damaged one, a JSON object without its keys)"),
        (413, "body or image too large"),
        (415, "wrong Content-Type"),
        (503, "busy: the queue is full, or the answer took over timeout_s; retry after Retry-After seconds"),
    ]  # fmt: skip
}
Top = Annotated[int | None, Query(ge=1, description="keep only the k most likely classes")]
_BINARY = {"type": "string", "format": "binary"}


def _form_body(field: str, many: bool, raw: bool) -> dict[str, Any]:
    """The request body's OpenAPI description: which the handlers read themselves, not FastAPI."""
    schema = {"type": "array", "items": _BINARY} if many else _BINARY
    content = {"multipart/form-data": {"schema": {"type": "object", "properties": {field: schema},
                                                  "required": [field]}}}  # fmt: skip
    if raw:
        content["image/*"] = {"schema": _BINARY}
    return {"requestBody": {"required": True, "content": content}}


def _json_body(many: bool) -> dict[str, Any]:
    obj = {"type": "object"}
    schema = {"type": "array", "items": obj} if many else {"oneOf": [obj, {"type": "array", "items": obj}]}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


_RAW_TYPES = ("image/", "application/octet-stream")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def page(request: Request) -> HTMLResponse:
    served = request.app.state.served
    io = served.model.io
    kind = "picture" if io.draw is not None and io.kind == "image" else io.kind
    body = render_page(served.model.info, served.limits.max_upload_mb, kind, io.fields, io.example, io.about)
    headers = {
        "Content-Security-Policy": content_security_policy(kind),
        "X-Content-Type-Options": "nosniff",
    }
    return HTMLResponse(body, headers=headers)


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/model")
async def model_info(request: Request) -> dict[str, Any]:
    """The export's metadata (arch, task, vocab, n_out, input_size, metrics, versions) and the limits."""
    served = request.app.state.served
    limits = served.limits
    serving = {"max_upload_mb": limits.max_upload_mb, "max_pixels": limits.max_pixels,
               "max_files": limits.max_files, "max_batch": served.batcher.max_batch,
               "max_queue": served.batcher.max_queue, "timeout_s": limits.timeout_s}  # fmt: skip
    return {**served.model.info, "file": served.model.path.name, "serving": serving}


@image_router.post(
    "/predict",
    response_model=Prediction,
    responses=_ERRORS,
    openapi_extra=_form_body("file", many=False, raw=True),
)
async def predict(request: Request, top: Top = None) -> dict[str, Any]:
    """Classify one image; `top=k` keeps the k most likely classes in `probabilities`."""
    start = time.perf_counter()
    data, name = await _one_upload(request)
    [answer] = await _images_answered(request, [(data, name)], start)
    return {**_keep_top(answer, top), "ms": _ms_since(start)}


@image_router.post(
    "/predict/batch",
    response_model=BatchAnswer,
    responses=_ERRORS,
    openapi_extra=_form_body("files", many=True, raw=False),
)
async def predict_batch(request: Request, top: Top = None) -> dict[str, Any]:
    """Classify several images (multipart field `files`), answered in the order sent."""
    start = time.perf_counter()
    answers = await _images_answered(request, await _many_uploads(request), start)
    ms = _ms_since(start)
    return {"results": [{**_keep_top(a, top), "ms": ms} for a in answers], "ms": ms}


@json_router.post("/predict", responses=_ERRORS, openapi_extra=_json_body(many=False))
async def predict_json(request: Request) -> dict[str, Any]:
    """Answer one JSON object (`{"results": [...]}` for a list of them)."""
    start = time.perf_counter()
    body = await _json(request)
    if isinstance(body, list):
        answers = await _json_answered(request, body, start)
        return {"results": [{**a, "ms": _ms_since(start)} for a in answers], "ms": _ms_since(start)}
    [answer] = await _json_answered(request, [body], start)
    return {**answer, "ms": _ms_since(start)}


@json_router.post("/predict/batch", responses=_ERRORS, openapi_extra=_json_body(many=True))
async def predict_json_batch(request: Request) -> dict[str, Any]:
    """Answer a list of JSON objects, in the order sent."""
    start = time.perf_counter()
    body = await _json(request)
    if not isinstance(body, list):
        raise HTTPException(
            400, "POST /predict/batch takes a JSON list of objects; send one object to /predict"
        )
    answers = await _json_answered(request, body, start)
    return {"results": [{**a, "ms": _ms_since(start)} for a in answers], "ms": _ms_since(start)}


async def _images_answered(request: Request, uploads: list[tuple[bytes, str]], start: float) -> list[dict]:
    """Each upload's answer; every image is decoded (or one refused) before any of them reaches the model."""
    request.app.state.served.batcher.check_room(len(uploads))  # a full queue refuses before any decoding
    inputs = await asyncio.gather(*(_decode(request, data, name) for data, name in uploads))
    return await _answered(request, list(inputs), start)


async def _json_answered(request: Request, objs: list[Any], start: float) -> list[dict[str, Any]]:
    served = request.app.state.served
    if not objs or len(objs) > served.limits.max_files:
        raise HTTPException(400, f"send 1 to {served.limits.max_files} objects; got {len(objs)}")
    inputs = [served.model.read(x, served.limits.max_pixels, f"item {i}") for i, x in enumerate(objs)]
    return await _answered(request, inputs, start)


async def _answered(request: Request, inputs: list[Any], start: float) -> list[dict[str, Any]]:
    """Each input's answer, from forwards shared with whatever else is queued; `Busy` (503) when the
    queue cannot take them all, or when they are not answered within timeout_s of `start`."""
    served = request.app.state.served
    served.batcher.check_room(len(inputs))
    timeout_s = served.limits.timeout_s
    try:
        answers = await served.batcher.submit_many(inputs, timeout_s - (time.perf_counter() - start))
    except TimedOut:
        raise TimedOut(f"not answered within {timeout_s:g} s: the server is busy; try again") from None
    return [{**a, "model": served.model.name} for a in answers]


async def _decode(request: Request, data: bytes, name: str) -> Any:
    """Decoded in a worker thread, at most `decode_limiter` at once: a decoded 40-megapixel image holds
    120 MB, so the number decoding together bounds the memory they take."""
    served = request.app.state.served

    def decode() -> Any:
        return served.model.read(data, served.limits.max_pixels, name)

    return await anyio.to_thread.run_sync(decode, limiter=served.decode_limiter)


# ---- reading the request -------------------------------------------------------------------------
async def _json(request: Request) -> Any:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        example = request.app.state.served.model.io.example
        raise HTTPException(415, f"Content-Type {ctype or '(none)'!r}: this model takes JSON, e.g. {example}")
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HTTPException(400, f"the body is not valid JSON ({e})") from None


async def _one_upload(request: Request) -> tuple[bytes, str]:
    if _content_type(request) != "multipart/form-data":
        return await request.body(), "the request body"
    form = await _form(request)
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise HTTPException(400, _missing_field("file", form, "curl -F file=@cat.jpg URL/predict"))
    return await upload.read(), f"file {upload.filename!r}"


async def _many_uploads(request: Request) -> list[tuple[bytes, str]]:
    if _content_type(request) != "multipart/form-data":
        raise HTTPException(
            415, "POST /predict/batch takes multipart/form-data with the images in the field `files`, "
            "e.g. curl -F files=@a.jpg -F files=@b.jpg URL/predict/batch",
        )  # fmt: skip
    form = await _form(request)
    uploads = [u for u in form.getlist("files") if isinstance(u, UploadFile)]
    if not uploads:
        raise HTTPException(400, _missing_field("files", form, "curl -F files=@a.jpg -F files=@b.jpg ..."))
    return [(await u.read(), f"files[{i}] ({u.filename!r})") for i, u in enumerate(uploads)]


def _content_type(request: Request) -> str:
    """The request's media type, checked: multipart/form-data or a raw image (415 otherwise)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data" or ctype.startswith(_RAW_TYPES):
        return ctype
    raise HTTPException(415, f"Content-Type {ctype or '(none)'!r} is not an image upload: send multipart/"
                             "form-data with the image in the field `file`, or the raw image with "
                             "Content-Type image/jpeg, image/png, ...")  # fmt: skip


async def _form(request: Request) -> FormData:
    max_files = request.app.state.served.limits.max_files
    return await request.form(max_files=max_files, max_fields=max_files)


def _missing_field(field: str, form: FormData, example: str) -> str:
    got = sorted(set(form.keys())) or "no fields"
    return f"no file in the form field `{field}` (the form has {got}); send e.g. {example}"


def _keep_top(answer: dict[str, Any], top: int | None) -> dict[str, Any]:
    if top is None:
        return answer
    return {**answer, "probabilities": dict(list(answer["probabilities"].items())[:top])}


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


# ---- errors as JSON ------------------------------------------------------------------------------
def add_error_handlers(app: FastAPI) -> None:
    """Every error answered as `{"error": "..."}` with its status."""
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(InputRejected, _rejected)  # type: ignore[arg-type]
    app.add_exception_handler(Busy, _busy)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _failed)


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    message = exc.detail
    if exc.status_code == 404 and message == "Not Found":  # the router's own: no route for this path
        message = f"no such page: {request.method} {request.url.path}; the API is described at /docs"
    elif exc.status_code == 405 and message == "Method Not Allowed":
        message = f"{request.url.path} does not take {request.method}; the API is described at /docs"
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)


async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return JSONResponse({"error": f"invalid request ({where})"}, status_code=422)


async def _rejected(request: Request, exc: InputRejected) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=exc.status)


async def _busy(request: Request, exc: Busy) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=503, headers={"Retry-After": str(exc.retry_after_s)})


async def _failed(request: Request, exc: Exception) -> JSONResponse:
    # Starlette logs the traceback after this answer; the client gets what failed, in one line.
    message = f"the server failed on this request ({type(exc).__name__}: {exc}); its log has the details"
    return JSONResponse({"error": message}, status_code=500)
