"""An image classifier from files in a few calls: the pieces `ember train` and `ember lr-find` run.

>>> dls = image_dls("images", size=224, bs=32)   # one folder per class, or a CSV of file names and labels
>>> learn = image_learner(dls, "efficientnet_lite0")
>>> lr = find_lr(learn).valley                   # the learning-rate finder's suggestion
>>> learn.fine_tune(3, lr)
>>> save_outputs(learn, "models")                # models/export.pkl and models/report.html
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from ember.callbacks.lr_finder import SuggestedLRs, minimum, slide, steep, valley
from ember.core.utils import atomic_write
from ember.data.errors import DataError
from ember.learner.learner import Learner
from ember.metrics import error_rate
from ember.models.registry import model_spec
from ember.models.weights import find_weights
from ember.vision.augment import Resize, aug_transforms
from ember.vision.data import ImageDataLoaders
from ember.vision.learner import vision_learner

__all__ = ["check_arch", "find_lr", "image_dls", "image_learner", "save_lr_plot", "save_outputs"]

StrPath = str | os.PathLike


def image_dls(
    source: StrPath,
    valid_pct: float = 0.2,
    size: int = 224,
    bs: int = 64,
    seed: int | None = 42,
    fn_col: str | None = None,
    label_col: str | None = None,
    augment: bool = True,
    num_workers: int | None = None,
) -> ImageDataLoaders:
    """Loaders for single-label image classification, resized to `size` and augmented when `augment`.

    `source` is a folder with one subfolder of images per class (split `valid_pct` at random, unless it
    has `train/` and `valid/` folders of classes), or a CSV file of image paths (relative to the CSV's
    folder) and labels: `fn_col` and `label_col` name its columns (a number is a position), by default
    the first and the second.

    >>> dls = image_dls("pets.csv", fn_col="fname", label_col="breed", size=128)  # doctest: +SKIP
    """
    if not 0 < valid_pct < 1:
        raise ValueError(f"valid_pct is {valid_pct}; give the validation fraction, between 0 and 1, e.g. 0.2")
    path = Path(source)
    kwargs = dict(
        valid_pct=valid_pct, seed=seed, item_tfms=Resize(size), bs=bs, num_workers=num_workers,
        batch_tfms=aug_transforms() if augment else None,
    )  # fmt: skip
    if path.is_dir():
        dls = _folder_dls(path, **kwargs)
    elif path.is_file() and path.suffix.lower() == ".csv":
        dls = _csv_dls(path, fn_col, label_col, **kwargs)
    elif path.is_file():
        raise DataError(f"{path}: expected a folder of images in one folder per class, or a .csv file")
    else:
        raise FileNotFoundError(
            f"{path}: no such folder or file; give a folder of images in one folder per class, or a CSV "
            "file of image names and labels"
        )
    _check_loaders(dls, path)
    return dls


def _folder_dls(path: Path, valid_pct: float, **kwargs: Any) -> ImageDataLoaders:
    has_split = (path / "train").is_dir() and (path / "valid").is_dir()
    return ImageDataLoaders.from_folder(path, valid_pct=None if has_split else valid_pct, **kwargs)


def _csv_dls(csv: Path, fn_col: str | None, label_col: str | None, **kwargs: Any) -> ImageDataLoaders:
    try:
        df = pd.read_csv(csv)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DataError(f"{csv}: not a CSV file pandas can read ({e})") from e
    fn, label = _column(df, fn_col, 0, "fn_col", csv), _column(df, label_col, 1, "label_col", csv)
    return ImageDataLoaders.from_df(df, path=csv.parent, fn_col=fn, label_col=label, **kwargs)


def _column(df: pd.DataFrame, name: str | None, default: int, what: str, csv: Path) -> str:
    """The column called `name`, or at position `name` when it is a number, or at `default`."""
    cols = [str(c) for c in df.columns]
    if name is None and default < len(cols):
        return df.columns[default]
    if name in cols:
        return df.columns[cols.index(name)]
    if name is not None and name.isdigit() and int(name) < len(cols):
        return df.columns[int(name)]
    if name is None:
        raise DataError(f"{csv}: only the columns {cols}; expected one of file names and one of labels")
    raise DataError(f"{csv}: no column {name!r} for {what}; its columns are {cols}")


def _check_loaders(dls: ImageDataLoaders, path: Path) -> None:
    if len(dls.datasets.items) == 0:
        raise DataError(f"{path}: no images found; put them in one folder per class (cat/1.jpg, dog/2.jpg)")
    vocab = list(dls.vocab or [])
    if len(vocab) < 2:
        raise DataError(
            f"{path}: every image has the label {vocab[0] if vocab else None!r}; a classifier needs two "
            "classes or more (one folder per class, or a label column)"
        )
    for name, n in (("training", len(dls.train_ds)), ("validation", len(dls.valid_ds))):
        if n == 0:
            raise DataError(f"{path}: the {name} set is empty; add images or change the validation fraction")


def check_arch(arch: str, pretrained: bool = True, weights: StrPath | None = None) -> None:
    """Fail now, before any data is read, when `arch` is not registered or its pretrained weights are
    not on this machine (`UnknownModelError`, `WeightsNotFoundError`, each saying what to do)."""
    spec = model_spec(arch)
    if (pretrained or weights is not None) and not spec.name.startswith("timm/"):
        find_weights(spec.name, spec.weights, weights)


def image_learner(
    dls: ImageDataLoaders,
    arch: str = "efficientnet_lite0",
    pretrained: bool = True,
    weights: StrPath | None = None,
    fp16: bool = False,
) -> Learner:
    """`vision_learner` with the error rate as metric; mixed precision when `fp16` (bfloat16 on a CPU)."""
    learn = vision_learner(
        dls,
        arch,
        pretrained=pretrained,
        weights=None if weights is None else str(weights),
        metrics=error_rate,
    )
    return learn.to_fp16() if fp16 else learn


def find_lr(learn: Learner, num_it: int = 100) -> SuggestedLRs:
    """The learning-rate finder without a plot: its `valley`, `slide`, `steep` and `minimum` suggestions
    (the curve stays in `learn.lr_find_result` for `save_lr_plot` and the report)."""
    return learn.lr_find(num_it=num_it, show_plot=False, suggest_funcs=(valley, slide, steep, minimum))


def save_lr_plot(learn: Learner, path: StrPath) -> Path:
    """Write the last `lr_find` curve, its suggestions marked, as a PNG at `path`."""
    import matplotlib.pyplot as plt

    if learn.lr_find_result is None:
        raise ValueError("save_lr_plot: no lr_find has run on this learner; call find_lr(learn) first")
    fig = learn.lr_find_result.plot()
    try:
        with atomic_write(path) as f:
            fig.savefig(f, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return Path(path)


def save_outputs(learn: Learner, out: StrPath) -> tuple[Path, Path]:
    """Write `out/export.pkl` (for `load_learner`) and `out/report.html` (`learn.report`)."""
    out = Path(out).absolute()  # absolute: the learner's own path (the data's folder) would prefix it
    out.mkdir(parents=True, exist_ok=True)
    return learn.export(out / "export.pkl"), learn.report(out / "report.html")
