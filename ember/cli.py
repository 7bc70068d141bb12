"""The `ember` command line: train, lr-find, predict, interpret, serve, info and demo.

Each command parses its options, calls ember's library functions and prints; the work lives in
`ember.vision.train`, `ember.vision.files`, `ember.info` and `ember.demo`. A failure prints one line,
`error: ...`, on stderr and exits with 1 (2 for a wrong option); `ember --debug COMMAND ...` shows the
traceback instead.

    ember train images/ --epochs 3 --out models      # models/export.pkl, models/report.html
    ember predict models/export.pkl cat.jpg dog.jpg --top 2
    ember interpret models/export.pkl holdout/
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from ember.info import DEMO_DIR, TRAIN_DIR

__all__ = ["app", "main"]


class _OneLineErrors(TyperGroup):
    """Prints every error as one line on stderr: a wrong option exits with 2, a failure with 1."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:  # fmt: skip
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as e:  # click's usage errors: unknown option, bad value, ...
            ctx = getattr(e, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            _error(e.format_message() + hint)
            code = e.exit_code
        except typer.Abort:
            _error("aborted")
            code = 1
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            with warnings.catch_warnings():  # restores the usual display afterwards (tests run in-process)
                warnings.showwarning = _show_warning
                return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except Exception as e:
            if ctx.params.get("debug"):
                raise
            _error(_one_line(e))
            raise typer.Exit(1) from None


def _error(message: str) -> None:
    typer.echo(f"error: {message}", err=True)


def _show_warning(message: Warning | str, *args: Any, **kwargs: Any) -> None:
    typer.echo(f"warning: {' '.join(str(message).split())}", err=True)  # not the file and source line


def _one_line(e: Exception) -> str:
    """The error's message and notes on one line, with a command-line hint for the errors that have one.
    Errors ember raises on purpose are ValueErrors (DataError, NotAnExportError, ...), OSErrors
    (FileNotFoundError, ...) or ImportErrors; anything else is a bug and says how to see its traceback."""
    text = " ".join([_message(e), *getattr(e, "__notes__", [])])
    text = " ".join(f"{text} {_hint(e)}".split())
    if isinstance(e, ValueError | OSError | ImportError):
        return text
    return f"{type(e).__name__}: {text} (run 'ember --debug ...' for the traceback)"


def _message(e: Exception) -> str:
    from ember.models import WeightsNotFoundError

    if isinstance(e, WeightsNotFoundError):  # keep what is missing and where ember looked; the remedies
        return str(e).split("Either:")[0]  # that follow are the Python API's, _hint gives the options'
    return str(e)


def _hint(e: Exception) -> str:
    from ember.models import UnknownModelError, WeightsNotFoundError, list_models

    if isinstance(e, WeightsNotFoundError):
        return "On the command line: --weights FILE, or --no-pretrained to train from random weights."
    if isinstance(e, UnknownModelError):
        return f"The architectures: {', '.join(list_models())}."
    return ""


app = typer.Typer(
    name="ember",
    cls=_OneLineErrors,
    help="ember: the fast.ai course's deep learning on plain PyTorch, from the command line.",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        import ember

        typer.echo(f"ember {ember.__version__}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show the full traceback of an error.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


# ---- options shared by several commands -----------------------------------------------------------
def _check_lr(value: str) -> str:
    if value != "auto":
        try:
            if float(value) <= 0:
                raise ValueError
        except ValueError:
            raise typer.BadParameter(
                f"expected 'auto' or a positive number such as 1e-3, got {value!r}"
            ) from None
    return value


DataPath = Annotated[
    Path,
    typer.Argument(
        help="A folder of images, one subfolder per class (with train/ and valid/ folders of classes, those "
        "are the split), or a CSV file of image paths (relative to its folder) and labels.",
        show_default=False,
        metavar="PATH",
    ),
]
ValidPct = Annotated[
    float,
    typer.Option(
        min=0.0, max=1.0, metavar="FRACTION", help="Fraction of the images held out for validation."
    ),
]
Arch = Annotated[
    str,
    typer.Option(
        metavar="NAME", help="Architecture: efficientnet_lite0, resnet18, ... ('ember info' lists them)."
    ),
]
Pretrained = Annotated[
    bool, typer.Option(help="Start from ImageNet weights on this machine (ember never downloads).")
]
Weights = Annotated[
    Path | None, typer.Option(metavar="FILE", help="A file of pretrained weights for --arch.")
]
Bs = Annotated[int, typer.Option(min=1, metavar="N", help="Batch size.")]
Size = Annotated[int, typer.Option(min=8, metavar="PIXELS", help="Images are resized to SIZE x SIZE pixels.")]
Seed = Annotated[int, typer.Option(metavar="N", help="Random seed (the split and the initial weights).")]
FnCol = Annotated[
    str | None, typer.Option(metavar="COLUMN", help="CSV only: the file name column (name or number).")
]
LabelCol = Annotated[
    str | None, typer.Option(metavar="COLUMN", help="CSV only: the label column (name or number).")
]
OutDir = Annotated[Path, typer.Option(metavar="DIR", help="Folder for what the command writes.")]
ModelPath = Annotated[
    Path, typer.Argument(metavar="MODEL", help="An export file from 'ember train' or learn.export().")
]


def _learner(
    path: Path, valid_pct: float, arch: str, pretrained: bool, weights: Path | None, bs: int, size: int,
    seed: int, fn_col: str | None, label_col: str | None, fp16: bool = False,
) -> Any:  # fmt: skip
    """The data (its sizes and classes printed) and a learner for it: what train and lr-find share."""
    from ember.core.utils import set_seed
    from ember.vision.train import check_arch, image_dls, image_learner

    check_arch(arch, pretrained, weights)  # before reading any data
    set_seed(seed)
    dls = image_dls(path, valid_pct, size, bs, seed, fn_col, label_col)
    vocab = [str(v) for v in dls.vocab]
    shown = ", ".join(vocab[:10]) + (", ..." if len(vocab) > 10 else "")
    typer.echo(f"{path}: {len(dls.train_ds)} training and {len(dls.valid_ds)} validation images, "
               f"{len(vocab)} classes ({shown})")  # fmt: skip
    return image_learner(dls, arch, pretrained, weights, fp16)


def _find_lr(learn: Any, num_it: int) -> Any:
    """`find_lr`, printing how far it has got on stderr, as a fit shows its progress there."""
    from ember.callbacks.finder_progress import FinderProgress
    from ember.vision.train import find_lr

    with learn.added_cbs(FinderProgress(num_it)):
        return find_lr(learn, num_it)


@app.command()
def train(
    path: DataPath,
    valid_pct: ValidPct = 0.2,
    arch: Arch = "efficientnet_lite0",
    pretrained: Pretrained = True,
    weights: Weights = None,
    epochs: Annotated[
        int, typer.Option(min=1, metavar="N", help="Epochs (after one frozen epoch when pretrained).")
    ] = 3,
    lr: Annotated[
        str,
        typer.Option(
            callback=_check_lr,
            metavar="auto|RATE",
            help="Learning rate, or 'auto' for the learning-rate finder's valley.",
        ),
    ] = "auto",
    bs: Bs = 64,
    size: Size = 224,
    fp16: Annotated[
        bool, typer.Option(help="Mixed precision (float16 on a GPU, bfloat16 on a CPU).")
    ] = False,
    out: OutDir = TRAIN_DIR,
    fn_col: FnCol = None,
    label_col: LabelCol = None,
    seed: Seed = 42,
    resume: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Continue the interrupted run whose --out was DIR from its last checkpoint, exactly; give "
            "the same PATH and options. Its outputs go to DIR.",
        ),
    ] = None,
) -> None:
    """Train an image classifier; write OUT/export.pkl (for predict, interpret, serve) and OUT/report.html.

    A pretrained model is fine-tuned (fine_tune: one epoch on the new head, then EPOCHS on everything);
    one from random weights (--no-pretrained) trains for EPOCHS with fit_one_cycle. After every epoch
    OUT/checkpoint.safetensors is rewritten: --resume OUT continues from it.
    """
    from ember.learner.resume import CheckpointCallback, read_run
    from ember.vision.train import save_outputs

    out = resume if resume is not None else out
    ckpt = out.absolute() / "checkpoint"  # CheckpointCallback adds .safetensors
    if resume is not None:
        run = read_run(ckpt.with_suffix(".safetensors"))  # before the data is read: fail fast
        typer.echo(f"resuming from {ckpt}.safetensors: {run['epoch']} of {run['n_epoch']} epochs done")
    learn = _learner(path, valid_pct, arch, pretrained, weights, bs, size, seed, fn_col, label_col, fp16)
    rate = _train_lr(learn, lr, out, resume is not None)
    fit = dict(cbs=CheckpointCallback(ckpt), resume=ckpt if resume is not None else None)
    if pretrained or weights is not None:
        learn.fine_tune(epochs, rate, **fit)
    else:  # nothing to keep frozen: the whole network learns from the start
        learn.fit_one_cycle(epochs, rate, **fit)
    export, report = save_outputs(learn, out)
    typer.echo(f"error rate {learn.recorder.value('error_rate'):.4f}; wrote {export} and {report}")


def _train_lr(learn: Any, lr: str, out: Path, resuming: bool) -> float:
    """The learning rate given, or lr_find's valley, kept in OUT/train.json: a resumed run reuses it."""
    from ember.core.utils import atomic_write

    kept = out / "train.json"
    if lr != "auto":
        rate = float(lr)
    elif resuming:
        if not kept.exists():
            raise FileNotFoundError(
                f"{kept}: no learning rate kept from the interrupted run; give it: --lr RATE"
            )
        rate = json.loads(kept.read_text())["lr"]
    else:
        rate = _find_lr(learn, 100).valley
        typer.echo(f"lr_find: valley {rate:.2e}, training at that learning rate")
    with atomic_write(kept, "w") as f:
        json.dump({"lr": rate}, f)
    return rate


@app.command("lr-find")
def lr_find(
    path: DataPath,
    valid_pct: ValidPct = 0.2,
    arch: Arch = "efficientnet_lite0",
    pretrained: Pretrained = True,
    weights: Weights = None,
    bs: Bs = 64,
    size: Size = 224,
    num_it: Annotated[
        int, typer.Option(min=5, metavar="N", help="Batches to try, at growing learning rates.")
    ] = 100,
    out: OutDir = TRAIN_DIR,
    fn_col: FnCol = None,
    label_col: LabelCol = None,
    seed: Seed = 42,
) -> None:
    """Run the learning-rate finder: print its suggestions and write the curve to OUT/lr_find.png."""
    from ember.core.table import text_table
    from ember.vision.train import save_lr_plot

    learn = _learner(path, valid_pct, arch, pretrained, weights, bs, size, seed, fn_col, label_col)
    sug = _find_lr(learn, num_it)
    Path(out).mkdir(parents=True, exist_ok=True)
    plot = save_lr_plot(learn, Path(out) / "lr_find.png")
    typer.echo(
        text_table(["suggestion", "learning rate"], [[k, f"{v:.2e}"] for k, v in sug._asdict().items()])
    )
    typer.echo(f"valley is what 'ember train --lr auto' uses; the curve is in {plot}")


@app.command()
def predict(
    model: ModelPath,
    files: Annotated[
        list[Path], typer.Argument(metavar="FILE", help="Image files to classify.", show_default=False)
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array instead of a table.")] = False,
    top: Annotated[int, typer.Option(min=1, help="Show the K most probable classes.", metavar="K")] = 1,
) -> None:
    """Predict the class of each image file.

    A file that is missing or not an image gets an error line on stderr (and an "error" entry with
    --json); the other files are still predicted, and the exit code is 1.
    """
    from ember.core.table import text_table
    from ember.learner.export import load_learner
    from ember.vision.files import predict_file

    learn = load_learner(model)
    rows, failed = [], 0
    for f in files:
        try:
            rows.append(predict_file(learn, f, top).to_json())
        except (ValueError, OSError) as e:
            _error(" ".join(str(e).split()))
            rows.append({"file": str(f), "error": " ".join(str(e).split())})
            failed += 1
    if as_json:
        typer.echo("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]")  # an array, one file a line
    elif ok := [r for r in rows if "error" not in r]:  # no table when every file failed
        typer.echo(text_table(["file", "prediction", "probability", *(["top"] if top > 1 else [])],
                              [_prediction_row(r, top) for r in ok]))  # fmt: skip
    if failed:
        raise typer.Exit(1)


def _prediction_row(r: dict[str, Any], top: int) -> list[Any]:
    prob = "-" if r["probability"] is None else f"{r['probability']:.4f}"
    ranked = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in r["top"])
    return [r["file"], r["label"], prob, *([ranked] if top > 1 else [])]


@app.command()
def interpret(
    model: ModelPath,
    path: Annotated[
        Path, typer.Argument(metavar="PATH", help="A folder of labelled images, one subfolder per class.")
    ],
    k: Annotated[
        int, typer.Option(min=1, metavar="N", help="Rows of each list (most confused, top losses, ...).")
    ] = 9,
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Also draw the confusion matrix, top losses and "
            "most uncertain images as PNGs in this folder.",
        ),
    ] = None,
    bs: Bs = 64,
    all_images: Annotated[
        bool,
        typer.Option(
            "--all", help="Use every image in PATH, not only the validation items the export lists."
        ),
    ] = False,
) -> None:
    """Where a classifier goes wrong on labelled images: confusion matrix, most confused, top losses,
    most uncertain.

    By default only the images that were validation items when the model trained are used (the export
    lists them), so that images it trained on do not flatter it; --all uses every image in PATH.
    """
    from ember.learner.export import load_learner, read_valid_items
    from ember.learner.interpret import ClassificationInterpretation
    from ember.vision.files import labelled_dl, labelled_items

    learn = load_learner(model)
    items = labelled_items(path, learn.dls.vocab)
    items = _interpret_items(items, path, None if all_images else read_valid_items(model), all_images)
    interp = ClassificationInterpretation.from_learner(learn, dl=labelled_dl(learn, items, bs))
    files = [str(f) for f, _ in items]
    acc = float((interp.preds == interp.targs).float().mean())
    typer.echo(f"{path}: {len(items)} images in {len(interp.vocab)} classes; accuracy {acc:.4f}\n")
    for title, text in _interpretation_tables(interp, files, k):
        typer.echo(f"{title}\n{text}\n")
    if out is not None:
        typer.echo(f"plots: {', '.join(str(p) for p in _save_interpretation_plots(interp, out, k))}")


