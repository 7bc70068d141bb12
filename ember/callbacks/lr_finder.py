"""The learning-rate range test (Leslie Smith): the callback and the suggestion rules.

Each rule takes the recorded learning rates and smoothed losses and returns one learning rate.
"""

from __future__ import annotations

import copy
import math
from collections import namedtuple
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ember.callbacks.core import Callback, CancelFitException, CancelValidException
from ember.callbacks.recorder import plot_lr_curve

__all__ = [
    "LRFindResult",
    "LRFinder",
    "SuggestedLRs",
    "minimum",
    "slide",
    "steep",
    "suggest_lrs",
    "valley",
]

SuggestedLRs = Any  # a namedtuple whose fields are the names of the suggestion functions used


class LRFinder(Callback):
    """Grow the lr exponentially from `start_lr` to `end_lr` over `num_it` batches; stop early when the
    smoothed loss passes 4x its best (`stop_div`); restore model and optimizer state afterwards, however
    the run ends (at `cleanup`). With several optimizers (`learn.opts`) every group of each follows the
    same learning rate, and every optimizer is restored."""

    order = 55  # after the Recorder has updated the smoothed loss
    undoes_fit = True  # the Recorder keeps this fit out of its history; no checkpoint is written in it

    def __init__(self, start_lr: float = 1e-7, end_lr: float = 10, num_it: int = 100, stop_div: bool = True):
        if not 0 < start_lr < end_lr:
            raise ValueError(f"lr_find needs 0 < start_lr < end_lr, got start_lr={start_lr}, end_lr={end_lr}")
        self.start_lr, self.end_lr, self.num_it, self.stop_div = start_lr, end_lr, num_it, stop_div

    def before_fit(self) -> None:
        # Copies, not references: training changes tensors in place.
        self.model_state = {k: v.detach().clone() for k, v in self.learn.model.state_dict().items()}
        self.opt_states = [copy.deepcopy(opt.state_dict()) for opt in self.learn.opts]
        self.epochs_trained = self.learn.epochs_trained
        self.best = math.inf

    def before_batch(self) -> None:
        if self.learn.training:
            lr = self.start_lr * (self.end_lr / self.start_lr) ** (self.learn.train_iter / self.num_it)
            for opt in self.learn.opts:
                for g in opt.param_groups:
                    g["lr"] = lr

    def after_batch(self) -> None:
        if not self.learn.training:
            return
        loss = self.learn.recorder.smooth_loss
        self.best = min(self.best, loss)
        if self.stop_div and (loss > 4 * self.best or math.isnan(loss)):
            raise CancelFitException()
        if self.learn.train_iter + 1 >= self.num_it:
            raise CancelFitException()

    def before_validate(self) -> None:
        raise CancelValidException()

    def cleanup(self) -> None:
        # Also after an error or Ctrl-C: the weights trained at lr ~10 must never stay in the model.
        self.learn.model.load_state_dict(self.model_state)
        for opt, state in zip(self.learn.opts, self.opt_states):
            opt.zero_grad(set_to_none=True)
            opt.load_state_dict(state)
        self.learn.epochs_trained = self.epochs_trained


def _trim(lrs: Sequence[float], losses: Sequence[float], num_it: int) -> tuple[np.ndarray, np.ndarray]:
    # The first tenth is noise from the smoothing's warm-up; the last few points are the divergence.
    lo, hi = num_it // 10, len(lrs) - 5
    if hi - lo < 3:
        lo, hi = 0, len(lrs)
    return np.asarray(lrs[lo:hi], dtype=float), np.asarray(losses[lo:hi], dtype=float)


def valley(lrs: np.ndarray, losses: np.ndarray) -> float:
    """Inside the longest stretch over which the loss keeps going down, a point past its middle.

    The stretch is the longest strictly decreasing subsequence of the losses; the suggestion sits
    half of a third past its first third, a steady part of the descent.
    """
    n = len(losses)
    run = [1] * n  # run[i]: length of the longest decreasing subsequence ending at i
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j]:
                run[i] = max(run[i], run[j] + 1)
    end = max(range(n), key=lambda i: (run[i], -i))
    start = max(end - run[end], 0)
    third = (end - start) / 3
    return float(lrs[start + int(third) + int(third / 2)])


def steep(lrs: np.ndarray, losses: np.ndarray) -> float:
    """Where the loss falls fastest against log(lr)."""
    slopes = np.diff(losses) / np.diff(np.log(lrs))
    return float(lrs[int(np.argmin(slopes))])


def minimum(lrs: np.ndarray, losses: np.ndarray) -> float:
    """A tenth of the learning rate at the lowest loss."""
    return float(lrs[int(np.argmin(losses))]) / 10


def slide(lrs: np.ndarray, losses: np.ndarray, lr_diff: int = 15, thresh: float = 0.005) -> float:
    """Walk left from the end until the loss's gradient at two points `lr_diff` apart agrees within
    `thresh`: the last learning rate before the curve flattens into its divergence."""
    grad = np.gradient(losses)
    right, left = len(losses) - 1, len(losses) - 1 - lr_diff
    found = lrs[max(left, 0)]
    while left >= 0 and abs(grad[right] - grad[left]) > thresh:
        found = lrs[left]
        right, left = right - 1, left - 1
    return float(found)


def suggest_lrs(
    lrs: Sequence[float], losses: Sequence[float], num_it: int, funcs: Sequence[Callable]
) -> SuggestedLRs:
    """Apply each suggestion function to the trimmed curve; a named tuple of their answers."""
    if len(lrs) < 2:
        raise ValueError(
            "lr_find recorded fewer than 2 batches, too few to suggest a learning rate: "
            "use more training data or a smaller batch size"
        )
    x, y = _trim(lrs, losses, num_it)
    names = [getattr(f, "__name__", f"suggestion_{i}") for i, f in enumerate(funcs)]
    return namedtuple("SuggestedLRs", names)(*(f(x, y) for f in funcs))


@dataclass
class LRFindResult:
    """One `lr_find` run: the learning rates and smoothed losses per batch, and the suggestions.

    The Learner keeps the last one as `learn.lr_find_result`, so it outlives the next fit (which resets
    the Recorder) and can go into `learn.report()`.

    >>> learn.lr_find(show_plot=False); learn.lr_find_result.plot()  # doctest: +SKIP
    """

    lrs: list[float]
    losses: list[float]
    suggestions: SuggestedLRs

    def plot(self, skip_end: int = 5, ax: Any = None) -> Any:
        """Loss against learning rate (log scale), the suggestions marked; returns the figure."""
        return plot_lr_curve(self.lrs, self.losses, self.suggestions, skip_end, ax)
