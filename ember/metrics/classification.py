"""Classification metrics: accuracy-style batch means, and scikit-learn scores over the whole epoch."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor

from ember.metrics.core import AccumMetric, flatten_check

__all__ = [
    "F1Score",
    "Precision",
    "Recall",
    "RocAuc",
    "RocAucBinary",
    "accuracy",
    "ThresholdSweep",
    "accuracy_multi",
    "error_rate",
    "sweep_thresholds",
]

Average = Literal["binary", "micro", "macro", "weighted", "samples"] | None


def accuracy(inp: Tensor, targ: Tensor, axis: int = -1) -> Tensor:
    """Fraction of items whose argmax over `axis` equals the target.

    >>> accuracy(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]))
    tensor(0.5000)
    """
    pred, targ = flatten_check(inp.argmax(dim=axis), targ)
    return (pred == targ).float().mean()


def error_rate(inp: Tensor, targ: Tensor, axis: int = -1) -> Tensor:
    """1 - accuracy.

    >>> error_rate(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]))
    tensor(0.5000)
    """
    return 1 - accuracy(inp, targ, axis=axis)


def accuracy_multi(inp: Tensor, targ: Tensor, thresh: float = 0.5, sigmoid: bool = True) -> Tensor:
    """Multi-label accuracy: each (item, label) pair is predicted on when `sigmoid(inp) > thresh`.

    Pass `sigmoid=False` when `inp` already holds probabilities. Use `functools.partial` for another
    threshold: `metrics=partial(accuracy_multi, thresh=0.2)` keeps the column name "accuracy_multi".

    >>> accuracy_multi(torch.tensor([[2.0, -2.0]]), torch.tensor([[1, 1]]))
    tensor(0.5000)
    """
    inp, targ = flatten_check(inp, targ)
    if sigmoid:
        inp = inp.sigmoid()
    return ((inp > thresh) == targ.bool()).float().mean()


class ThresholdSweep(NamedTuple):
    """A metric at each threshold; `best` is the threshold with the highest value."""

    threshs: Tensor
    values: Tensor
    best: float
    best_value: float

    def plot(self, ax: Any = None) -> Any:
        """The metric against the threshold, the best one marked."""
        import matplotlib.pyplot as plt

        ax = ax if ax is not None else plt.subplots()[1]
        ax.plot(self.threshs.tolist(), self.values.tolist())
        ax.axvline(self.best, color="red", linestyle="--", label=f"best {self.best:.2f}")
        ax.set_xlabel("threshold")
        ax.legend()
        return ax


def sweep_thresholds(
    probs: Tensor,
    targs: Tensor,
    metric: Callable[..., Tensor] = accuracy_multi,
    start: float = 0.05,
    end: float = 0.95,
    n: int = 19,
) -> ThresholdSweep:
    """`metric(probs, targs, thresh=t, sigmoid=False)` for `n` thresholds from `start` to `end`, to pick
    a multi-label classifier's threshold on the validation set (probabilities, as `get_preds` gives).

    >>> probs, targs = learn.get_preds()  # doctest: +SKIP
    >>> learn.loss_func.thresh = sweep_thresholds(probs, targs).best  # doctest: +SKIP
    """
    if probs.min() < 0 or probs.max() > 1:
        raise ValueError("sweep_thresholds takes probabilities in [0, 1] (get_preds applies the sigmoid)")
    threshs = torch.linspace(start, end, n)
    values = torch.stack(
        [torch.as_tensor(metric(probs, targs, thresh=float(t), sigmoid=False)) for t in threshs]
    )
    i = int(values.argmax())
    return ThresholdSweep(threshs, values, float(threshs[i]), float(values[i]))


# scikit-learn takes seconds to import, so each of its scores imports it when first called, not with ember.
def f1_score(y_true: np.ndarray, y_pred: np.ndarray, **kwargs: Any) -> float:
    """`sklearn.metrics.f1_score`."""
    import sklearn.metrics as skm

    return skm.f1_score(y_true, y_pred, **kwargs)


def precision_score(y_true: np.ndarray, y_pred: np.ndarray, **kwargs: Any) -> float:
    """`sklearn.metrics.precision_score`."""
    import sklearn.metrics as skm

    return skm.precision_score(y_true, y_pred, **kwargs)


def recall_score(y_true: np.ndarray, y_pred: np.ndarray, **kwargs: Any) -> float:
    """`sklearn.metrics.recall_score`."""
    import sklearn.metrics as skm

    return skm.recall_score(y_true, y_pred, **kwargs)


class _LabelScore(AccumMetric):
    """A scikit-learn score of predicted labels (the argmax over `axis`) against targets, over the epoch.

    Subclasses name the scikit-learn function in `sk_func`; the signature is shared.
    """

    sk_func: Callable[..., Any]

    def __init__(
        self,
        axis: int = -1,
        labels: Sequence[int] | None = None,
        pos_label: int = 1,
        average: Average = "binary",
        sample_weight: Sequence[float] | None = None,
    ) -> None:
        kw = dict(labels=labels, pos_label=pos_label, average=average, sample_weight=sample_weight)
        func = type(self).sk_func
        super().__init__(func, dim_argmax=axis, to_np=True, invert_arg=True, name=func.__name__, **kw)

    def check(self, n_classes: int | None) -> None:
        """A binary average scores one class against the other: it cannot score three or more."""
        if self.kwargs["average"] == "binary" and (n_classes or 0) > 2:
            raise ValueError(
                f"metric {self.name!r} uses average='binary' (the default), which needs two classes, but "
                f"the data has {n_classes} classes: pass {type(self).__name__}(average='macro') (each class "
                "counts the same; or 'weighted' by class size, 'micro' over all items)"
            )


class F1Score(_LabelScore):
    """F1 score over the epoch, from `sklearn.metrics.f1_score`; pass `average="macro"` for many classes.

    >>> learn = Learner(dls, model, CrossEntropyLossFlat(), metrics=F1Score())  # doctest: +SKIP
    """

    sk_func = staticmethod(f1_score)


class Precision(_LabelScore):
    """Precision over the epoch, from `sklearn.metrics.precision_score`.

    >>> Precision(average="macro").name
    'precision_score'
    """

    sk_func = staticmethod(precision_score)


class Recall(_LabelScore):
    """Recall over the epoch, from `sklearn.metrics.recall_score`.

    >>> Recall(average="macro").name
    'recall_score'
    """

    sk_func = staticmethod(recall_score)


def _scores(preds: Tensor, axis: int) -> np.ndarray:
    """Raw model outputs -> the scores `roc_auc_score` wants.

    One logit per item -> sigmoid, `(n,)`; two columns -> softmax, probability of class 1, `(n,)`;
    more -> softmax probabilities, `(n, n_classes)`.
    """
    if preds.ndim == 1 or preds.shape[axis] == 1:
        return preds.sigmoid().reshape(-1).numpy()
    probs = preds.softmax(dim=axis).movedim(axis, -1)
    probs = probs.reshape(-1, probs.shape[-1])  # (n, n_classes)
    return (probs[:, 1] if probs.shape[1] == 2 else probs).numpy()


def _roc_auc(preds: Tensor, targs: Tensor, axis: int = -1, **kwargs: Any) -> float:
    """ROC AUC from raw model outputs (see `_scores`); nan with a warning when the targets hold one class.

    A validation set with a single class happens with small or unshuffled data; failing the whole fit
    over a metric would be worse than a nan in one row of the table.
    """
    y_true = targs.reshape(-1).numpy()
    present = np.unique(y_true)
    if len(present) < 2:
        warnings.warn(
            f"roc_auc_score: the targets of this epoch hold only class {present.tolist()}, so ROC AUC is "
            "undefined; reporting nan. The validation set needs items of at least two classes.",
            stacklevel=2,
        )
        return float("nan")
    import sklearn.metrics as skm  # here, not with ember: scikit-learn takes seconds to import

    return float(skm.roc_auc_score(y_true, _scores(preds, axis), **kwargs))


class RocAuc(AccumMetric):
    """Area under the ROC curve over the epoch, from `sklearn.metrics.roc_auc_score`.

    Outputs are turned into probabilities with a softmax over `axis`; with two columns the positive
    class's column is scored, so this also serves binary problems.

    >>> learn = Learner(dls, model, CrossEntropyLossFlat(), metrics=RocAuc())  # doctest: +SKIP
    """

    def __init__(
        self,
        axis: int = -1,
        average: Literal["micro", "macro", "weighted", "samples"] | None = "macro",
        sample_weight: Sequence[float] | None = None,
        max_fpr: float | None = None,
        multi_class: Literal["raise", "ovr", "ovo"] = "ovr",
    ) -> None:
        kw = dict(average=average, sample_weight=sample_weight, max_fpr=max_fpr, multi_class=multi_class)
        # raw outputs are kept (flatten=False) because roc_auc_score needs per-class probabilities
        super().__init__(_roc_auc, flatten=False, name="roc_auc_score", axis=axis, **kw)


class RocAucBinary(RocAuc):
    """ROC AUC for a binary target: softmax and the class-1 column for two output columns, or a
    sigmoid for a single logit per item.

    >>> learn = Learner(dls, model, BCEWithLogitsLossFlat(), metrics=RocAucBinary())  # doctest: +SKIP
    """

    def __init__(
        self,
        axis: int = -1,
        average: Literal["micro", "macro", "weighted", "samples"] | None = "macro",
        sample_weight: Sequence[float] | None = None,
        max_fpr: float | None = None,
        multi_class: Literal["raise", "ovr", "ovo"] = "raise",
    ) -> None:
        super().__init__(axis, average, sample_weight, max_fpr, multi_class)
