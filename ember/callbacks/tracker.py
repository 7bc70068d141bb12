"""Callbacks that watch a metric each epoch: early stopping, saving the best model, lowering the lr."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ember.callbacks.core import Callback, CancelFitException
from ember.core.optimizer import get_hyper, set_hyper

__all__ = ["EarlyStoppingCallback", "ReduceLROnPlateau", "SaveModelCallback", "TrackerCallback"]

Comp = Callable[[float, float], bool]


class TrackerCallback(Callback):
    """Track `monitor` (a recorder column: 'valid_loss', 'train_loss' or a metric's name) each epoch.

    `comp` decides what "better" means: by default lower for names containing 'loss' or 'error',
    higher otherwise. A change smaller than `min_delta` is no improvement. `self.new_best` says
    whether the epoch just finished improved on `self.best`; `self.wait` counts the epochs since the
    last improvement.
    """

    order = 70  # after the Recorder has logged the epoch

    def __init__(
        self,
        monitor: str = "valid_loss",
        comp: Comp | None = None,
        min_delta: float = 0.0,
        reset_on_fit: bool = True,
    ) -> None:
        lower = "loss" in monitor or "error" in monitor
        self.monitor, self.reset_on_fit = monitor, reset_on_fit
        self.comp = comp if comp is not None else (np.less if lower else np.greater)
        # Improving means beating the best by min_delta in the comparison's own direction.
        self.min_delta = -abs(min_delta) if self.comp is np.less else abs(min_delta)
        self.best: float | None = None

    def before_fit(self) -> None:
        names = self.learn.recorder.metric_names[1:-1]
        if self.monitor not in names:
            raise ValueError(
                f"{type(self).__name__}: cannot monitor {self.monitor!r}; the recorder's columns are {names}"
            )
        if self.reset_on_fit or self.best is None:
            self.best = np.inf if self.comp is np.less else -np.inf
        self.new_best, self.wait = False, 0

    def after_epoch(self) -> None:
        val = self.learn.recorder.value(self.monitor)
        self.new_best = val is not None and bool(self.comp(val - self.min_delta, self.best))
        if self.new_best:
            self.best = val
        self.wait = 0 if self.new_best else self.wait + 1


class EarlyStoppingCallback(TrackerCallback):
    """Stop training once `monitor` has not improved for `patience` epochs."""

    def __init__(
        self,
        monitor: str = "valid_loss",
        comp: Comp | None = None,
        min_delta: float = 0.0,
        patience: int = 1,
        reset_on_fit: bool = True,
    ) -> None:
        super().__init__(monitor, comp, min_delta, reset_on_fit)
        self.patience = patience

    def after_epoch(self) -> None:
        super().after_epoch()
        if self.wait >= self.patience:
            print(
                f"No improvement in {self.monitor} since epoch {self.learn.epoch - self.wait}: early stopping"
            )
            raise CancelFitException()


class SaveModelCallback(TrackerCallback):
    """Save the model whenever `monitor` improves (to `fname`) and load that best one after fitting.

    `every_epoch=True` (or an int n) saves `fname_{epoch}` every (n-th) epoch instead, each file
    recording its epoch, so a killed run can go on: `learn.load('model_3')` then
    `learn.fit_one_cycle(n, lr, start_epoch=learn.epoch + 1)` (roughly: for an exact resume, with the
    random states and history, use `CheckpointCallback`). `at_end` saves once after fitting.
    """

    def __init__(
        self,
        monitor: str = "valid_loss",
        comp: Comp | None = None,
        min_delta: float = 0.0,
        fname: str = "model",
        every_epoch: bool | int = False,
        at_end: bool = False,
        with_opt: bool = False,
        reset_on_fit: bool = True,
    ) -> None:
        super().__init__(monitor, comp, min_delta, reset_on_fit)
        self.fname, self.every_epoch, self.at_end, self.with_opt = fname, every_epoch, at_end, with_opt
        self._saved = False

    def before_fit(self) -> None:
        super().before_fit()
        self._saved = False

    def after_epoch(self) -> None:
        if self.every_epoch:
            if self.learn.epoch % int(self.every_epoch) == 0:
                self.learn.save(f"{self.fname}_{self.learn.epoch}", with_opt=self.with_opt)
            return
        super().after_epoch()
        if self.new_best:
            print(f"Better model found at epoch {self.learn.epoch} with {self.monitor} value: {self.best}.")
            self.learn.save(self.fname, with_opt=self.with_opt)
            self._saved = True

    def after_fit(self) -> None:
        if self.at_end:
            self.learn.save(self.fname, with_opt=self.with_opt)
        elif not self.every_epoch and self._saved:
            self.learn.load(self.fname, with_opt=self.with_opt)


class ReduceLROnPlateau(TrackerCallback):
    """Divide every learning rate (of every optimizer) by `factor` (not below `min_lr`) after `patience`
    epochs without improvement in `monitor`. Meant for `fit`; `fit_one_cycle`'s schedule would override it."""

    def __init__(
        self,
        monitor: str = "valid_loss",
        comp: Comp | None = None,
        min_delta: float = 0.0,
        patience: int = 1,
        factor: float = 10.0,
        min_lr: float = 0.0,
        reset_on_fit: bool = True,
    ) -> None:
        super().__init__(monitor, comp, min_delta, reset_on_fit)
        self.patience, self.factor, self.min_lr = patience, factor, min_lr

    def after_epoch(self) -> None:
        super().after_epoch()
        if self.wait >= self.patience:
            self.wait = 0
            for opt in self.learn.opts:
                new = [max(lr / self.factor, self.min_lr) for lr in get_hyper(opt, "lr")]
                set_hyper(opt, "lr", new)
            print(f"Epoch {self.learn.epoch}: reducing lr to {new[-1]:.3g}")
