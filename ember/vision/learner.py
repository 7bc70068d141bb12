"""`vision_learner`: a pretrained body, its classifier replaced by the course's head, ready to fine-tune.

>>> learn = vision_learner(dls, resnet34, metrics=error_rate)  # doctest: +SKIP
>>> learn.fine_tune(1)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ember.callbacks.core import Callback
from ember.core.optimizer import Adam, OptFunc
from ember.core.serial import register_config_type
from ember.learner.learner import Learner
from ember.metrics import Metric
from ember.models.layers import SigmoidRange
from ember.models.registry import create_model, model_spec
from ember.models.surgery import cut_body, num_features
from ember.vision.augment import Normalize

__all__ = ["AdaptiveConcatPool2d", "cnn_learner", "create_head", "create_vision_model", "vision_learner"]


class AdaptiveConcatPool2d(nn.Module):
    """Max and average pooling side by side: `(bs, c, h, w) -> (bs, 2c, 1, 1)`."""

    def __init__(self, size: int = 1) -> None:
        super().__init__()
        self.max, self.avg = nn.AdaptiveMaxPool2d(size), nn.AdaptiveAvgPool2d(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.max(x), self.avg(x)], 1)


def create_head(
    nf: int,
    n_out: int,
    lin_ftrs: Sequence[int] | None = None,
    ps: float | Sequence[float] = 0.5,
    concat_pool: bool = True,
    first_bn: bool = True,
    bn_final: bool = False,
    y_range: tuple[float, float] | None = None,
) -> nn.Sequential:
    """The course's head: pool, flatten, then (BatchNorm, dropout, linear) blocks with ReLU between.

    With the defaults: `nf` body features -> concat pool (2 nf) -> 512 -> `n_out`; dropout is `ps / 2`
    before the first linear layer and `ps` before the last.

    >>> create_head(512, 10)[-1]
    Linear(in_features=512, out_features=10, bias=False)
    """
    pooled = nf * 2 if concat_pool else nf
    sizes = [pooled, *(lin_ftrs if lin_ftrs is not None else [512]), n_out]
    n_lin = len(sizes) - 1
    dropouts = list(ps) if isinstance(ps, Sequence) else [ps / 2] * (n_lin - 1) + [ps]
    layers: list[nn.Module] = [
        AdaptiveConcatPool2d() if concat_pool else nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    ]
    for i, (ni, no) in enumerate(zip(sizes[:-1], sizes[1:])):
        bn = first_bn or i > 0
        layers += [nn.BatchNorm1d(ni)] if bn else []
        layers += [nn.Dropout(dropouts[i])] if dropouts[i] else []
        layers.append(nn.Linear(ni, no, bias=not bn))  # a BatchNorm before it already has a shift
        if i < n_lin - 1:
            layers.append(nn.ReLU(inplace=True))
    if bn_final:
        layers.append(nn.BatchNorm1d(n_out, momentum=0.01))
    if y_range is not None:
        layers.append(SigmoidRange(*y_range))
    return nn.Sequential(*layers)


def _init_head(head: nn.Module, init: Callable[[torch.Tensor], Any] | None) -> None:
    if init is None:
        return
    for m in head.modules():
        if isinstance(m, nn.Linear):
            init(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _add_normalize(dls: Any, mean: Sequence[float], std: Sequence[float]) -> None:
    """Give the loaders the normalisation the pretrained weights expect, unless they normalise already."""
    add = getattr(dls, "add_batch_tfms", None)
    if add is None:
        return
    if any(isinstance(t, Normalize) for t in dls.dblock.batch_tfms):
        return
    add([Normalize.from_stats(mean, std)])


def vision_learner(
    dls: Any,
    arch: Any,
    normalize: bool = True,
    n_out: int | None = None,
    pretrained: bool = True,
    weights: str | None = None,
    loss_func: Callable | None = None,
    opt_func: OptFunc = Adam,
    lr: float | slice = 1e-3,
    splitter: Callable[[nn.Module], list[list[nn.Parameter]]] | None = None,
    cbs: Callback | Sequence[Callback] | None = None,
    metrics: Metric | Callable | Sequence[Metric | Callable] | None = None,
    path: Any = None,
    model_dir: str = "models",
    wd: float | None = None,
    moms: tuple[float, float, float] = (0.95, 0.85, 0.95),
    cut: int | Callable | None = None,
    init: Callable[[torch.Tensor], Any] | None = nn.init.kaiming_normal_,
    custom_head: nn.Module | None = None,
    concat_pool: bool = True,
    lin_ftrs: Sequence[int] | None = None,
    ps: float = 0.5,
    first_bn: bool = True,
    bn_final: bool = False,
    y_range: tuple[float, float] | None = None,
    n_in: int = 3,
    channels_last: bool = True,
    quiet: bool = False,
) -> Learner:
    """A Learner whose model is `nn.Sequential(body, head)`: `arch`'s pretrained body and a new head.

    `n_out` defaults to what the data's target needs (`dls.c`), the loss to its block's. A pretrained
    learner starts frozen (only the head and BatchNorm layers train); `fine_tune` unfreezes it. The
    model's normalisation is added to the data when `normalize` and the data has none.
    Discriminative learning rates come from `fine_tune(lr_mult=...)` or a `slice(lo, hi)` learning rate
    (vision_learner takes no `lr_mult`: the ratio between the groups' rates is fine_tune's).
    `channels_last` trains in channels-last layout (`learn.to_channelslast()`), which makes convolutions
    faster on CPUs (oneDNN) and GPUs; `learn.to_contiguous()` undoes it.
    """
    spec = model_spec(arch)
    n_out = n_out if n_out is not None else getattr(dls, "c", None)
    if not n_out:
        raise ValueError("vision_learner: n_out is not known from the data (dls.c); pass n_out=...")
    model = create_vision_model(
        spec.name, n_out, pretrained, weights, cut, n_in, init, custom_head, concat_pool, lin_ftrs, ps,
        first_bn, bn_final, y_range,
    )  # fmt: skip
    if normalize and (pretrained or weights is not None):
        _add_normalize(dls, spec.mean, spec.std)
    split = splitter if splitter is not None else (lambda m: [*spec.split(m[0]), list(m[1].parameters())])
    learn = Learner(
        dls, model, loss_func=loss_func, opt_func=opt_func, lr=lr, splitter=split, cbs=cbs, metrics=metrics,
        path=path, model_dir=model_dir, wd=wd, moms=moms, quiet=quiet,
    )  # fmt: skip
    if custom_head is None and not callable(cut):  # what an export file needs to rebuild the model
        learn.model_config = dict(
            type="create_vision_model", arch=spec.name, n_out=n_out, cut=cut, n_in=n_in,
            concat_pool=concat_pool, lin_ftrs=None if lin_ftrs is None else list(lin_ftrs),
            ps=list(ps) if isinstance(ps, Sequence) else ps, first_bn=first_bn, bn_final=bn_final,
            y_range=None if y_range is None else list(y_range),
        )  # fmt: skip
    if channels_last:
        learn.to_channelslast()
    if pretrained or weights is not None:
        learn.freeze()
    return learn


def create_vision_model(
    arch: Any,
    n_out: int,
    pretrained: bool = False,
    weights: str | None = None,
    cut: int | Callable | None = None,
    n_in: int = 3,
    init: Callable[[torch.Tensor], Any] | None = nn.init.kaiming_normal_,
    custom_head: nn.Module | None = None,
    concat_pool: bool = True,
    lin_ftrs: Sequence[int] | None = None,
    ps: float | Sequence[float] = 0.5,
    first_bn: bool = True,
    bn_final: bool = False,
    y_range: Sequence[float] | None = None,
) -> nn.Sequential:
    """`nn.Sequential(body, head)`: `arch` cut before its pooling, and the course's head for `n_out`.

    >>> create_vision_model("resnet18", 10)[1][-1]  # doctest: +SKIP
    Linear(in_features=512, out_features=10, bias=False)
    """
    spec = model_spec(arch)
    if cut is not None:
        spec = type(spec)(**{**spec.__dict__, "cut": cut})
    body = cut_body(create_model(spec.name, pretrained=pretrained, n_in=n_in, weights=weights), spec)
    nf = spec.n_features or num_features(body, n_in)
    y_range = None if y_range is None else (float(y_range[0]), float(y_range[1]))
    head = custom_head if custom_head is not None else create_head(
        nf, n_out, lin_ftrs, ps, concat_pool, first_bn, bn_final, y_range
    )  # fmt: skip
    _init_head(head, init)
    return nn.Sequential(body, head)


register_config_type(create_vision_model)


def cnn_learner(*args: Any, **kwargs: Any) -> Learner:
    """The course's older name for `vision_learner`."""
    return vision_learner(*args, **kwargs)
