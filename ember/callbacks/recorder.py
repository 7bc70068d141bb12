"""The Recorder: losses, learning rates, momentums and metrics, per batch and per epoch, and plots."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ember.callbacks.core import Callback
from ember.core.utils import find_bs

__all__ = ["Recorder", "plot_lr_curve"]

# What `state_dict` holds: enough for a resumed run's curves, epoch table and history to go on.
_STATE = ("lrs", "moms", "values", "times", "history", "n_fits", "final_metrics", "_smooth", "_n")


class Recorder(Callback):
    """Always on. Per training batch: `losses` (smoothed), and `lrs`, `moms` of the last parameter group of
    the first optimizer (`learn.opt`; a learner with several records the first). Per epoch: `values` rows of
    `[train_loss, valid_loss, *metrics]` with `metric_names`, `log` (the last row, with its epoch and time)
    and `times`. These cover the last fit.

    `history` covers every fit of the learner (fine_tune runs two; a fit with a callback whose
    `undoes_fit` is set, such as lr_find's, is left out): one dict
    per epoch with `fit` (1, 2, ...), `epoch` (within its fit), `train_loss`, `valid_loss`, each metric
    by name, `time`, the last group's `lr` at the epoch's end, and `frozen` (some parameters not trained).

    `final_metrics` is `{'valid_loss': ..., metric name: ...}` of the last validation pass over the
    validation set, in training or `validate()`: what `export()` and `report()` show. Passes over other
    loaders (`validate(ds_idx=0)`) set only `valid_values`, and `get_preds` / `predict` touch neither.

    The train loss is an exponential moving average of batch losses (`beta`), debiased, as the course
    shows it; validation loss and metrics are computed over the whole validation set. Batch losses stay
    on the device until `losses` is read or the training pass ends: no device sync per batch.

    >>> learn.fine_tune(2); [(h["fit"], h["valid_loss"]) for h in learn.recorder.history]  # doctest: +SKIP
    """

    order = -20  # first, so every other callback's after_epoch sees the finished row in `log`

    def __init__(self, beta: float = 0.98) -> None:
        self.beta = beta
        self.lrs: list[float] = []
        self.moms: list[float] = []
        self._losses: list[float] = []
        self._pending: list[Tensor] = []  # batch losses not yet smoothed, on the device
        self._smooth, self._n = 0.0, 0
        self.values: list[list[float | None]] = []
        self.times: list[float] = []
        self.valid_values: list[float | None] = []
        self.final_metrics: dict[str, float] = {}
        self.log: list[Any] = []
        self.history: list[dict[str, Any]] = []
        self.n_fits = 0

    @property
    def metric_names(self) -> list[str]:
        return ["epoch", "train_loss", "valid_loss", *(m.name for m in self.learn.metrics), "time"]

    def before_fit(self) -> None:
        self.lrs, self.moms, self._losses, self._pending, self.values, self.times = [], [], [], [], [], []
        self._smooth, self._n = 0.0, 0
        # A trial fit (lr_find's) is undone when it ends: its epochs are not part of the model's history.
        self._in_history = not any(cb.undoes_fit for cb in self.learn.cbs)
        if self._in_history:
            self.n_fits += 1

    def before_epoch(self) -> None:
        self._start = time.perf_counter()
        self._reset_valid()  # a validation cancelled before our before_validate must not see stale sums

    def before_validate(self) -> None:
        self._reset_valid()

    def _reset_valid(self) -> None:
        self.valid_values = [None] * (1 + len(self.learn.metrics))
        self._valid_losses, self._valid_bs = [], []
        for m in self.learn.metrics:
            m.reset()

    def after_batch(self) -> None:
        learn = self.learn
        if learn.loss is None:  # cancelled before the loss, or a batch without targets
            return
        if learn.training:
            self._pending.append(learn.loss)
            group = learn.opt.param_groups[-1]
            self.lrs.append(group["lr"])
            self.moms.append(group["betas"][0] if "betas" in group else group.get("momentum", 0.0))
            return
        self._valid_losses.append(learn.loss)
        self._valid_bs.append(find_bs(learn.yb))
        for m in learn.metrics:
            m.accumulate(learn.pred, *learn.yb)

    def after_train(self) -> None:
        self._flush()

    def state_dict(self) -> dict[str, Any]:
        """The recorder's history as plain Python values (lists, numbers, dicts) that JSON can hold."""
        losses = list(self.losses)  # first: reading them folds the losses still on the device into `_smooth`
        return {"losses": losses} | {k: _plain(getattr(self, k)) for k in _STATE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Go on from what `state_dict` returned (a resumed run's curves continue the interrupted one's)."""
        for k in _STATE:
            setattr(self, k, state[k])
        self._losses, self._pending = list(state["losses"]), []

    def _flush(self) -> None:
        """Smooth the batch losses kept on the device: one sync for all of them."""
        if not self._pending:
            return
        raw = torch.stack([loss.float() for loss in self._pending]).tolist()
        self._pending = []
        for loss in raw:
            self._n += 1
            self._smooth = self.beta * self._smooth + (1 - self.beta) * loss
            self._losses.append(self._smooth / (1 - self.beta**self._n))

    @property
    def losses(self) -> list[float]:
        """The smoothed training loss of each batch of the last fit."""
        self._flush()
        return self._losses

    @property
    def smooth_loss(self) -> float:
        return self.losses[-1] if self.losses else float("nan")

    def after_validate(self) -> None:
        if not self._valid_losses:
            return
        bs = torch.tensor(self._valid_bs, device=self._valid_losses[0].device)
        loss = (torch.stack([loss.float() for loss in self._valid_losses]) * bs).sum() / bs.sum()
        self.valid_values = [loss.item(), *(m.value for m in self.learn.metrics)]
        if len(self.learn.dls) > 1 and self.learn.dl is self.learn.dls.valid:
            names = ["valid_loss", *(m.name for m in self.learn.metrics)]
            self.final_metrics = {n: float(v) for n, v in zip(names, self.valid_values) if v is not None}

    def after_epoch(self) -> None:
        elapsed = time.perf_counter() - self._start
        self.values.append([self.smooth_loss, *self.valid_values])
        self.times.append(elapsed)
        self.log = [self.learn.epoch, *self.values[-1], elapsed]
        if self._in_history:
            self.history.append(self._history_row(elapsed))

    def _history_row(self, elapsed: float) -> dict[str, Any]:
        names = self.metric_names[1:-1]  # train_loss, valid_loss, *metrics
        frozen = any(not p.requires_grad for p in self.learn.model.parameters())
        lr = self.lrs[-1] if self.lrs else None
        row = {"fit": self.n_fits, "epoch": self.learn.epoch, **dict(zip(names, self.values[-1]))}
        return row | {"time": elapsed, "lr": lr, "frozen": frozen}

    def value(self, name: str) -> float | None:
        """The last epoch's value of a column: 'train_loss', 'valid_loss' or a metric's name."""
        names = self.metric_names[1:-1]
        if name not in names:
            raise KeyError(f"no column {name!r} in the recorder; columns are {names}")
        return self.values[-1][names.index(name)] if self.values else None

    # ---- plots -----------------------------------------------------------------------------------
    def plot_loss(self, skip_start: int = 5, with_valid: bool = True, ax: Any = None) -> Any:
        """Training loss per batch (smoothed) and validation loss per epoch."""
        ax = _axes(ax)
        ax.plot(range(skip_start, len(self.losses)), self.losses[skip_start:], label="train")
        if with_valid and self.values:
            n_iter = len(self.losses) / max(len(self.values), 1)
            xs = [(i + 1) * n_iter - 1 for i in range(len(self.values))]
            ax.plot(xs, [v[1] for v in self.values], label="valid", marker="o")
        ax.set_xlabel("batch")
        ax.set_ylabel("loss")
        ax.legend()
        return ax.figure

    def plot_sched(self) -> Any:
        """The learning rate and momentum of the last parameter group, per batch."""
        import matplotlib.pyplot as plt

        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
        ax1.plot(self.lrs)
        ax1.set_title("learning rate")
        ax2.plot(self.moms)
        ax2.set_title("momentum")
        return fig

    def plot_lr_find(self, skip_end: int = 5, suggestions: Any = None, ax: Any = None) -> Any:
        """Loss against learning rate (log scale) from `lr_find`, with the suggestions marked."""
        return plot_lr_curve(self.lrs, self.losses, suggestions, skip_end, ax)

    def plot_metrics(self, figsize: tuple[float, float] | None = None) -> Any:
        """Per epoch, across every fit in `history`: the losses on one axes, each metric on its own,
        with a dashed line where a new fit began (fine_tune's unfrozen phase, say).

        >>> learn.fine_tune(3); learn.recorder.plot_metrics()  # doctest: +SKIP
        """
        import matplotlib.pyplot as plt

        if not self.history:
            raise ValueError("recorder.plot_metrics: no epoch recorded yet; train first (learn.fit(...))")
        metrics = [k for k in self.history[0] if k not in _NOT_METRICS]
        fig, axs = plt.subplots(1, 1 + len(metrics), figsize=figsize or (4.5 * (1 + len(metrics)), 3.5))
        axs = [axs] if not metrics else list(axs)
        _plot_columns(axs[0], self.history, ["train_loss", "valid_loss"], "loss")
        for ax, name in zip(axs[1:], metrics):
            _plot_columns(ax, self.history, [name], name)
        fig.tight_layout()
        return fig


def plot_lr_curve(
    lrs: Sequence[float], losses: Sequence[float], suggestions: Any = None, skip_end: int = 5, ax: Any = None
) -> Any:
    """Loss against learning rate (log scale) without its last `skip_end` points (the divergence), each
    suggestion (a named tuple of learning rates) marked at the loss recorded nearest to it; returns the
    figure."""
    ax = _axes(ax)
    end = -skip_end if skip_end and len(lrs) > skip_end else None
    ax.plot(lrs[:end], losses[:end])
    ax.set_xscale("log")
    ax.set_xlabel("Learning Rate")
    ax.set_ylabel("Loss")
    for name, lr in suggestions._asdict().items() if suggestions is not None else ():
        i = min(range(len(lrs)), key=lambda j: abs(lrs[j] - lr))
        ax.plot(lr, losses[i], "o", label=f"{name}: {lr:.2e}")
    if suggestions is not None:
        ax.legend()
    return ax.figure


def _plain(v: Any) -> Any:
    """`v` with tensors turned into Python numbers, for JSON."""
    if isinstance(v, Tensor):
        return v.tolist()
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


_NOT_METRICS = {"fit", "epoch", "train_loss", "valid_loss", "time", "lr", "frozen"}


def _plot_columns(ax: Any, history: list[dict[str, Any]], names: list[str], ylabel: str) -> None:
    from matplotlib.ticker import MaxNLocator

    xs = range(1, len(history) + 1)  # epochs counted across fits
    for name in names:
        ys = [float("nan") if h.get(name) is None else h[name] for h in history]
        ax.plot(xs, ys, marker="o", label=name)
    for i in range(1, len(history)):
        if history[i]["fit"] != history[i - 1]["fit"]:
            ax.axvline(i + 0.5, color="grey", linestyle="--", linewidth=1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch (all fits)")
    ax.set_ylabel(ylabel)
    if len(names) > 1:
        ax.legend()


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    return plt.subplots()[1]