def _interpret_items(
    items: list[tuple[Path, Any]], path: Path, valid: list[str] | None, all_images: bool
) -> list[tuple[Path, Any]]:
    """The items that are validation items of the export (`valid`), or all of them when there are none
    to choose: --all, an export that does not list them, or a folder of images it never saw."""
    n = f"{len(items):,} images"
    chosen = _among(items, path, set(valid)) if valid is not None else []
    if chosen:
        typer.echo(f"validation items from the export: {len(chosen):,} of {n}")
    elif all_images:
        typer.echo(f"every image (--all): {n}")
    elif valid is None:
        typer.echo(f"every image: {n} (the export does not list its validation items)")
    else:
        typer.echo(f"every image: {n} (none is a validation item of the export: new images, it seems)")
    return chosen or items


def _among(items: list[tuple[Path, Any]], path: Path, valid: set[str]) -> list[tuple[Path, Any]]:
    """`items` whose file is in `valid` (paths relative to the training data's folder). That folder may be
    PATH or one above it (PATH is images/valid and the model trained on images/), so the names of PATH's
    last folders are tried as prefixes."""
    root = path.absolute()
    rel = [f.absolute().relative_to(root).as_posix() for f, _ in items]
    for depth in range(min(4, len(root.parts))):
        prefix = "".join(f"{p}/" for p in root.parts[len(root.parts) - depth :])
        chosen = [it for it, r in zip(items, rel) if prefix + r in valid]
        if chosen:
            return chosen
    return []


