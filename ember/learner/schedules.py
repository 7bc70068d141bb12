"""Training schedules built on `Learner.fit`: 1cycle, fine-tuning and the learning-rate finder.

Each is a function of the learner; `Learner.fit_one_cycle`, `fine_tune` and `lr_find` call them. With
several optimizers (`learn.opts`), 1cycle schedules each one's groups, the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ember.callbacks.core import Callback
from ember.callbacks.lr_finder import LRFinder, LRFindResult, SuggestedLRs, suggest_lrs, valley
from ember.callbacks.schedule import ParamScheduler, Sched, combined_cos
from ember.core.optimizer import lrs_for, n_layer_groups
from ember.core.utils import listify
from ember.learner.resume import checkpoint_file, read_run

if TYPE_CHECKING:
    from ember.learner.learner import LR, Learner

__all__ = ["fine_tune", "fit_one_cycle", "lr_find", "one_cycle_scheds"]


def one_cycle_scheds(
    opt: torch.optim.Optimizer,
    lr_max: LR,
    div: float,
    div_final: float,
    pct_start: float,
    moms: tuple[float, float, float],
) -> dict[str, list[Sched]]:
    """1cycle's schedules for each layer group of `opt`: lr from lr_max/div up to lr_max and down to
    lr_max/div_final, momentum the opposite way through `moms`."""
    n = n_layer_groups(opt)
    lrs = lrs_for(lr_max, n)
    return {
        "lr": [combined_cos(pct_start, lr / div, lr, lr / div_final) for lr in lrs],
        "mom": [combined_cos(pct_start, *moms)] * n,
    }


def fit_one_cycle(
    learn: Learner,
    n_epoch: int,
    lr_max: LR | None = None,
    div: float = 25.0,
    div_final: float = 1e5,
    pct_start: float = 0.25,
    wd: float | None = None,
    moms: tuple[float, float, float] | None = None,
    cbs: Callback | Sequence[Callback] | None = None,
    reset_opt: bool = False,
    start_epoch: int = 0,
    resume: str | Path | None = None,
) -> None:
    """Leslie Smith's 1cycle: lr warms up from lr_max/div to lr_max, then anneals to lr_max/div_final
    (cosine), while momentum goes the opposite way through `moms`; one `ParamScheduler` per optimizer."""
    if reset_opt or not learn.opts:
        learn.create_opt()
    lr_max = learn.lr if lr_max is None else lr_max
    m = learn.moms if moms is None else moms
    scheds = [one_cycle_scheds(opt, lr_max, div, div_final, pct_start, m) for opt in learn.opts]
    cbs = [*(ParamScheduler(s, opt_idx=i) for i, s in enumerate(scheds)), *listify(cbs)]
    learn.fit(n_epoch, wd=wd, cbs=cbs, start_epoch=start_epoch, resume=resume)


def fine_tune(
    learn: Learner,
    epochs: int,
    base_lr: float = 2e-3,
    freeze_epochs: int = 1,
    lr_mult: float = 100,
    pct_start: float = 0.3,
    div: float = 5.0,
    resume: str | Path | None = None,
    **kwargs: Any,
) -> None:
    """Transfer learning: one frozen cycle on the head, then unfreeze and train every group with
    discriminative learning rates `slice(base_lr / 2 / lr_mult, base_lr / 2)`. `resume` continues
    whichever of the two cycles the checkpoint was saved in (a finished frozen one is not redone)."""
    frozen_stage = resume is not None and read_run(checkpoint_file(learn, resume))["frozen"]
    learn.freeze()
    if resume is None or frozen_stage:
        learn.fit_one_cycle(freeze_epochs, slice(base_lr), pct_start=0.99, resume=resume, **kwargs)
    base_lr /= 2
    learn.unfreeze()
    lrs = slice(base_lr / lr_mult, base_lr)
    later = None if frozen_stage else resume
    learn.fit_one_cycle(epochs, lrs, pct_start=pct_start, div=div, resume=later, **kwargs)


def lr_find(
    learn: Learner,
    start_lr: float = 1e-7,
    end_lr: float = 10,
    num_it: int = 100,
    stop_div: bool = True,
    show_plot: bool = True,
    suggest_funcs: Sequence[Callable] = (valley,),
) -> SuggestedLRs:
    """The learning-rate range test: train with an exponentially growing lr until the loss diverges,
    restore the model and optimizers, and suggest learning rates from the loss curve (kept in
    `learn.lr_find_result`)."""
    n_epoch = math.ceil(num_it / len(learn.dls.train))
    with learn.no_logging():
        learn.fit(n_epoch, cbs=LRFinder(start_lr, end_lr, num_it, stop_div))
    lrs, losses = learn.recorder.lrs, learn.recorder.losses
    suggestions = suggest_lrs(lrs, losses, num_it, suggest_funcs)
    learn.lr_find_result = LRFindResult(list(lrs), list(losses), suggestions)
    if show_plot:
        learn.lr_find_result.plot()
    return suggestions
