"""Regression metrics: per-batch means (`mse`, `mae`, `msle`) and whole-epoch roots (`rmse`, `exp_rmspe`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ember.metrics.core import AccumMetric, AvgMetric, flatten_check

__all__ = ["R2Score", "RootMeanMetric", "exp_rmspe", "mae", "mse", "msle", "rmse"]


def mse(inp: Tensor, targ: Tensor) -> Tensor:
    """Mean squared error, predictions and targets flattened first (so `(bs, 1)` meets `(bs,)`).

    >>> mse(torch.tensor([[1.0], [3.0]]), torch.tensor([0.0, 1.0]))
    tensor(2.5000)
    """
    inp, targ = flatten_check(inp, targ)
    return ((inp - targ.to(inp.dtype)) ** 2).mean()


def mae(inp: Tensor, targ: Tensor) -> Tensor:
    """Mean absolute error.

    >>> mae(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0]))
    tensor(1.5000)
    """
    inp, targ = flatten_check(inp, targ)
    return (inp - targ.to(inp.dtype)).abs().mean()


def msle(inp: Tensor, targ: Tensor) -> Tensor:
    """Mean squared logarithmic error, `mean((log(1 + inp) - log(1 + targ))**2)`.

    >>> msle(torch.tensor([0.0]), torch.tensor([math.e - 1]))
    tensor(1.)
    """
    inp, targ = flatten_check(inp, targ)
    return ((torch.log1p(inp) - torch.log1p(targ.to(inp.dtype))) ** 2).mean()


def _sq_pct_err_of_exp(inp: Tensor, targ: Tensor) -> Tensor:
    """Mean of `((exp(targ) - exp(inp)) / exp(targ))**2`, the square under exp_rmspe's root."""
    inp, targ = flatten_check(inp, targ)
    # (e^t - e^p) / e^t == 1 - e^(p - t): one exp, no overflow for large log-targets
    return ((1 - torch.exp(inp - targ.to(inp.dtype))) ** 2).mean()


class RootMeanMetric(AvgMetric):
    """The square root of an epoch mean: `sqrt` of the batch-size-weighted mean of `func`.

    The root is taken once at the end, so the result is the whole epoch's value, not a mean of
    per-batch roots.

    >>> m = RootMeanMetric(mse, name="rmse")
    >>> m.reset(); m.accumulate(torch.tensor([3.0]), torch.tensor([0.0])); m.value
    3.0
    """

    @property
    def value(self) -> float | None:
        mean = super().value
        return None if mean is None else math.sqrt(mean)


rmse = RootMeanMetric(mse, name="rmse")
"""Root mean squared error over the whole epoch: `metrics=rmse`."""

exp_rmspe = RootMeanMetric(_sq_pct_err_of_exp, name="exp_rmspe")
"""Root mean squared percentage error of `exp(pred)` against `exp(targ)` (for log-scale targets, as in
the Rossmann competition), over the whole epoch: `metrics=exp_rmspe`."""


def r2_score(y_true: np.ndarray, y_pred: np.ndarray, **kwargs: Any) -> float:
    """`sklearn.metrics.r2_score`, imported when first called: scikit-learn takes seconds to import."""
    import sklearn.metrics as skm

    return skm.r2_score(y_true, y_pred, **kwargs)


class R2Score(AccumMetric):
    """Coefficient of determination over the epoch, from `sklearn.metrics.r2_score`.

    >>> learn = Learner(dls, model, MSELossFlat(), metrics=R2Score())  # doctest: +SKIP
    """

    def __init__(self, sample_weight: Sequence[float] | None = None) -> None:
        super().__init__(r2_score, to_np=True, invert_arg=True, name="r2_score", sample_weight=sample_weight)
