"""Gathering predictions over a loader, batch by batch, on the CPU."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ember.callbacks.core import Callback
from ember.core.utils import to_detach

__all__ = ["GatherPreds", "loss_per_item"]


def loss_per_item(loss_func: Callable, pred: Tensor, *yb: Tensor) -> Tensor:
    """One loss value per item of the batch: `loss_func` with `reduction='none'`, averaged per item."""
    if not hasattr(loss_func, "reduction"):
        raise TypeError(
            f"get_preds(with_loss=True) needs a loss with a `reduction` attribute; {loss_func!r} has none. "
            "Use one of ember's losses (e.g. CrossEntropyLossFlat) or a torch.nn loss module."
        )
    old, loss_func.reduction = loss_func.reduction, "none"
    try:
        losses = loss_func(pred, *yb)
    finally:
        loss_func.reduction = old
    bs = pred.shape[0]
    return losses.view(bs, -1).float().mean(1) if losses.numel() != bs else losses.float().view(bs)


def _cat(parts: list) -> Any:
    if not parts:
        return None
    if isinstance(parts[0], tuple | list):
        return type(parts[0])(_cat(list(p)) for p in zip(*parts))
    return torch.cat(parts)


class GatherPreds(Callback):
    """Collect predictions, targets (and inputs, per-item losses when asked) of each batch."""

    order = 70

    def __init__(self, with_input: bool = False, with_loss: bool = False) -> None:
        self.with_input, self.with_loss = with_input, with_loss

    def before_validate(self) -> None:
        self._preds, self._targs, self._inputs, self._losses = [], [], [], []

    def after_batch(self) -> None:
        learn = self.learn
        pred = learn.pred.float() if learn.pred.is_floating_point() else learn.pred
        self._preds.append(to_detach(pred, cpu=True))
        if learn.yb:
            yb = learn.yb[0] if len(learn.yb) == 1 else learn.yb
            self._targs.append(to_detach(yb, cpu=True))
        if self.with_input:
            xb = learn.xb[0] if len(learn.xb) == 1 else learn.xb
            self._inputs.append(to_detach(xb, cpu=True))
        if self.with_loss and learn.yb:
            self._losses.append(loss_per_item(learn.loss_func, learn.pred, *learn.yb).detach().cpu())

    def after_validate(self) -> None:
        self.preds, self.targs = _cat(self._preds), _cat(self._targs)
        self.inputs, self.losses = _cat(self._inputs), _cat(self._losses)
        del self._preds, self._targs, self._inputs, self._losses
