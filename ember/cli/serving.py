"""`ember serve`: a model over HTTP."""

from __future__ import annotations

from typing import Annotated

import typer

from ember.cli._common import ModelPath

__all__: list[str] = []  # commands, not library functions: ember/cli/__init__.py adds them to `app`


def serve(
    model: ModelPath,
    host: Annotated[
        str, typer.Option(metavar="ADDRESS", help="Address to listen on (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, metavar="PORT", help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option(min=1, metavar="N", help="Server processes, each with its own model.")
    ] = 1,
    max_upload_mb: Annotated[
        float, typer.Option(min=0.001, metavar="MB", help="Largest image accepted, in MB.")
    ] = 10.0,
    max_queue: Annotated[
        int, typer.Option(min=1, metavar="N", help="Images that may wait for the model; more get 503.")
    ] = 64,
    timeout: Annotated[
        float, typer.Option(min=0.001, metavar="SECONDS", help="Requests not answered in this time get 503.")
    ] = 30.0,
) -> None:
    """Serve a model over HTTP: a page to upload an image, and a JSON API."""
    from ember.serve.app import run_server  # fastapi and uvicorn load only for this command

    run_server(model, host, port, workers, max_upload_mb, max_queue, timeout)
