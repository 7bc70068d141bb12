"""The metric protocol: accumulate over one validation pass, read `value` once at the end.

Two ways to build one from a function: `AvgMetric` averages a per-batch value weighted by batch size
(cheap, no GPU sync per batch); `AccumMetric` keeps every prediction and computes the function once over
the whole epoch (for metrics such as F1 or ROC AUC that are not means over items).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from ember.core.utils import find_bs

__all__ = ["AccumMetric", "AvgMetric", "Metric", "check_metrics", "flatten_check", "func_name", "to_metric"]

Activation = Literal["no", "softmax", "sigmoid"]


class Metric:
    """Base: accumulates over one validation pass; `value` is read once at the end.

    Subclasses set `name` (the column in the epoch table) and implement the three members below.
    `reset` must rebind its accumulators rather than mutate them in place: `to_metric` hands each
    learner a shallow copy, and the copies would otherwise share lists.
    """

    name: str = "metric"

    def reset(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define reset()")

    def accumulate(self, pred: Tensor, *yb: Tensor) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define accumulate(pred, *yb)")

    @property
    def value(self) -> float | None:
        raise NotImplementedError(f"{type(self).__name__} must define the `value` property")

    def check(self, n_classes: int | None) -> None:
        """Raise, naming the metric and the fix, if it cannot score targets of `n_classes` classes (None:
        not a classification, or not known). Called by `Learner.fit` before the first batch."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


def func_name(func: Callable) -> str:
    """The name of `func`, looking through `functools.partial` wrappers.

    >>> func_name(functools.partial(max, default=0))
    'max'
    """
    while isinstance(func, functools.partial):
        func = func.func
    return getattr(func, "__name__", type(func).__name__)


def flatten_check(inp: Tensor, targ: Tensor) -> tuple[Tensor, Tensor]:
    """Both tensors as 1-d, after checking they hold the same number of items.

    Flattening first is what lets a `(bs, 1)` prediction meet a `(bs,)` target without broadcasting
    to `(bs, bs)`.

    >>> [t.shape for t in flatten_check(torch.zeros(4, 1), torch.zeros(4))]
    [torch.Size([4]), torch.Size([4])]
    """
    inp, targ = inp.reshape(-1), targ.reshape(-1)
    if len(inp) != len(targ):
        raise ValueError(
            f"predictions and targets hold different numbers of items ({len(inp)} vs {len(targ)}) "
            "once flattened; check the model's output shape against the targets'"
        )
    return inp, targ


class AvgMetric(Metric):
    """Batch-size-weighted mean of `func(pred, *yb)` over an epoch.

    For a function that is itself a mean over the items of a batch this is exactly its value over the
    whole epoch.

    >>> m = AvgMetric(lambda p, t: (p == t).float().mean(), name="same")
    >>> m.reset(); m.accumulate(torch.tensor([1, 2]), torch.tensor([1, 0])); m.value
    0.5
    """

    def __init__(self, func: Callable[..., Tensor | float], name: str | None = None) -> None:
        self.func, self.name = func, name or func_name(func)
        self.reset()

    def reset(self) -> None:
        # a tensor sum stays on the device: no `.item()` (and so no GPU sync) until `value`
        self.total: Tensor | float = 0.0
        self.count = 0

    def accumulate(self, pred: Tensor, *yb: Tensor) -> None:
        bs = find_bs(yb) if yb else find_bs(pred)
        val = self.func(pred, *yb)
        val = val.detach().float() if isinstance(val, Tensor) else float(val)
        self.total = self.total + val * bs
        self.count += bs

    @property
    def value(self) -> float | None:
        return float(self.total) / self.count if self.count else None


