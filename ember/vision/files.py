"""A trained image model on files: a classifier's prediction per file, a segmentation model's mask and
overlay files, an image-to-image model's predicted image, and a loader over labelled class folders (what
`ember predict` and `ember interpret` run on a learner from `load_learner`).

>>> learn = load_learner("models/export.pkl")
>>> predict_file(learn, "cat.jpg", top=2).top       # doctest: +SKIP
[('cat', 0.97), ('dog', 0.03)]
>>> seg = load_learner("models/seg.pkl")
>>> segment_file(seg, "scan.png", "scan.mask.png", "scan.overlay.png").shares  # doctest: +SKIP
{'background': 0.81, 'tumour': 0.19}
>>> items = labelled_items("holdout", learn.dls.vocab)   # holdout/cat/*.jpg, holdout/dog/*.jpg
>>> interp = ClassificationInterpretation.from_learner(learn, dl=labelled_dl(learn, items))
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from ember.core.utils import atomic_write
from ember.data.datasets import Datasets, TfmdDataset
from ember.data.errors import DataError
from ember.data.getters import parent_label
from ember.data.loaders import DataLoader
from ember.learner.learner import Learner
from ember.vision.app import VISION
from ember.vision.augment import Resize
from ember.vision.core import get_image_files, open_image
from ember.vision.mask_io import overlay_mask, resize_mask, save_mask

__all__ = [
    "FilePrediction",
    "PredictedImage",
    "SegmentedFile",
    "check_outputs",
    "labelled_dl",
    "labelled_items",
    "output_path",
    "predict_file",
    "predict_image_file",
    "prediction_task",
    "segment_file",
]

Task = Literal["classify", "segment", "image"]


@dataclass(frozen=True)
class FilePrediction:
    """What the model says about one file: the decoded prediction, the probability of the predicted
    class (single-label classifiers; None otherwise) and the `top` most probable classes."""

    file: str
    label: Any
    probability: float | None
    top: list[tuple[Any, float]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        top = [{"label": _plain(v), "probability": p} for v, p in self.top]
        return {"file": self.file, "label": _plain(self.label), "probability": self.probability, "top": top}


def _plain(v: Any) -> Any:
    """A value JSON can hold: vocabularies hold str, int, float or bool; a multi-label result a list."""
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return v if isinstance(v, str | int | float | bool) or v is None else str(v)


def predict_file(learn: Learner, file: str | os.PathLike, top: int = 1) -> FilePrediction:
    """`learn.predict(file)` with the `top` most probable classes; a missing or unreadable file raises an
    error naming it (`FileNotFoundError`, `DataError`)."""
    path = Path(file)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    label, idx, probs = learn.predict(path)  # an unreadable image is a DataError naming the file
    vocab = list(learn.dls.vocab or [])
    if not vocab or probs.ndim != 1 or len(probs) != len(vocab):  # regression, points: no classes to rank
        return FilePrediction(str(path), label, None)
    values, idxs = probs.float().topk(min(max(top, 1), len(vocab)))
    ranked = [(vocab[i], round(float(p), 6)) for p, i in zip(values.tolist(), idxs.tolist())]
    single = idx.ndim == 0  # a class index; multi-label decodes to a mask
    return FilePrediction(str(path), label, round(float(probs[int(idx)]), 6) if single else None, ranked)


_PREDICTION_TASKS: dict[str, Task] = {"vision.segment": "segment", "vision.image": "image"}


def prediction_task(learn: Learner) -> Task:
    """What `learn` predicts for an image, from its target block: "segment" (a mask), "image" (an
    image-to-image model) or "classify" (anything else: labels, numbers, points)."""
    return _PREDICTION_TASKS.get(VISION.task(learn) or "", "classify")


def output_path(file: str | os.PathLike, suffix: str, out: str | os.PathLike | None = None) -> Path:
    """Where a file written for `file` goes: `<stem><suffix>` next to it, or in the folder `out`.

    >>> output_path("scans/a.jpg", ".mask.png").as_posix()
    'scans/a.mask.png'
    """
    path = Path(file)
    return (path.parent if out is None else Path(out)) / f"{path.stem}{suffix}"


def check_outputs(
    file: str | os.PathLike, outputs: Sequence[Path], inputs: Sequence[Path], written: dict[Path, Path]
) -> None:
    """Refuse (`ValueError`) to write for `file` an output that is one of the `inputs`, or that another
    input's outputs took already (`written`: resolved output -> the input it was written for), as `a.png`
    and `a.jpg` would, or two `a.png` from different folders written into one folder."""
    taken = {Path(p).resolve() for p in inputs}
    for o in outputs:
        target = o.resolve()
        if target in taken:
            raise ValueError(
                f"{file}: its output {o} is one of the input files; refusing to overwrite it "
                "(write the outputs to another folder, or rename the input)"
            )
        if target in written and Path(written[target]).resolve() != Path(file).resolve():
            raise ValueError(
                f"{file}: its output {o} was just written for {written[target]}; refusing to overwrite it "
                "(inputs with the same name need separate output folders)"
            )


def _save_png(img: Image.Image, path: Path) -> None:
    with atomic_write(path) as f:  # a crash leaves no half-written PNG
        img.save(f, format="PNG")


@dataclass(frozen=True)
class SegmentedFile:
    """A segmentation model's answer for one file: where its mask and overlay were written, and the share
    of the image's pixels in each class (the codes', in their order)."""

    file: str
    mask: str
    overlay: str
    shares: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "mask": self.mask, "overlay": self.overlay, "shares": self.shares}


def segment_file(
    learn: Learner, file: str | os.PathLike, mask_path: str | os.PathLike, overlay_path: str | os.PathLike
) -> SegmentedFile:
    """Predict the mask of an image file and write it at `mask_path` (a palette PNG of class indices, a
    valid training label) and, tinted over the image, at `overlay_path`; both are the image's own size
    (the model's mask resized with nearest neighbour). A missing or unreadable file raises an error naming
    it (`FileNotFoundError`, `DataError`)."""
    path = Path(file)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    pred, _, _ = learn.predict(path)  # (h, w) class indices at the model's input size
    img = open_image(path)  # upright RGB, as predict read it
    _warn_unless_whole(learn, img.size, path)
    codes = [str(c) for c in learn.dls.vocab or []]
    mask = resize_mask(pred, img.size)  # (H, W) at the image's own size
    save_mask(mask, mask_path, codes)
    _save_png(overlay_mask(img, mask, codes), Path(overlay_path))
    counts = np.bincount(mask.ravel(), minlength=len(codes))
    names = codes + [str(i) for i in range(len(codes), len(counts))]  # no codes: the classes' numbers
    shares = {n: round(float(c) / mask.size, 6) for n, c in zip(names, counts.tolist())}
    return SegmentedFile(str(path), str(mask_path), str(overlay_path), shares)


def _warn_unless_whole(learn: Learner, size: tuple[int, int], path: Path) -> None:
    """Warn when the model's Resize crops or pads an image of this shape (w, h): its mask is then of a
    centre crop (or of the image and its padding), and stretched over the whole image it would not line up."""
    dblock = getattr(learn.dls, "dblock", None)
    for t in getattr(dblock, "item_tfms", None) or []:
        if not isinstance(t, Resize) or t.method == "squish":
            continue
        (h, w), (iw, ih) = t.size, size
        if abs(iw / ih - w / h) > 0.01:
            warnings.warn(
                f"{path}: the model resizes by {t.method!r} to {w}x{h} (w x h) and this image is {iw}x{ih}: "
                "the mask, stretched to the image, will not line up. Train with Resize(size, "
                "method='squish') (as 'ember train --task segment' does)",
                stacklevel=2,
            )


@dataclass(frozen=True)
class PredictedImage:
    """An image-to-image model's answer for one file: where the predicted image was written, its size."""

    file: str
    prediction: str
    size: tuple[int, int]  # (w, h)

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "prediction": self.prediction, "size": list(self.size)}


