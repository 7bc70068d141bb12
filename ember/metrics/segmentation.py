"""Segmentation metrics, each counted over the whole validation pass rather than averaged per batch.

Predictions are raw model outputs `(bs, c, h, w)` (the class axis at `axis`), targets are class indices
`(bs, h, w)`; the predicted class of a pixel is the argmax over `axis`. Every metric here keeps counts
(a pixel confusion matrix, or matching and foreground pixels) and divides once at the end, so a batch
with a large object weighs as much as its pixels, not as much as its number of images.

>>> learn = Learner(dls, model, CrossEntropyLossFlat(axis=1),
...                 metrics=[foreground_acc, DiceMulti(), JaccardCoeffMulti()])  # doctest: +SKIP
"""

from __future__ import annotations

import torch
from torch import Tensor

from ember.metrics.core import Metric

__all__ = [
    "Dice",
    "DiceMulti",
    "ForegroundAcc",
    "JaccardCoeff",
    "JaccardCoeffMulti",
    "foreground_acc",
    "pixel_confusion",
]


def pixel_confusion(pred: Tensor, targ: Tensor, c: int, who: str = "pixel_confusion") -> Tensor:
    """Counts `(c, c)` over every pixel: row = target class, column = predicted class.

    `pred` holds predicted class indices, the same shape as `targ`; a target outside `[0, c)` is an
    error naming `who` (the metric), since it would silently land in another class's cell.

    >>> pixel_confusion(torch.tensor([[0, 1], [1, 1]]), torch.tensor([[0, 1], [0, 1]]), 2)
    tensor([[1, 1],
            [0, 2]])
    """
    if pred.shape != targ.shape:
        raise ValueError(
            f"{who}: predicted classes of shape {tuple(pred.shape)} do not match targets of shape "
            f"{tuple(targ.shape)}; predictions should be (bs, c, h, w) with the classes at `axis` and "
            "targets (bs, h, w)"
        )
    targ = targ.long().reshape(-1)
    if len(targ) and (targ.min() < 0 or targ.max() >= c):
        raise ValueError(
            f"{who}: targets hold class {int(targ.min())}..{int(targ.max())} but the predictions have {c} "
            "classes; check the MaskBlock's codes against the values in the masks, and the model's outputs"
        )
    return torch.bincount(targ * c + pred.long().reshape(-1), minlength=c * c).view(c, c)


class _ConfusionMetric(Metric):
    """Accumulates the pixel confusion matrix of an epoch (on the predictions' device until `value`)."""

    name = "confusion"

    def __init__(self, axis: int = 1) -> None:
        self.axis = axis
        self.reset()

    def reset(self) -> None:
        self.cm: Tensor | None = None

    def accumulate(self, pred: Tensor, *yb: Tensor) -> None:
        c = pred.shape[self.axis]
        cm = pixel_confusion(pred.detach().argmax(dim=self.axis), yb[0].detach(), c, self.name)
        self.cm = cm if self.cm is None else self.cm + cm

    def _counts(self) -> tuple[Tensor, Tensor, Tensor]:
        """Per class: pixels both predicted and targeted, pixels predicted, pixels targeted (all `(c,)`)."""
        assert self.cm is not None
        cm = self.cm.double().cpu()
        return cm.diagonal(), cm.sum(0), cm.sum(1)


class _BinaryMetric(_ConfusionMetric):
    """A two-class score of the foreground (class 1); more classes need the `...Multi` metric."""

    def check(self, n_classes: int | None) -> None:
        if (n_classes or 0) > 2:
            raise ValueError(
                f"metric {self.name!r} scores a binary mask (background 0, foreground 1), but the data has "
                f"{n_classes} classes: use {type(self).__name__}Multi() for a mean over the classes"
            )

    @property
    def value(self) -> float | None:
        if self.cm is None:
            return None
        if len(self.cm) != 2:
            raise ValueError(
                f"metric {self.name!r}: the model predicts {len(self.cm)} classes, but this metric scores a "
                f"binary mask from two outputs per pixel; use {type(self).__name__}Multi() for more classes"
            )
        inter, n_pred, n_targ = (t[1] for t in self._counts())
        score = self._score(inter, n_pred + n_targ)
        return None if score is None else float(score)

    @staticmethod
    def _score(inter: Tensor, total: Tensor) -> Tensor | None:
        raise NotImplementedError


