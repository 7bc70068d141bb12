"""Show the parts of a composite loss as columns of the epoch table.

A loss that is a sum of parts (a feature loss's pixel, feature and style terms) names them in
`metric_names` and leaves their last batch values, as tensors, in the dict `metrics` on each call.
`LossMetrics` turns each name into a metric the Recorder averages over the validation set, batch-size
weighted, like the validation loss itself.

>>> learn = Learner(dls, model, loss_func=FeatureLoss(vgg16_features()), cbs=LossMetrics())  # doctest: +SKIP
>>> learn.fit(1); learn.recorder.metric_names[3:-1]  # doctest: +SKIP
['pixel', 'feat_0', 'feat_1', 'feat_2', 'gram_0', 'gram_1', 'gram_2']
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from ember.callbacks.core import Callback
from ember.core.utils import find_bs
from ember.metrics.core import Metric

__all__ = ["LossComponent", "LossMetrics"]


class LossComponent(Metric):
    """The validation mean of one part of `learn.loss_func`, read from `learn.loss_func.metrics[name]`."""

    def __init__(self, learn: Any, name: str) -> None:
        self.learn, self.name = learn, name
        self.reset()

    def reset(self) -> None:
        self.total: Tensor | float = 0.0  # stays on the device until `value`
        self.count = 0

    def accumulate(self, pred: Tensor, *yb: Tensor) -> None:
        parts = self.learn.loss_func.metrics
        if self.name not in parts:
            raise KeyError(f"LossMetrics: the loss recorded {sorted(parts)}, not {self.name!r}")
        bs = find_bs(yb) if yb else find_bs(pred)
        self.total = self.total + parts[self.name].detach().float() * bs
        self.count += bs

    @property
    def value(self) -> float | None:
        return float(self.total) / self.count if self.count else None


class LossMetrics(Callback):
    """Adds one `LossComponent` metric per name in `learn.loss_func.metric_names`, so the epoch table, the
    Recorder's history and `final_metrics` show each part of the loss. The columns stay after the fit."""

    order = -30  # before the Recorder (-20) resets the metrics and before any table prints its header

    def before_fit(self) -> None:
        self._add_columns()

    def before_validate(self) -> None:
        self._add_columns()  # `learn.validate()` outside a fit shows the parts too

    def _add_columns(self) -> None:
        learn = self.learn
        names = getattr(learn.loss_func, "metric_names", None)
        if names is None:
            raise TypeError(
                f"LossMetrics: the loss {type(learn.loss_func).__name__} has no `metric_names`; it needs "
                "`metric_names` (a list of str) and a dict `metrics` of their values after each call"
            )
        have = [m.name for m in learn.metrics if isinstance(m, LossComponent)]
        if have == list(names):
            return
        learn.metrics = [m for m in learn.metrics if not isinstance(m, LossComponent)]
        learn.metrics += [LossComponent(learn, n) for n in names]
