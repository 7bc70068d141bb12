"""Hyper-parameter schedules: cosine segments, their combination for 1cycle, and the callback."""

from __future__ import annotations

import math
from collections.abc import Callable

from ember.callbacks.core import Callback
from ember.core.optimizer import set_hyper

__all__ = ["ParamScheduler", "combined_cos", "sched_cos", "sched_lin"]

Sched = Callable[[float], float]


def sched_cos(start: float, end: float) -> Sched:
    """Cosine from `start` (pos 0) to `end` (pos 1): `start + (1 - cos(pi * pos)) / 2 * (end - start)`."""
    return lambda pos: start + (1 - math.cos(math.pi * pos)) / 2 * (end - start)


def sched_lin(start: float, end: float) -> Sched:
    """Straight line from `start` to `end`."""
    return lambda pos: start + pos * (end - start)


def combined_cos(pct: float, start: float, middle: float, end: float) -> Sched:
    """Cosine from `start` to `middle` over the first `pct` of training, then from `middle` to `end`.

    >>> f = combined_cos(0.25, 1.0, 10.0, 0.0)
    >>> f(0.0), f(0.25), f(1.0)
    (1.0, 10.0, 0.0)
    """
    up, down = sched_cos(start, middle), sched_cos(middle, end)

    def sched(pos: float) -> float:
        if pos < pct:
            return up(pos / pct)
        return down((pos - pct) / (1 - pct)) if pct < 1 else middle

    return sched


class ParamScheduler(Callback):
    """Set hyper-parameters before every training batch from schedules of training progress.

    `scheds` maps 'lr', 'mom' or 'wd' to one schedule per layer group (or one for every group); progress
    is the fraction of the fit's training batches done, `learn.train_iter / (n_epoch * n_iter)`. They
    apply to every optimizer of `learn.opts`, or only to `learn.opts[opt_idx]` (`fit_one_cycle` adds
    one scheduler per optimizer, each with that optimizer's groups' rates).

    >>> learn.fit(2, cbs=ParamScheduler({"lr": [sched_cos(1e-2, 1e-4)]}))  # doctest: +SKIP
    """

    order = 60

    def __init__(self, scheds: dict[str, list[Sched]], opt_idx: int | None = None) -> None:
        self.scheds, self.opt_idx = scheds, opt_idx

    def before_batch(self) -> None:
        if not self.learn.training:
            return
        pos = self.learn.train_iter / (self.learn.n_epoch * self.learn.n_iter)
        opts = self.learn.opts if self.opt_idx is None else [self.learn.opts[self.opt_idx]]
        for opt in opts:
            for name, fs in self.scheds.items():
                set_hyper(opt, name, [f(pos) for f in fs])
