"""Predictions over a loader: `GatherPreds` collects them batch by batch on the CPU; `get_preds` and
`tta` (behind `Learner.get_preds` and `Learner.tta`) run the passes.

A model may return a tuple of tensors (a VAE's `(recon, mu, logvar)`): the predictions are then a tuple
of the same length, each element concatenated over the batches; `item_of(preds, i)` takes one item.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ember.callbacks.core import Callback
from ember.core.utils import find_bs, listify, to_detach
from ember.learner.contracts import CanAugment, CanShowResults, require

if TYPE_CHECKING:
    from ember.learner.learner import Learner

__all__ = ["GatherPreds", "get_preds", "item_of", "loss_per_item", "tta"]


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
    bs = find_bs(pred)
    return losses.view(bs, -1).float().mean(1) if losses.numel() != bs else losses.float().view(bs)


def item_of(preds: Any, i: int) -> Any:
    """Item `i` of predictions: `preds[i]`, or a tuple of each element's item `i` for tuple predictions."""
    return tuple(p[i] for p in preds) if isinstance(preds, tuple | list) else preds[i]


def _as_float(pred: Any) -> Any:
    """Floating-point tensors in `pred` (a tensor or a tuple of them) as float32, e.g. after autocast."""
    if isinstance(pred, tuple | list):
        return type(pred)(_as_float(p) for p in pred)
    return pred.float() if pred.is_floating_point() else pred


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
        self._preds.append(to_detach(_as_float(learn.pred), cpu=True))
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


def get_preds(
    learn: Learner,
    ds_idx: int = 1,
    dl: Any = None,
    with_input: bool = False,
    with_decoded: bool = False,
    with_loss: bool = False,
    act: Callable[[Any], Any] | None = None,
    cbs: Callback | Sequence[Callback] | None = None,
) -> tuple:
    """`Learner.get_preds`: `(preds, targs)` for a whole loader, with extras
    `(inputs, preds, targs, decoded, losses)` when asked."""
    gather = GatherPreds(with_input=with_input, with_loss=with_loss)
    # Predictions are not a score: the Recorder sits out, so the last validation's metrics stay.
    with learn._one_call([gather, *listify(cbs)]), learn.removed_cbs(learn.recorder):
        learn._do_validate(learn.dls[ds_idx] if dl is None else dl)
    act = act if act is not None else getattr(learn.loss_func, "activation", None)
    preds = act(gather.preds) if act is not None else gather.preds
    res: list = [preds, gather.targs]
    if with_decoded:
        decodes = getattr(learn.loss_func, "decodes", None)
        res.append(decodes(preds) if decodes is not None else preds)
    if with_loss:
        res.append(gather.losses)
    if with_input:
        res.insert(0, gather.inputs)
    return tuple(res)


def tta(
    learn: Learner, ds_idx: int = 1, n: int = 4, beta: float | None = 0.25, use_max: bool = False
) -> tuple[Tensor, Tensor]:
    """`Learner.tta`: predictions averaged (or maxed) over `n` augmented passes, mixed with the plain ones."""
    require(learn.dls, CanAugment, "learn.tta")
    dl = learn.dls.tta_dl(ds_idx)
    passes = torch.stack([learn.get_preds(dl=dl)[0] for _ in range(n)])  # (n, items, ...)
    aug = passes.max(0).values if use_max else passes.mean(0)
    preds, targs = learn.get_preds(ds_idx)
    return (aug if beta is None else torch.lerp(aug, preds, beta)), targs


def show_learner_results(learn: Learner, ds_idx: int, dl: Any, max_n: int, **kwargs: Any) -> Any:
    """`learn.show_results`: the first batch of a loader with the model's decoded predictions, drawn by
    the application that made the learner when it draws its own, else by the loaders."""
    from ember.learner.app import app_of  # an application may show its results its own way

    found = app_of(learn)
    if found is not None and found[0].show_results is not None and dl is None:
        return found[0].show_results(learn, ds_idx, max_n)
    require(learn.dls, CanShowResults, "learn.show_results")
    batch = (learn.dls[ds_idx] if dl is None else dl).one_batch()
    n_inp = getattr(learn.dls.datasets, "n_inp", 1)
    training = learn.model.training
    try:
        learn.model.eval()
        with torch.inference_mode():
            out = _as_float(learn.model(*batch[:n_inp]))
    finally:
        learn.model.train(training)
    act = getattr(learn.loss_func, "activation", None)
    decodes = getattr(learn.loss_func, "decodes", None)
    preds = act(out) if act is not None else out
    return learn.dls.show_results(batch, decodes(preds) if decodes is not None else preds, max_n, **kwargs)
