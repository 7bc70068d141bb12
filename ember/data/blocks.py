"""Blocks: what a kind of value needs in a pipeline (how to make it, transform it, decode, describe and
show it, and which loss suits it as a target).

A block is also how an application extends the data core: the core asks the block, never the value's
type, how to show a value (`show`, `draws`, `overlays`), describe it in `DataBlock.summary` (`describe`)
and how much memory it takes in the cache (`nbytes`). The image blocks (`ember.vision.data`) override these.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ember.core.serial import ConfigError, register_config_type
from ember.core.utils import plain
from ember.data.errors import DataError
from ember.data.missing import NA, is_missing
from ember.data.summary import describe
from ember.data.transforms import CATEGORY, MULTI_CATEGORY, OTHER, REGRESSION, Transform
from ember.losses import BCEWithLogitsLossFlat, CrossEntropyLossFlat, MSELossFlat

__all__ = ["CategoryBlock", "MultiCategoryBlock", "RegressionBlock", "TransformBlock"]


class TransformBlock:
    """A block: `type_tfms` turn what the getter returns into a value; `item_tfms` and `batch_tfms`
    are added to the pipelines. Subclasses also say how to decode and show values, and their loss.

    >>> TransformBlock(type_tfms=[float])  # doctest: +SKIP
    """

    kind: str = OTHER
    draws: bool = False  # whether `show` draws the value on the axes, rather than returning a title
    # A drawn target is drawn over its input (a mask, points) unless it is a whole picture of its own
    # (an image target), which `show_batch` and `show_results` then give a panel beside the input's.
    overlays: bool = True

    def __init__(
        self,
        type_tfms: Sequence[Callable[[Any], Any]] = (),
        item_tfms: Sequence[Transform] = (),
        batch_tfms: Sequence[Transform] = (),
        kind: str | None = None,
    ) -> None:
        self.type_tfms, self.item_tfms, self.batch_tfms = list(type_tfms), list(item_tfms), list(batch_tfms)
        if kind is not None:
            self.kind = kind

    def setup(self, train_values: Sequence[Any]) -> None:
        """Learn from the training set's raw values (a vocabulary, say); the default learns nothing."""

    def has_missing(self, raw: Any) -> bool:
        """Whether `raw` holds a missing value this block turns into the category '#na#' (`Datasets`
        warns about them once per block); blocks without categories have none."""
        return False

    def encode(self, raw: Any) -> Any:
        """The value for one raw input (what the getter returned)."""
        for t in self.type_tfms:
            raw = t(raw)
        return raw

    def decode(self, value: Any) -> Any:
        """A value as a person reads it (a label instead of its index)."""
        return value.tolist() if isinstance(value, Tensor) and value.ndim == 0 else value

    def decoded_tensor(self, value: Any) -> Any:
        """The tensor `learn.predict` returns beside the decoded value, from a prediction the batch
        transforms have decoded: the value itself (a class index, a mask); an image block gives floats."""
        return value

    def default_loss(self) -> nn.Module | None:
        """The loss for this block as a target; None when it has no natural one."""
        return None

    @property
    def n_out(self) -> int | None:
        """How many outputs a model needs to predict this block."""
        return None

    def show(self, value: Any, ax: Any) -> str | None:
        """Draw `value` on `ax` and return None (a block with `draws = True`), or return text for the
        title (labels, numbers). `show_results` draws a target and its prediction side by side when they
        draw (over the input, or beside it when `overlays` is False), and as two title lines when they
        are text."""
        return str(self.decode(value))

    def describe(self, value: Any) -> str:
        """A one-line description of a value of this block, for `DataBlock.summary`."""
        return describe(value)

    def nbytes(self, value: Any) -> int:
        """About how many bytes a value of this block takes in memory (to decide whether to cache them)."""
        return value.numel() * value.element_size() if isinstance(value, Tensor) else 64

    def to_config(self) -> dict:
        """The arguments that rebuild this block for inference (see `ember.core.serial`)."""
        if self.type_tfms or self.item_tfms or self.batch_tfms:
            raise ConfigError(
                f"{self!r} has transforms of its own ({self.type_tfms + self.item_tfms + self.batch_tfms}), "
                "which an export file cannot describe; use one of ember's blocks (e.g. ImageBlock)"
            )
        return {"kind": self.kind}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


