"""Small training callbacks: stop on NaN, clip gradients, accumulate gradients."""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor

from ember.callbacks.core import Callback, CancelBatchException, CancelFitException
from ember.core.utils import find_bs

__all__ = ["GradientAccumulation", "GradientClip", "TerminateOnNaN"]


class TerminateOnNaN(Callback):
    """Stop training when a batch's loss is NaN or infinite, saying which batch and what to try.

    On a CPU, reading a loss costs nothing extra, so each batch is checked before its backward pass and
    the bad loss never reaches the weights. On an accelerator, where reading a value waits for the device,
    the losses stay there and are checked every `every` batches (default 16) in one read: training stops
    at most `every - 1` batches after the bad one, whose index the warning names, and the steps taken in
    between have put NaN into the weights (reload a checkpoint). `every=1` checks each batch anywhere.
    """

    order = -9

    def __init__(self, every: int | None = None) -> None:
        self.every = every
        self._pending: list[tuple[int, int, Tensor]] = []  # (epoch, batch, loss) not yet checked
        self.stopped_at: tuple[int, int] | None = None  # (epoch, batch) whose loss stopped the last fit

    def before_fit(self) -> None:
        self._pending, self.stopped_at = [], None
        on_cpu = self.learn.dls.device.type == "cpu"
        self._every = self.every if self.every is not None else (1 if on_cpu else 16)

    def after_loss(self) -> None:
        learn = self.learn
        if not learn.training or learn.loss is None:
            return
        self._pending.append((learn.epoch, learn.iter, learn.loss))
        if len(self._pending) >= self._every:
            self._check()

    def after_train(self) -> None:
        self._check()

    def _check(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        if len(pending) == 1:
            if math.isfinite(pending[0][2].item()):
                return
            epoch, batch, loss = pending[0]
        else:
            finite = torch.isfinite(torch.stack([loss.float() for _, _, loss in pending]))
            if bool(finite.all()):
                return
            epoch, batch, loss = pending[int((~finite).nonzero()[0])]
        warnings.warn(
            f"TerminateOnNaN: the training loss became {loss.item()} at epoch {epoch}, batch {batch}; "
            "training stopped. Try a lower learning rate (run lr_find), GradientClip(), to_fp32() if "
            "you use mixed precision, or check the data for NaN/inf values.",
            RuntimeWarning,
            stacklevel=2,
        )
        self.stopped_at = (epoch, batch)
        raise CancelFitException()


class GradientClip(Callback):
    """Clip the gradients' global norm to `max_norm` after each backward pass.

    Runs after `MixedPrecision` has unscaled them, so the norm is the true one.
    """

    order = 20

    def __init__(self, max_norm: float = 1.0, norm_type: float = 2.0) -> None:
        self.max_norm, self.norm_type = max_norm, norm_type

    def after_backward(self) -> None:
        torch.nn.utils.clip_grad_norm_(self.learn.model.parameters(), self.max_norm, self.norm_type)


class GradientAccumulation(Callback):
    """Step the optimizer only once `n_acc` samples have been seen, summing their gradients.

    Each batch's loss is scaled by `bs / n_acc` so the summed gradient is that of a batch of `n_acc`.
    """

    order = 5  # before MixedPrecision's unscale and GradientClip, which must see the whole sum

    def __init__(self, n_acc: int = 32) -> None:
        self.n_acc = n_acc

    def before_fit(self) -> None:
        self.count = 0

    def after_loss(self) -> None:
        if self.learn.training and self.learn.yb:
            self.learn.loss_grad = self.learn.loss_grad * (find_bs(self.learn.yb) / self.n_acc)

    def after_backward(self) -> None:
        self.count += find_bs(self.learn.yb)
        if self.count < self.n_acc:
            raise CancelBatchException()  # skips step and zero_grad: gradients keep adding up
        self.count = 0
