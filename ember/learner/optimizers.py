"""The Learner's optimizers: building them, their learning rates, freezing layer groups.

Optimizers: `learn.opts` is a list of plain `torch.optim` optimizers; `learn.opt` is the first (setting
it replaces the list with that one). `create_opt` builds one from `opt_func` over the splitter's layer
groups when `opts` is empty at `fit`; set `learn.opts` (or override `create_opt`) for several, e.g. a
GAN's generator and critic. Learning rates, weight decay and schedules go to every optimizer (each
group of a plain optimizer is a layer group of its own); `step` and `zero_grad` step and clear all of
them; checkpoints hold all of them; the Recorder records the first one's lr and momentum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from ember.core.optimizer import OptFunc, lrs_for, n_layer_groups, param_groups, set_hyper

__all__ = ["LR", "Optimizers"]

LR = float | slice | Sequence[float]


class Optimizers:
    """`learn.opts` and what acts on them: `create_opt`, `set_lr`, `freeze_to` / `freeze` / `unfreeze`.

    >>> learn.freeze(); learn.fit_one_cycle(1); learn.unfreeze()  # doctest: +SKIP
    """

    opts: list[torch.optim.Optimizer]
    model: nn.Module
    opt_func: OptFunc
    splitter: Callable[[nn.Module], list[list[nn.Parameter]]]
    lr: LR
    wd: float | None
    wd_bn_bias: bool
    train_bn: bool

    @property
    def opt(self) -> torch.optim.Optimizer | None:
        """The first optimizer, `opts[0]` (None before the first fit); setting it makes it the only one."""
        return self.opts[0] if self.opts else None

    @opt.setter
    def opt(self, opt: torch.optim.Optimizer | None) -> None:
        self.opts = [] if opt is None else [opt]

    def create_opt(self) -> None:
        """Build `self.opts`: one optimizer from `opt_func` over the splitter's layer groups, with lr, wd
        and the first momentum set. Override it, or set `learn.opts`, to train with several."""
        self.layer_groups = self.splitter(self.model)
        groups = param_groups(self.layer_groups, self.model, self.wd_bn_bias)
        opt = self.opt_func(groups, lr=lrs_for(self.lr, 1)[0])
        for g in opt.param_groups:
            if g["no_wd"]:
                g["weight_decay"] = 0.0
        self.opts = [opt]
        self.set_lr(self.lr)
        if self.wd is not None:
            set_hyper(opt, "wd", [self.wd])

    @property
    def n_groups(self) -> int:
        """The first optimizer's layer groups (the splitter's, before the optimizer is built)."""
        return n_layer_groups(self.opt) if self.opt is not None else len(self.splitter(self.model))

    def set_lr(self, lr: LR) -> None:
        """Set each layer group's learning rate, in every optimizer; `lr` may be a float, `slice(hi)`,
        `slice(lo, hi)` or one rate per group."""
        for opt in self.opts:
            set_hyper(opt, "lr", lrs_for(lr, n_layer_groups(opt)))

    def freeze_to(self, n: int) -> None:
        """Train only layer groups `n` and after (BatchNorm layers stay trainable when `train_bn`)."""
        if not self.opts:
            self.create_opt()
        bn = {id(p) for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
              for p in m.parameters(recurse=False)}  # fmt: skip
        layer_groups = self.splitter(self.model)
        frozen = range(len(layer_groups))[:n]
        for i, params in enumerate(layer_groups):
            for p in params:
                p.requires_grad_(i not in frozen or (self.train_bn and id(p) in bn))

    def freeze(self) -> None:
        """Train only the last layer group (the head)."""
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        """Train every layer group."""
        self.freeze_to(0)
