"""A trained image classifier on files: a prediction per file, and a loader over labelled class folders
(what `ember predict` and `ember interpret` run on a learner from `load_learner`).

>>> learn = load_learner("models/export.pkl")
>>> predict_file(learn, "cat.jpg", top=2).top       # doctest: +SKIP
[('cat', 0.97), ('dog', 0.03)]
>>> items = labelled_items("holdout", learn.dls.vocab)   # holdout/cat/*.jpg, holdout/dog/*.jpg
>>> interp = ClassificationInterpretation.from_learner(learn, dl=labelled_dl(learn, items))
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

from ember.data.datasets import Datasets, TfmdDataset
from ember.data.errors import DataError
from ember.data.getters import parent_label
from ember.data.loaders import DataLoader
from ember.learner.learner import Learner
from ember.vision.core import get_image_files

__all__ = ["FilePrediction", "labelled_dl", "labelled_items", "predict_file"]


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
