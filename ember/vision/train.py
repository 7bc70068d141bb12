"""An image classifier or a segmentation model from files in a few calls: the pieces `ember train` and
`ember lr-find` run.

>>> dls = image_dls("images", size=224, bs=32)   # one folder per class, or a CSV of file names and labels
>>> learn = image_learner(dls, "efficientnet_lite0")
>>> lr = find_lr(learn).valley                   # the learning-rate finder's suggestion
>>> learn.fine_tune(3, lr)
>>> save_outputs(learn, "models")                # models/export.pkl and models/report.html
>>> seg = segment_learner(segment_dls("scans", size=256), "resnet18")  # scans/images, labels, codes.txt
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
from ember.metrics import DiceMulti, error_rate, foreground_acc
from ember.models.registry import model_spec
from ember.models.weights import find_weights
from ember.vision.augment import Resize, aug_transforms
from ember.vision.core import get_image_files
from ember.vision.data import ImageDataLoaders, SegmentationDataLoaders
from ember.vision.learner import vision_learner
from ember.vision.unet_learner import unet_learner

__all__ = [
    "check_arch",
    "find_lr",
    "image_dls",
    "image_learner",
    "label_files",
    "read_codes",
    "save_lr_plot",
    "save_outputs",
    "segment_dls",
    "segment_learner",
]

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


def segment_dls(
    source: StrPath,
    valid_pct: float = 0.2,
    size: int = 224,
    bs: int = 64,
    seed: int | None = 42,
    augment: bool = True,
    num_workers: int | None = None,
) -> SegmentationDataLoaders:
    """Loaders for segmentation from a folder laid out as CamVid and `builtin_data("nuclei")` are:
    `images/` (the images), `labels/` (a mask per image, see `label_files`) and `codes.txt` (see
    `read_codes`). `valid_pct` of the images, at random, are held out. Images and masks are squished to
    `size` x `size` (not cropped), so that a predicted mask covers the whole image it is for.

    >>> dls = segment_dls(builtin_data("nuclei"), size=128, bs=8)  # doctest: +SKIP
    """
    if not 0 < valid_pct < 1:
        raise ValueError(f"valid_pct is {valid_pct}; give the validation fraction, between 0 and 1, e.g. 0.2")
    path = Path(source)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such folder; give a folder with images/, labels/ and codes.txt")
    labels = label_files(path)
    codes = read_codes(path)
    dls = SegmentationDataLoaders.from_label_func(
        path, list(labels), labels.__getitem__, valid_pct=valid_pct, seed=seed, codes=codes,
        item_tfms=Resize(size, method="squish"), batch_tfms=aug_transforms() if augment else None, bs=bs,
        num_workers=num_workers,
    )  # fmt: skip
    for name, n in (("training", len(dls.train_ds)), ("validation", len(dls.valid_ds))):
        if n == 0:
            raise DataError(f"{path}: the {name} set is empty; add images or change the validation fraction")
    return dls


def label_files(source: StrPath) -> dict[Path, Path]:
    """Each image of `source/images` with its mask in `source/labels`: the file at the same relative path
    with the same stem (any image suffix: `a.jpg` -> `a.png`), or with `_P` added (CamVid's `a_P.png`).
    A missing folder, an image without a mask or with two is a `DataError` naming them."""
    path = Path(source)
    for sub in ("images", "labels"):
        if not (path / sub).is_dir():
            raise DataError(f"{path}: no {sub}/ folder; expected images/ (the images), labels/ (a mask per "
                            "image, same name) and codes.txt (the class names, one a line)")  # fmt: skip
    images = get_image_files(path / "images")
    if not images:
        raise DataError(f"{path / 'images'}: no images found")
    masks: dict[str, list[Path]] = {}
    for m in get_image_files(path / "labels"):
        masks.setdefault(m.relative_to(path / "labels").with_suffix("").as_posix(), []).append(m)
    found = {f: _mask_of(f.relative_to(path / "images").with_suffix("").as_posix(), masks) for f in images}
    missing = [f.relative_to(path).as_posix() for f, m in found.items() if m is None]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise DataError(f"{path / 'labels'}: no mask for {len(missing)} of {len(images)} images ({shown}); "
                        "each image needs labels/<same name>.png (or <name>_P.png)")  # fmt: skip
    return {f: m for f, m in found.items() if m is not None}


def _mask_of(stem: str, masks: dict[str, list[Path]]) -> Path | None:
    for key in (stem, f"{stem}_P"):
        if len(masks.get(key, [])) > 1:
            raise DataError(f"two masks for the image {stem}: {', '.join(map(str, masks[key]))}; keep one")
        if key in masks:
            return masks[key][0]
    return None


def read_codes(source: StrPath) -> list[str]:
    """The class names in `source/codes.txt`, one a line (blank lines skipped): line i names the class of
    mask value i. Refused when missing rather than guessed from the masks: the number of classes is the
    model's number of outputs, and masks saved as 0/255 would otherwise make 256 classes."""
    file = Path(source) / "codes.txt"
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such file; write the class names one a line, the first for "
                                "mask value 0 (e.g. 'background' then 'cell')")  # fmt: skip
    codes = [line.strip() for line in file.read_text().splitlines() if line.strip()]
    if len(codes) < 2:
        raise DataError(f"{file}: {len(codes)} class name(s); a segmentation needs two or more, one a line")
    return codes


def segment_learner(
    dls: SegmentationDataLoaders,
    arch: str = "efficientnet_lite0",
    pretrained: bool = True,
    weights: StrPath | None = None,
    fp16: bool = False,
) -> Learner:
    """`unet_learner` with `foreground_acc` and `DiceMulti` as metrics; mixed precision when `fp16`."""
    learn = unet_learner(dls, arch, pretrained=pretrained, weights=None if weights is None else str(weights),
                         metrics=[foreground_acc, DiceMulti()])  # fmt: skip
    return learn.to_fp16() if fp16 else learn


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