class AccumMetric(Metric):
    """Keeps every batch's predictions and targets (on the CPU) and calls `func(preds, targs, **kwargs)`
    once over the whole epoch.

    Per batch, predictions go through `activation`, then an argmax over `dim_argmax`, then `> thresh`
    (each step only when asked). These act item by item, so doing them per batch gives the same result
    as doing them after concatenation while keeping far less in memory (an argmax drops the class axis).
    `flatten` makes predictions and targets 1-d; `to_np` passes numpy arrays, and `invert_arg` calls
    `func(targs, preds)`: both are what scikit-learn's metrics want.

    >>> from sklearn.metrics import f1_score
    >>> f1 = AccumMetric(f1_score, dim_argmax=-1, to_np=True, invert_arg=True)
    >>> f1.reset(); f1.accumulate(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1])); f1.value
    0.6666666666666666
    """

    def __init__(
        self,
        func: Callable[..., Any],
        dim_argmax: int | None = None,
        activation: Activation = "no",
        thresh: float | None = None,
        to_np: bool = False,
        invert_arg: bool = False,
        flatten: bool = True,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        if activation not in ("no", "softmax", "sigmoid"):
            raise ValueError(
                f"AccumMetric: activation must be 'no', 'softmax' or 'sigmoid', not {activation!r}"
            )
        self.func, self.dim_argmax, self.activation, self.thresh = func, dim_argmax, activation, thresh
        self.to_np, self.invert_arg, self.flatten, self.kwargs = to_np, invert_arg, flatten, kwargs
        self.name = name or func_name(func)
        self.reset()

    def reset(self) -> None:
        self.preds: list[Tensor] = []
        self.targs: list[Tensor] = []

    def transform(self, pred: Tensor) -> Tensor:
        """Activation, argmax and threshold, as configured, on one batch of raw predictions."""
        if pred.is_floating_point():
            pred = pred.float()  # half-precision outputs would lose digits in softmax/sigmoid
        if self.activation == "softmax":
            pred = pred.softmax(dim=self.dim_argmax if self.dim_argmax is not None else -1)
        elif self.activation == "sigmoid":
            pred = pred.sigmoid()
        if self.dim_argmax is not None:
            pred = pred.argmax(dim=self.dim_argmax)
        if self.thresh is not None:
            pred = pred > self.thresh
        return pred

    def accumulate(self, pred: Tensor, *yb: Tensor) -> None:
        self.preds.append(self.transform(pred.detach()).cpu())
        self.targs.append(yb[0].detach().cpu())

    @property
    def value(self) -> float | None:
        if not self.preds:
            return None
        preds, targs = torch.cat(self.preds), torch.cat(self.targs)
        if self.flatten:
            preds, targs = flatten_check(preds, targs)
        args: tuple[Any, Any] = (preds.numpy(), targs.numpy()) if self.to_np else (preds, targs)
        if self.invert_arg:
            args = args[::-1]
        try:
            res = self.func(*args, **self.kwargs)
        except ValueError as e:  # scikit-learn's messages do not say which metric of the table failed
            raise ValueError(f"metric {self.name!r}: {e}") from e
        return float(res)


def n_classes_of(dls: Any) -> int | None:
    """The number of target classes: the loaders' `c` (DataBlock loaders, from the vocabulary), else the
    largest integer target of a validation `TensorDataset` plus one; None when neither says."""
    c = getattr(dls, "c", None)
    if c is not None:
        return c
    valid_ds = getattr(dls, "valid_ds", None) if len(dls) > 1 else None
    if isinstance(valid_ds, TensorDataset) and len(valid_ds) and not valid_ds.tensors[-1].is_floating_point():
        return int(valid_ds.tensors[-1].max()) + 1
    return None


def check_metrics(metrics: list[Metric], dls: Any) -> None:
    """Check each metric against the targets of `dls` before training, so that a mismatch (a binary F1
    on ten classes) stops the fit before its first batch rather than at its first validation.

    >>> check_metrics([F1Score(average="macro")], dls)  # doctest: +SKIP
    """
    n_classes = n_classes_of(dls)
    for m in metrics:
        m.check(n_classes)


def to_metric(m: Metric | Callable) -> Metric:
    """A metric for one learner: a `Metric` is shallow-copied (two learners never share state), a plain
    function `f(pred, *yb)` returning a batch mean becomes an `AvgMetric`.

    >>> to_metric(accuracy).name  # doctest: +SKIP
    'accuracy'
    """
    if isinstance(m, Metric):
        m = copy.copy(m)
        m.reset()  # rebinds the accumulators, so the copy shares nothing mutable with the original
        return m
    if callable(m):
        return AvgMetric(m)
    raise TypeError(f"to_metric: expected a Metric or a function f(pred, *yb), got {type(m).__name__}")
