"""The `ember` command line: train, lr-find, predict, interpret, microscope, serve, sliders, info and demo.

Each command parses its options, calls ember's library functions and prints; the work lives in
`ember.vision.train`, `ember.vision.files`, `ember.info` and `ember.demo`. A failure prints one line,
`error: ...`, on stderr and exits with 1 (2 for a wrong option); `ember --debug COMMAND ...` shows the
traceback instead.

    ember train images/ --epochs 3 --out models      # models/export.pkl, models/report.html
    ember predict models/export.pkl cat.jpg dog.jpg --top 2
    ember interpret models/export.pkl holdout/

The commands live one group a module (`training`, `inference`, `microscope`, `serving`, `sliders`,
`misc`) as plain functions; they are added to the `app` (`_common`) here, in the order `ember --help`
lists them.
Nothing here imports torch: each command imports what it needs when it runs.
"""

from __future__ import annotations

from ember.cli._common import app
from ember.cli.inference import interpret, predict
from ember.cli.microscope import microscope
from ember.cli.misc import demo, info
from ember.cli.serving import serve
from ember.cli.sliders import sliders
from ember.cli.training import lr_find, train

__all__ = ["app", "main"]

app.command()(train)
app.command("lr-find")(lr_find)
app.command()(predict)
app.command()(interpret)
app.command()(microscope)
app.command()(serve)
app.command()(sliders)
app.command()(info)
app.command()(demo)


def main() -> None:
    """The `ember` console script."""
    app()
