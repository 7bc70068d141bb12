"""`ember microscope`: a page to browse what an exported vision model's channels respond to."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ember.cli._common import Bs, ModelPath

__all__: list[str] = []  # a command, not a library function: ember/cli/__init__.py adds it to `app`

PageFile = Annotated[Path, typer.Option("--out", "-o", metavar="FILE", help="The HTML page to write.")]


def microscope(
    model: ModelPath,
    out: PageFile = Path("microscope.html"),
    data: Annotated[
        Path | None,
        typer.Option(
            metavar="PATH",
            help="A folder of labelled images, one subfolder per class: each channel shows the ones that "
            "excite it most. Without it the page shows the drawn images alone.",
        ),
    ] = None,
    layer: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME",
            help="A layer to show: a dotted module name or a conv index (-1: the last); repeat it for "
            "more. Default: up to 6 conv layers, from the first to the last.",
        ),
    ] = None,
    channels: Annotated[int, typer.Option(min=1, metavar="N", help="Channels shown per layer.")] = 8,
    images: Annotated[int, typer.Option(min=1, metavar="K", help="Dataset images per channel.")] = 6,
    steps: Annotated[int, typer.Option(min=1, metavar="N", help="Optimisation steps per drawn image.")] = 128,
    size: Annotated[
        int | None,
        typer.Option(min=8, metavar="PX", help="Side of the drawn images (default: the data's, else 64)."),
    ] = None,
    bs: Bs = 64,
) -> None:
    """Write an HTML page showing, for each channel of the chosen layers, the image that excites it
    most (activation maximisation) and the images of PATH that excite it most.

    The page is one file with everything inline: open it in any browser, offline.
    """
    from ember.interpret import LayerNotFoundError
    from ember.learner.export import load_learner
    from ember.vision.files import labelled_dl, labelled_items
    from ember.vision.inside import microscope_page as write_page

    learn = load_learner(model)
    dl = labelled_dl(learn, labelled_items(data, learn.dls.vocab), bs) if data is not None else []
    specs = [int(n) if n.lstrip("-").isdigit() else n for n in layer] if layer else None
    try:
        path = write_page(learn, out, specs, channels, images, dl, steps, size)
    except LayerNotFoundError as e:  # a wrong --layer: a usage error, not a bug
        raise typer.BadParameter(str(e), param_hint="--layer") from None
    where = f"the images of {data}" if data is not None else "no dataset images (give --data PATH)"
    typer.echo(f"wrote {path}: {channels} channels per layer, {where}")