def json_labels(vocab: Sequence[Any], block: str) -> list:
    """A vocabulary as JSON values (str, int, float, bool); numpy scalars become Python ones."""
    out = []
    for v in vocab:
        v = v.item() if hasattr(v, "item") and not isinstance(v, str) else v
        if not isinstance(v, str | int | float | bool):
            raise ConfigError(
                f"{block}: label {plain(v)} ({type(v).__name__}) cannot be written to an export file; "
                "labels must be strings or numbers"
            )
        out.append(v)
    return out


class CategoryBlock(TransformBlock):
    """A single label per item; the vocabulary is learnt from the training set (sorted when `sort`).

    `add_na` reserves index 0 for "#na#", which labels unseen in training map to; without it an
    unseen label is an error naming it. Missing labels (None, NaN) in the training set make "#na#" a
    category of its own, at index 0, which missing labels anywhere map to (see `ember.data.missing`).
    """

    kind = CATEGORY

    def __init__(
        self, vocab: Sequence[Hashable] | None = None, sort: bool = True, add_na: bool = False
    ) -> None:
        super().__init__()
        self.sort, self.add_na = sort, add_na
        self.vocab: list = list(vocab) if vocab is not None else []
        self._fixed = vocab is not None
        self._index = {v: i for i, v in enumerate(self.vocab)}

    def setup(self, train_values: Sequence[Any]) -> None:
        if self._fixed:
            return
        present = [v for v in train_values if not is_missing(v)]
        labels = [v for v in dict.fromkeys(present) if v != NA]  # unique, first-seen order
        if self.sort:
            labels = sorted(labels, key=lambda v: (str(type(v)), v))
        with_na = self.add_na or len(present) < len(train_values)
        self.vocab = [NA, *labels] if with_na else labels
        self._index = {v: i for i, v in enumerate(self.vocab)}

    def has_missing(self, raw: Any) -> bool:
        return is_missing(raw)

    def encode(self, raw: Any) -> Tensor:
        if is_missing(raw):
            return torch.tensor(self._na_index(raw))
        i = self._index.get(raw)
        if i is None:
            if self.add_na:
                i = 0
            else:
                shown = self.vocab[:10] + (["..."] if len(self.vocab) > 10 else [])
                raise DataError(
                    f"label {plain(raw)} is not in the vocabulary {plain(shown)} (it may be only in the "
                    "validation set); use CategoryBlock(add_na=True) to map unseen labels to '#na#', or fix "
                    "the label"
                )
        return torch.tensor(i)

    def _na_index(self, raw: Any) -> int:
        if NA not in self._index:
            raise DataError(
                f"missing label ({raw}) where the training labels have none, so there is no '#na#' category "
                "for it; fill the label, or pass CategoryBlock(add_na=True) to keep a '#na#' category"
            )
        return self._index[NA]

    def decode(self, value: Any) -> Any:
        return self.vocab[int(value)]

    def default_loss(self) -> nn.Module:
        return CrossEntropyLossFlat()

    @property
    def n_out(self) -> int:
        return len(self.vocab)

    def to_config(self) -> dict:
        return {"vocab": json_labels(self.vocab, "CategoryBlock"), "sort": self.sort, "add_na": self.add_na}

    def __repr__(self) -> str:
        return f"CategoryBlock(vocab={self.vocab[:5]}{'...' if len(self.vocab) > 5 else ''})"