def _interpretation_tables(interp: Any, files: list[str], k: int) -> list[tuple[str, str]]:
    from ember.core.table import text_table

    vocab, cm = interp.vocab, interp.confusion_matrix().tolist()
    if len(vocab) <= 20:
        matrix = text_table(["actual \\ predicted", *vocab], [[v, *row] for v, row in zip(vocab, cm)])
    else:
        matrix = f"({len(vocab)} classes: too wide to print; --out DIR draws it)"
    pairs = interp.most_confused()[:k]
    losses, idxs = interp.top_losses(k)
    top2 = interp.probs.topk(2, dim=1).values.tolist()

    def who(i: int) -> list[str]:
        return [files[i], vocab[int(interp.preds[i])], vocab[int(interp.targs[i])]]

    return [
        ("Confusion matrix (rows: actual class)", matrix),
        ("Most confused", text_table(["actual", "predicted", "count"], pairs) if pairs else "no mistakes"),
        (
            "Top losses",
            text_table(
                ["file", "predicted", "actual", "loss", "probability"],
                [
                    [*who(i), f"{loss:.4f}", f"{top2[i][0]:.4f}"]
                    for loss, i in zip(losses.tolist(), idxs.tolist())
                ],
            ),
        ),  # fmt: skip
        (
            "Most uncertain",
            text_table(
                ["file", "predicted", "actual", "top probability", "second"],
                [
                    [*who(i), f"{top2[i][0]:.4f}", f"{top2[i][1]:.4f}"]
                    for i in interp.most_uncertain(k).tolist()
                ],
            ),
        ),  # fmt: skip
    ]


def _save_interpretation_plots(interp: Any, out: Path, k: int) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only: no window, works without a display
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    figs = {
        "confusion_matrix.png": interp.plot_confusion_matrix(),
        "top_losses.png": interp.plot_top_losses(k),
        "most_uncertain.png": interp.plot_most_uncertain(k),
    }
    for name, fig in figs.items():
        fig.savefig(out / name, dpi=100, bbox_inches="tight")
        plt.close(fig)
    return [out / name for name in figs]


@app.command()
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


@app.command()
def info() -> None:
    """Versions, the device, and where data sets, pretrained weights and outputs are kept."""
    from ember.info import environment

    rows = environment()
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        typer.echo(f"{name.ljust(width)}  {value}")


@app.command()
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


def main() -> None:
    """The `ember` console script."""
    app()