def predict_image_file(
    learn: Learner, file: str | os.PathLike, pred_path: str | os.PathLike
) -> PredictedImage:
    """Write at `pred_path` the image an image-to-image model predicts for an image file, at the model's
    output size (not resized back to the input's: a super-resolution model's output keeps its pixels)."""
    path = Path(file)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    img, _, _ = learn.predict(path)  # a PIL image decoded from the model's output (c, h, w) in [0, 1]
    if not isinstance(img, Image.Image):
        raise ValueError(
            f"{path}: the model's prediction decodes to a {type(img).__name__}, not an image; this version "
            "of ember's learn.predict does not decode image targets"
        )
    _save_png(img, Path(pred_path))
    return PredictedImage(str(path), str(pred_path), img.size)


def labelled_items(path: str | os.PathLike, vocab: Sequence[Any] | None) -> list[tuple[Path, Any]]:
    """`(file, label)` for the images in `path`'s class folders (`path/<label>/*.jpg`), each label the
    vocabulary's value whose text is the folder's name. A folder that names no class is an error."""
    if not vocab:
        raise ValueError("labelled_items: the model has no vocabulary; only a classifier's export has one")
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root}: no such folder; give a folder with one subfolder of images per class"
        )
    files = get_image_files(root)
    if not files:
        raise DataError(f"{root}: no images found; put them in one folder per class (cat/1.jpg, dog/2.jpg)")
    by_name = {str(v): v for v in vocab}
    unknown = sorted({parent_label(f) for f in files} - set(by_name))
    if unknown:
        raise DataError(
            f"{root}: the folders {unknown} name no class of the model; its classes are {list(by_name)}"
        )
    return [(f, by_name[parent_label(f)]) for f in files]


def labelled_dl(learn: Learner, items: Sequence[tuple[Any, Any]], bs: int | None = None) -> DataLoader:
    """A loader over `(input, target)` pairs with the validation transforms, for `get_preds` and
    `ClassificationInterpretation.from_learner(learn, dl=...)`. Works on a learner from `load_learner`,
    which has the blocks and transforms but not the training data's getters."""
    dls = learn.dls
    src, blocks = dls.datasets, dls.datasets.blocks
    # The pair's parts go to the blocks in order; the blocks' vocabularies stay as trained (no setup).
    getters = [itemgetter(i) for i in range(len(blocks))]
    dsets = Datasets(list(items), blocks, getters, (range(len(items)), []), src.n_inp, setup=False)
    ds = TfmdDataset(dsets[0], dls.dblock.item_pipeline(blocks, 1))
    pipe = dls.dblock.batch_pipeline(blocks, 1)
    return DataLoader(ds, bs or dls.valid.bs, device=dls.device, batch_tfms=[pipe], n_inp=src.n_inp)
