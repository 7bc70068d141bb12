"""`ember predict` and `ember interpret`: what an exported model says about image files (a classifier,
a segmentation or an image-to-image model for predict; a classifier for interpret)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from ember.cli._common import Bs, ModelPath, print_error

__all__: list[str] = []  # commands, not library functions: ember/cli/__init__.py adds them to `app`


def predict(
    model: ModelPath,
    files: Annotated[
        list[Path], typer.Argument(metavar="FILE", help="Image files to predict.", show_default=False)
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array instead of a table.")] = False,
    top: Annotated[
        int, typer.Option(min=1, help="Classifiers: show the K most probable classes.", metavar="K")
    ] = 1,
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Segmentation and image-to-image models: write the images into DIR, not next to each input.",
        ),
    ] = None,
) -> None:
    """Predict each image file: its class, its mask or its predicted image, by the kind of model.

    A classifier prints the class (and with --top K the K most probable). A segmentation model writes
    <stem>.mask.png (a palette PNG of class indices at the image's own size: a valid training label) and
    <stem>.overlay.png (the classes tinted over the image, background left clear), and prints the share of
    the pixels in each class. An image-to-image model writes <stem>.pred.png (at the model's output size).
    Files go next to each input, or into --out DIR; an existing output is replaced, an input never.

    A file that is missing or not an image gets an error line on stderr (and an "error" entry with
    --json); the other files are still predicted, and the exit code is 1.
    """
    from ember.learner.export import load_learner
    from ember.vision.files import prediction_task

    learn = load_learner(model)
    task = prediction_task(learn)
    if task != "classify" and top != 1:
        raise typer.BadParameter(f"--top is for classifiers; {model} holds a {_TASK_NAMES[task]} model")
    if task == "classify" and out is not None:
        raise typer.BadParameter(f"--out is for models that write images; {model} holds a classifier")
    one = _predictor(learn, task, files, top, out)
    rows, failed = [], 0
    for f in files:
        try:
            rows.append(one(f))
        except (ValueError, OSError) as e:
            print_error(" ".join(str(e).split()))
            rows.append({"file": str(f), "error": " ".join(str(e).split())})
            failed += 1
    if as_json:
        typer.echo("[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]")  # an array, one file a line
    elif ok := [r for r in rows if "error" not in r]:  # no table when every file failed
        typer.echo(_prediction_table(task, ok, top))
    if failed:
        raise typer.Exit(1)


_TASK_NAMES = {"classify": "classification", "segment": "segmentation", "image": "image-to-image"}
_SUFFIXES = {"segment": (".mask.png", ".overlay.png"), "image": (".pred.png",)}


def _predictor(learn: Any, task: str, files: list[Path], top: int, out: Path | None) -> Any:
    """A function of one file to its JSON row; for models that write images, it writes them first,
    refusing an output that is an input or that another input's outputs took."""
    from ember.vision.files import check_outputs, output_path, predict_file, predict_image_file, segment_file

    if task == "classify":
        return lambda f: predict_file(learn, f, top).to_json()
    written: dict[Path, Path] = {}  # resolved output -> the input it was written for

    def write(f: Path) -> dict[str, Any]:
        outs = [output_path(f, suffix, out) for suffix in _SUFFIXES[task]]
        check_outputs(f, outs, files, written)
        done = segment_file(learn, f, *outs) if task == "segment" else predict_image_file(learn, f, *outs)
        written.update({o.resolve(): f for o in outs})
        return done.to_json()

    return write


MAX_SHARE_COLUMNS = 8  # more classes than this: one column of the classes present, largest first


def _prediction_table(task: str, rows: list[dict[str, Any]], top: int) -> str:
    from ember.core.table import text_table

    if task == "classify":
        heads = ["file", "prediction", "probability", *(["top"] if top > 1 else [])]
        return text_table(heads, [_prediction_row(r, top) for r in rows])
    if task == "image":
        sizes = ["x".join(map(str, r["size"])) for r in rows]
        return text_table(["file", "prediction", "size"], [[r["file"], r["prediction"], size]
                                                            for r, size in zip(rows, sizes)])  # fmt: skip
    names = list(rows[0]["shares"])  # the model's classes, in order
    if len(names) <= MAX_SHARE_COLUMNS:
        shares = [[f"{r['shares'][n]:.4f}" for n in names] for r in rows]
    else:
        names, shares = ["classes (share of pixels)"], [[_largest(r["shares"])] for r in rows]
    return text_table(["file", "mask", "overlay", *names],
                      [[r["file"], r["mask"], r["overlay"], *sh] for r, sh in zip(rows, shares)])  # fmt: skip


def _largest(shares: dict[str, float]) -> str:
    ranked = sorted(((v, k) for k, v in shares.items() if v > 0), reverse=True)
    return ", ".join(f"{k} {v:.3f}" for v, k in ranked)


def _prediction_row(r: dict[str, Any], top: int) -> list[Any]:
    prob = "-" if r["probability"] is None else f"{r['probability']:.4f}"
    ranked = ", ".join(f"{t['label']} {t['probability']:.3f}" for t in r["top"])
    return [r["file"], r["label"], prob, *([ranked] if top > 1 else [])]


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
