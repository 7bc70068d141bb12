"""`ember train` and `ember lr-find`: an image classifier from a folder or a CSV file, or a segmentation
model (`--task segment`) from a folder of images, masks and class names."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from ember.cli._common import Bs, OutDir
from ember.info import TRAIN_DIR

__all__: list[str] = []  # commands, not library functions: ember/cli/__init__.py adds them to `app`


# ---- options of train and lr-find -----------------------------------------------------------------
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
        help="classify: a folder of images, one subfolder per class (with train/ and valid/ folders of "
        "classes, those are the split), or a CSV file of image paths (relative to its folder) and labels. "
        "segment: a folder with images/, labels/ (a mask per image, same name, or CamVid's <name>_P.png) "
        "and codes.txt (the class names, one a line, the first for mask value 0).",
        show_default=False,
        metavar="PATH",
    ),
]


class Task(StrEnum):
    """What `ember train` learns: one label per image, or one class per pixel."""

    classify = "classify"
    segment = "segment"


TaskOption = Annotated[
    Task,
    typer.Option(
        help="classify: one label per image (vision_learner). segment: a class per pixel (unet_learner; "
        "metrics foreground_acc and dice_multi). codes.txt is required, not guessed from the masks: its "
        "lines are the model's outputs, and masks saved as 0/255 would otherwise make 256 classes."
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
Size = Annotated[int, typer.Option(min=8, metavar="PIXELS", help="Images are resized to SIZE x SIZE pixels.")]
Seed = Annotated[int, typer.Option(metavar="N", help="Random seed (the split and the initial weights).")]
FnCol = Annotated[
    str | None, typer.Option(metavar="COLUMN", help="CSV only: the file name column (name or number).")
]
LabelCol = Annotated[
    str | None, typer.Option(metavar="COLUMN", help="CSV only: the label column (name or number).")
]


def _learner(
    path: Path, valid_pct: float, arch: str, pretrained: bool, weights: Path | None, bs: int, size: int,
    seed: int, fn_col: str | None, label_col: str | None, fp16: bool = False, task: Task = Task.classify,
) -> Any:  # fmt: skip
    """The data (its sizes and classes printed) and a learner for it: what train and lr-find share."""
    from ember.core.utils import set_seed
    from ember.vision.train import check_arch, image_dls, image_learner, segment_dls, segment_learner

    if task == Task.segment and (fn_col is not None or label_col is not None):
        raise typer.BadParameter("--fn-col and --label-col are for a CSV file; --task segment reads a folder")
    check_arch(arch, pretrained, weights)  # before reading any data
    set_seed(seed)
    if task == Task.segment:
        dls = segment_dls(path, valid_pct, size, bs, seed)
    else:
        dls = image_dls(path, valid_pct, size, bs, seed, fn_col, label_col)
    vocab = [str(v) for v in dls.vocab]
    shown = ", ".join(vocab[:10]) + (", ..." if len(vocab) > 10 else "")
    typer.echo(f"{path}: {len(dls.train_ds)} training and {len(dls.valid_ds)} validation images, "
               f"{len(vocab)} classes ({shown})")  # fmt: skip
    make = segment_learner if task == Task.segment else image_learner
    return make(dls, arch, pretrained, weights, fp16)


def _find_lr(learn: Any, num_it: int) -> Any:
    """`find_lr`, printing how far it has got on stderr, as a fit shows its progress there."""
    from ember.callbacks.finder_progress import FinderProgress
    from ember.vision.train import find_lr

    with learn.added_cbs(FinderProgress(num_it)):
        return find_lr(learn, num_it)


def train(
    path: DataPath,
    task: TaskOption = Task.classify,
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
    """Train an image classifier (or with --task segment a segmentation model); write OUT/export.pkl (for
    predict, and for a classifier interpret and serve) and OUT/report.html.

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
    learn = _learner(
        path, valid_pct, arch, pretrained, weights, bs, size, seed, fn_col, label_col, fp16, task
    )
    rate = _train_lr(learn, lr, out, resume is not None)
    fit = dict(cbs=CheckpointCallback(ckpt), resume=ckpt if resume is not None else None)
    if pretrained or weights is not None:
        learn.fine_tune(epochs, rate, **fit)
    else:  # nothing to keep frozen: the whole network learns from the start
        learn.fit_one_cycle(epochs, rate, **fit)
    export, report = save_outputs(learn, out)
    names = ("foreground_acc", "dice_multi") if task == Task.segment else ("error_rate",)
    scores = ", ".join(f"{n.replace('_', ' ')} {_number(learn.recorder.value(n))}" for n in names)
    typer.echo(f"{scores}; wrote {export} and {report}")


def _number(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"  # None: a metric with nothing to score (no class present)


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


def lr_find(
    path: DataPath,
    task: TaskOption = Task.classify,
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

    learn = _learner(path, valid_pct, arch, pretrained, weights, bs, size, seed, fn_col, label_col, task=task)
    sug = _find_lr(learn, num_it)
    Path(out).mkdir(parents=True, exist_ok=True)
    plot = save_lr_plot(learn, Path(out) / "lr_find.png")
    typer.echo(
        text_table(["suggestion", "learning rate"], [[k, f"{v:.2e}"] for k, v in sug._asdict().items()])
    )
    typer.echo(f"valley is what 'ember train --lr auto' uses; the curve is in {plot}")