class MultiCategoryBlock(TransformBlock):
    """Several labels per item, encoded one-hot as a float tensor `(n_labels,)`.

    The getter returns a list of labels (or a delimited string split by `ColReader(label_delim=...)`);
    with `encoded=True` it already returns the one-hot vector and `vocab` names its columns. A missing
    value in place of the list means no labels; a missing label inside a list becomes the label "#na#".
    """

    kind = MULTI_CATEGORY

    def __init__(self, encoded: bool = False, vocab: Sequence[Hashable] | None = None, add_na: bool = False):
        super().__init__()
        self.encoded, self.add_na = encoded, add_na
        self.vocab: list = list(vocab) if vocab is not None else []
        self._fixed = vocab is not None
        self._index = {v: i for i, v in enumerate(self.vocab)}

    def setup(self, train_values: Sequence[Any]) -> None:
        if self._fixed or self.encoded:
            if self.encoded and not self.vocab and train_values:
                self.vocab = list(range(len(train_values[0])))
            return
        labels = sorted({lbl for labels in train_values for lbl in _as_list(labels)} - {NA}, key=str)
        na = self.add_na or any(self.has_missing(v) for v in train_values)
        self.vocab = [NA, *labels] if na else labels
        self._index = {v: i for i, v in enumerate(self.vocab)}

    def has_missing(self, raw: Any) -> bool:
        return not self.encoded and NA in _as_list(raw)

    def encode(self, raw: Any) -> Tensor:
        if self.encoded:
            return torch.as_tensor(raw, dtype=torch.float32)
        out = torch.zeros(len(self.vocab))
        for lbl in _as_list(raw):
            i = self._index.get(lbl)
            if i is None:
                raise DataError(
                    f"label {plain(lbl)} of item labels {plain(raw)} is not in the vocabulary "
                    f"{plain(self.vocab[:10])}"
                )
            out[i] = 1.0
        return out

    def decode(self, value: Any) -> list:
        return [self.vocab[i] for i in torch.as_tensor(value).nonzero().flatten().tolist()]

    def show(self, value: Any, ax: Any) -> str:
        return ";".join(map(str, self.decode(value)))

    def default_loss(self) -> nn.Module:
        return BCEWithLogitsLossFlat()

    def to_config(self) -> dict:
        vocab = json_labels(self.vocab, "MultiCategoryBlock")
        return {"encoded": self.encoded, "vocab": vocab, "add_na": self.add_na}

    @property
    def n_out(self) -> int:
        return len(self.vocab)


def _as_list(labels: Any) -> list:
    """The labels of one item: a missing value is no labels, a missing label in a list is '#na#'."""
    if is_missing(labels):
        return []
    labels = [labels] if isinstance(labels, str) else list(labels)
    return [NA if is_missing(lbl) else lbl for lbl in labels]


class RegressionBlock(TransformBlock):
    """One or more float targets per item (`n_out` of them)."""

    kind = REGRESSION

    def __init__(self, n_out: int | None = None) -> None:
        super().__init__()
        self._n_out = n_out

    def setup(self, train_values: Sequence[Any]) -> None:
        if self._n_out is None and train_values:
            self._n_out = int(torch.as_tensor(self._to_float(train_values[0])).numel())

    @staticmethod
    def _to_float(raw: Any) -> Any:
        try:
            return torch.as_tensor(raw, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as e:
            raise DataError(
                f"RegressionBlock: target {plain(raw)} is not a number (or list of numbers); fix the value "
                "or use a CategoryBlock for labels"
            ) from e

    def encode(self, raw: Any) -> Tensor:
        return self._to_float(raw)

    def decode(self, value: Any) -> Any:
        return torch.as_tensor(value).tolist()

    def show(self, value: Any, ax: Any) -> str:
        v = self.decode(value)
        return f"{v:.3g}" if isinstance(v, float) else ", ".join(f"{x:.3g}" for x in v)

    def default_loss(self) -> nn.Module:
        return MSELossFlat()

    @property
    def n_out(self) -> int | None:
        return self._n_out

    def to_config(self) -> dict:
        return {"n_out": self._n_out}


register_config_type(TransformBlock, CategoryBlock, MultiCategoryBlock, RegressionBlock)
