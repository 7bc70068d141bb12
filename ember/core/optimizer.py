"""Optimizers (plain `torch.optim` ones), parameter groups and per-group hyper-parameters.

A learner's model is split into *layer groups* (by its splitter); each becomes up to two torch
parameter groups, one with weight decay and one without (norm layers and biases). The extra keys
`layer_group` and `no_wd` in each torch group record which is which.

`set_hyper` and `get_hyper` also take any plain `torch.optim` optimizer: a group without those keys is a
layer group of its own (its position) and takes weight decay. Hyper-parameters are named the course's
way: 'lr', 'mom' (Adam's beta1, or SGD's / RMSprop's momentum) and 'wd' (torch's `weight_decay`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

__all__ = [
    "SGD",
    "Adam",
    "RMSProp",
    "OptFunc",
    "default_splitter",
    "get_hyper",
    "lrs_for",
    "n_layer_groups",
    "param_groups",
    "set_hyper",
]

OptFunc = Callable[..., torch.optim.Optimizer]
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


def Adam(
    params, lr: float = 1e-3, mom: float = 0.9, sqr_mom: float = 0.99, eps: float = 1e-5, wd: float = 0.01
):
    """Adam with decoupled weight decay: `torch.optim.AdamW(betas=(mom, sqr_mom), eps, weight_decay=wd)`."""
    return torch.optim.AdamW(params, lr=lr, betas=(mom, sqr_mom), eps=eps, weight_decay=wd)


def RMSProp(
    params, lr: float = 1e-3, mom: float = 0.0, sqr_mom: float = 0.99, eps: float = 1e-8, wd: float = 0.0
):
    """RMSprop: `torch.optim.RMSprop(alpha=sqr_mom, momentum=mom, weight_decay=wd)`. The clipped WGAN
    trains with it, without momentum (Arjovsky et al.: momentum made the critic unstable)."""
    return torch.optim.RMSprop(params, lr=lr, alpha=sqr_mom, eps=eps, weight_decay=wd, momentum=mom)


def SGD(params, lr: float = 1e-3, mom: float = 0.0, wd: float = 0.0):
    """Stochastic gradient descent: `torch.optim.SGD(momentum=mom, weight_decay=wd)`."""
    return torch.optim.SGD(params, lr=lr, momentum=mom, weight_decay=wd)


def default_splitter(model: nn.Module) -> list[list[nn.Parameter]]:
    """One layer group holding every parameter."""
    return [list(model.parameters())]


def no_wd_params(model: nn.Module) -> set[int]:
    """Ids of the parameters that get no weight decay by default: norm layers' and every bias."""
    ids = {id(p) for m in model.modules() if isinstance(m, _NORMS) for p in m.parameters(recurse=False)}
    return ids | {id(p) for name, p in model.named_parameters() if name.endswith("bias")}


def param_groups(layer_groups: list[list[nn.Parameter]], model: nn.Module, wd_bn_bias: bool) -> list[dict]:
    """Torch parameter groups for the layer groups, splitting off norm and bias parameters."""
    skip = set() if wd_bn_bias else no_wd_params(model)
    groups = []
    for i, params in enumerate(layer_groups):
        for no_wd in (False, True):
            ps = [p for p in params if (id(p) in skip) == no_wd]
            if ps:
                groups.append({"params": ps, "layer_group": i, "no_wd": no_wd})
    return groups


def lrs_for(lr: float | slice | Sequence[float], n: int) -> list[float]:
    """One learning rate per layer group.

    A float is used for every group; `slice(hi)` gives the last group `hi` and the others `hi / 10`;
    `slice(lo, hi)` spreads rates geometrically from `lo` (first group) to `hi` (last group).

    >>> lrs_for(slice(1e-4, 1e-2), 3)
    [0.0001, 0.001, 0.01]
    """
    if isinstance(lr, slice):
        if lr.stop is None:
            raise ValueError(f"a learning-rate slice needs an end: slice(hi) or slice(lo, hi), got {lr}")
        if lr.start is None:
            return [lr.stop / 10] * (n - 1) + [lr.stop]
        return [float(v) for v in np.geomspace(lr.start, lr.stop, n)] if n > 1 else [lr.stop]
    if isinstance(lr, Sequence):
        if len(lr) != n:
            raise ValueError(f"got {len(lr)} learning rates for {n} parameter groups; give one per group")
        return [float(v) for v in lr]
    return [float(lr)] * n


def _layer_group(group: dict, i: int) -> int:
    return group.get("layer_group", i)  # a plain torch group is a layer group of its own


def n_layer_groups(opt: torch.optim.Optimizer) -> int:
    """How many layer groups `opt`'s parameter groups make: one value each for `set_hyper`."""
    return len({_layer_group(g, i) for i, g in enumerate(opt.param_groups)})


def _mom_key(group: dict) -> str:
    return "betas" if "betas" in group else "momentum"


def set_hyper(opt: torch.optim.Optimizer, name: str, values: Sequence[float]) -> None:
    """Set `name` ('lr', 'mom' or 'wd') per layer group; one value is used for every group.

    >>> opt = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=0.1, momentum=0.9)
    >>> set_hyper(opt, "mom", [0.8]); get_hyper(opt, "mom")
    [0.8]
    """
    n = n_layer_groups(opt)
    if len(values) not in (1, n):
        raise ValueError(f"set_hyper: {len(values)} values of {name!r} for an optimizer with {n} layer "
                         "groups; give one value, or one per group")  # fmt: skip
    for i, g in enumerate(opt.param_groups):
        v = values[_layer_group(g, i)] if len(values) > 1 else values[0]
        if name == "lr":
            g["lr"] = v
        elif name == "wd":
            g["weight_decay"] = 0.0 if g.get("no_wd", False) else v
        elif name == "mom":
            key = _mom_key(g)
            g[key] = (v, g["betas"][1]) if key == "betas" else v
        else:
            raise ValueError(f"unknown hyper-parameter {name!r}: use 'lr', 'mom' or 'wd'")


def get_hyper(opt: torch.optim.Optimizer, name: str) -> list[float]:
    """The value of `name` ('lr', 'mom' or 'wd') for each layer group."""
    out: dict[int, float] = {}
    for i, g in enumerate(opt.param_groups):
        k = _layer_group(g, i)
        if name == "lr":
            out[k] = g["lr"]
        elif name == "mom":
            out[k] = g["betas"][0] if "betas" in g else g.get("momentum", 0.0)
        elif name == "wd" and not g.get("no_wd", False):
            out[k] = g["weight_decay"]
    return [out[k] for k in sorted(out)]
