"""`ember info` and `ember demo`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ember.info import DEMO_DIR

__all__: list[str] = []  # commands, not library functions: ember/cli/__init__.py adds them to `app`


def info() -> None:
    """Versions, the device, and where data sets, pretrained weights and outputs are kept."""
    from ember.info import environment

    rows = environment()
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        typer.echo(f"{name.ljust(width)}  {value}")


def demo(
    quick: Annotated[bool, typer.Option(help="Tiny versions (subsets, one epoch): a smoke test.")] = False,
    out: Annotated[
        Path, typer.Option(metavar="DIR", help="Folder for the face model's export.pkl and report.html.")
    ] = DEMO_DIR,
    data: Annotated[
        Path | None, typer.Option(metavar="DIR", help="Data folder [default: ~/.ember/data].")
    ] = None,
) -> None:
    """Three course tasks on real data built into ember: transfer learning on LFW faces (EfficientNet-Lite0),
    a simple CNN from scratch on 5,000 MNIST digits, collaborative filtering on MovieLens."""
    from ember.demo import main as run

    run(out, quick, data)
