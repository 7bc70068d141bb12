"""A request-body size limit enforced while the body arrives, not after it has all been read.

A request whose Content-Length is over the limit is answered 413 before its body is read; one without
(chunked) is stopped by the first chunk that takes it over.

>>> app.add_middleware(BodyLimit, max_bytes=10 * 2**20)  # doctest: +SKIP
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimit", "BodyTooLarge"]


class BodyTooLarge(HTTPException):
    """Raised from the body stream, so the app's handler for HTTP errors answers it (413)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"the request body is over this server's limit of {_mb(max_bytes)}: send a "
                              "smaller image, or start the server with a larger --max-upload-mb")  # fmt: skip


class BodyLimit:
    """ASGI middleware: at most `max_bytes` of body per request."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            error = BodyTooLarge(self.max_bytes)
            await JSONResponse({"error": error.detail}, status_code=413)(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    def _counting(self, receive: Receive) -> Receive:
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        return limited


def _content_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server itself refuses a malformed length
    return None


def _mb(n: int) -> str:
    return f"{n / 2**20:.3g} MB"