class Dice(_BinaryMetric):
    """Dice of the foreground over the epoch: `2|A∩B| / (|A|+|B|)`, A the pixels predicted 1, B those
    whose target is 1. None when neither has any pixel (nothing to score).

    >>> learn = Learner(dls, model, CrossEntropyLossFlat(axis=1), metrics=Dice())  # doctest: +SKIP
    """

    name = "dice"

    @staticmethod
    def _score(inter: Tensor, total: Tensor) -> Tensor | None:
        return 2 * inter / total if total > 0 else None


class JaccardCoeff(_BinaryMetric):
    """Jaccard coefficient (IoU) of the foreground over the epoch: `|A∩B| / |A∪B|` (see `Dice`)."""

    name = "jaccard_coeff"

    @staticmethod
    def _score(inter: Tensor, total: Tensor) -> Tensor | None:
        return inter / (total - inter) if total > 0 else None


class _MultiMetric(_ConfusionMetric):
    """A score per class over the epoch, averaged over the classes that occur.

    A class occurs when at least one pixel of the epoch has it as target or as prediction; a class
    absent from both has a score of 0/0 and is skipped, while a class predicted but never present
    scores 0 and so lowers the mean. `per_class` gives every class's score (nan where skipped).
    """

    @property
    def per_class(self) -> Tensor | None:
        if self.cm is None:
            return None
        inter, n_pred, n_targ = self._counts()
        return self._scores(inter, n_pred + n_targ)

    @property
    def value(self) -> float | None:
        scores = self.per_class
        if scores is None or scores.isnan().all():
            return None
        return float(scores.nanmean())

    @staticmethod
    def _scores(inter: Tensor, total: Tensor) -> Tensor:
        raise NotImplementedError


class DiceMulti(_MultiMetric):
    """Dice per class over the epoch, averaged over the classes that occur (see `_MultiMetric`).

    >>> learn = Learner(dls, model, CrossEntropyLossFlat(axis=1), metrics=DiceMulti())  # doctest: +SKIP
    """

    name = "dice_multi"

    @staticmethod
    def _scores(inter: Tensor, total: Tensor) -> Tensor:
        return torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.nan)


class JaccardCoeffMulti(_MultiMetric):
    """IoU per class over the epoch, `|A∩B| / |A∪B|`, averaged over the classes that occur."""

    name = "jaccard_coeff_multi"

    @staticmethod
    def _scores(inter: Tensor, total: Tensor) -> Tensor:
        return torch.where(total > 0, inter / (total - inter).clamp(min=1), torch.nan)


class ForegroundAcc(Metric):
    """Pixel accuracy over the pixels whose target is not the background class `bkg_idx`, counted over
    the epoch. An instance is also a function of one batch: `foreground_acc(pred, targ)`.

    `metrics=foreground_acc` uses background 0; `metrics=ForegroundAcc(bkg_idx=3)` another one (a
    `functools.partial` of it would be averaged per batch instead, as any plain function is).

    >>> foreground_acc(torch.tensor([[[[2.0, 0.0]], [[0.0, 2.0]]]]), torch.tensor([[[1, 1]]]))
    tensor(0.5000)
    """

    name = "foreground_acc"

    def __init__(self, bkg_idx: int = 0, axis: int = 1) -> None:
        self.bkg_idx, self.axis = bkg_idx, axis
        self.reset()

    def reset(self) -> None:
        self.correct: Tensor | int = 0
        self.total: Tensor | int = 0

    def _counts(self, pred: Tensor, targ: Tensor) -> tuple[Tensor, Tensor]:
        labels = pred.argmax(dim=self.axis)
        if labels.numel() != targ.numel():
            raise ValueError(
                f"{self.name}: predictions {tuple(pred.shape)} with the classes at axis {self.axis} do not "
                f"match targets {tuple(targ.shape)}; expected (bs, c, h, w) and (bs, h, w)"
            )
        labels, targ = labels.reshape(-1), targ.reshape(-1)
        keep = targ != self.bkg_idx
        return (labels[keep] == targ[keep]).sum(), keep.sum()

    def __call__(self, inp: Tensor, targ: Tensor) -> Tensor:
        correct, total = self._counts(inp, targ)
        return correct.float() / total if total > 0 else torch.tensor(float("nan"))

    def accumulate(self, pred: Tensor, *yb: Tensor) -> None:
        correct, total = self._counts(pred.detach(), yb[0].detach())
        self.correct, self.total = self.correct + correct, self.total + total

    @property
    def value(self) -> float | None:
        total = int(self.total)
        return int(self.correct) / total if total else None


foreground_acc = ForegroundAcc()
