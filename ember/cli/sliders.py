"""`ember sliders`: steer an exported GAN or VAE with sliders, in the browser."""

from __future__ import annotations

from typing import Annotated

import typer

from ember.cli._common import ModelPath

__all__: list[str] = []  # commands, not library functions: ember/cli/__init__.py adds them to `app`


def sliders(
    model: ModelPath,
    port: Annotated[int, typer.Option(min=1, max=65535, metavar="PORT", help="Port to listen on.")] = 8000,
    host: Annotated[
        str, typer.Option(metavar="ADDRESS", help="Address to listen on (0.0.0.0: every interface).")
    ] = "127.0.0.1",
    k: Annotated[
        int,
        typer.Option(
            "--k",
            min=1,
            metavar="N",
            help="Sliders: the export's first N latent directions (it holds 8, fewer for small latents).",
        ),
    ] = 8,
    max_upload_mb: Annotated[
        float, typer.Option(min=0.001, metavar="MB", help="Largest image a VAE's page accepts, in MB.")
    ] = 10.0,
) -> None:
    """Steer a GAN or a VAE: one slider per latent direction, the image redrawn as they move.

    For a VAE the page also encodes an image you upload, so that the sliders start from it.
    """
    from ember.generative.sliders import run_sliders  # torch, fastapi and uvicorn load only for this command

    run_sliders(model, host, port, k, max_upload_mb)
