"""Which input pixels a prediction depends on: gradients (saliency, SmoothGrad), integrated gradients
and occlusion. Each explains one output of the model (`target`; by default the predicted class) for
an `item` (whatever `learn.predict` takes) or a ready batch `xb` (n, c, h, w), and returns a map per
image: (h, w) for an item, (n, h, w) for a batch.

Scores are the model's raw outputs (logits), before softmax. Inputs are as the model sees them, after
the validation transforms and normalisation, so a baseline of 0 is the data's mean colour.

>>> sal = saliency(learn, "digit.png")  # (h, w) doctest: +SKIP
>>> ig = integrated_gradients(learn, "digit.png", target="3")  # doctest: +SKIP
>>> maps = occlusion(learn, xb=xb, window=8, stride=4)  # (n, h, w) doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ember.interpret._inputs import (
    Target,
    explaining,
    flat_output,
    input_batch,
    model_of,
    scores,
    target_indices,
)

__all__ = ["integrated_gradients", "occlusion", "saliency", "smoothgrad"]


def saliency(learn: Any, item: Any = None, target: Target = None, xb: Tensor | None = None) -> Tensor:
    """The size of the score's gradient with respect to each pixel, its largest over the channels
    (Simonyan et al. 2014). `learn` may be a Learner or, with `xb`, a bare model.

    >>> sal = saliency(learn, "digit.png")  # doctest: +SKIP
    """
    x, one = input_batch(learn, item, xb, "saliency")
    model = model_of(learn)
    with explaining(model):
        x = x.detach().requires_grad_(True)
        out = flat_output(model(x))
        (grad,) = torch.autograd.grad(scores(out, target_indices(learn, out, target)).sum(), x)
    return _one(grad.abs().amax(1), one)


def smoothgrad(
    learn: Any,
    item: Any = None,
    target: Target = None,
    n: int = 25,
    noise: float = 0.15,
    seed: int = 0,
    xb: Tensor | None = None,
    bs: int = 64,
) -> Tensor:
    """Saliency averaged over `n` noisy copies of the input (Smilkov et al. 2017): the noise's standard
    deviation is `noise` times each image's range of values. The target is fixed by the clean input.
    `seed` makes the noise repeatable; `bs` copies go through the model at a time.

    >>> sg = smoothgrad(learn, "digit.png", n=50)  # doctest: +SKIP
    """
    x, one = input_batch(learn, item, xb, "smoothgrad")
    model, b = model_of(learn), len(x)
    gen = torch.Generator(x.device).manual_seed(seed)
    spread = noise * (x.flatten(1).amax(1) - x.flatten(1).amin(1))  # (b,)
    total = torch.zeros_like(x)
    with explaining(model):
        idx = _targets(learn, model, x, target)
        for rows in _row_chunks(n * b, bs, x.device):
            img = rows % b  # copy `rows // b` of image `img`
            noisy = x[img] + _bcast(spread[img], x) * torch.randn(
                x[img].shape, generator=gen, device=x.device
            )
            total.index_add_(0, img, _input_grad(model, noisy, idx[img]).abs())
    return _one((total / n).amax(1), one)


def integrated_gradients(
    learn: Any,
    item: Any = None,
    target: Target = None,
    steps: int = 50,
    baseline: Tensor | float | None = None,
    xb: Tensor | None = None,
    bs: int = 64,
) -> Tensor:
    """The score's gradient integrated along the straight path from `baseline` (default: zeros, the
    mean colour) to the input, times the difference (Sundararajan et al. 2017), summed over the channels.
    Complete: the map sums to `f(input) - f(baseline)` up to the integral's error, which `steps`
    Gauss-Legendre points keep small. `bs` path points go through the model at a time.

    >>> ig = integrated_gradients(learn, "digit.png", steps=100)  # doctest: +SKIP
    """
    x, one = input_batch(learn, item, xb, "integrated_gradients")
    model, b = model_of(learn), len(x)
    base = torch.zeros_like(x) if baseline is None else torch.as_tensor(baseline).to(x).expand_as(x)
    nodes, weights = (torch.from_numpy(a).to(x) for a in np.polynomial.legendre.leggauss(steps))
    alphas, weights = (nodes + 1) / 2, weights / 2  # from [-1, 1] to [0, 1]
    total = torch.zeros_like(x)
    with explaining(model):
        idx = _targets(learn, model, x, target)
        for rows in _row_chunks(steps * b, bs, x.device):
            img, step = rows % b, rows // b
            point = base[img] + _bcast(alphas[step], x) * (x[img] - base[img])
            total.index_add_(0, img, _input_grad(model, point, idx[img]) * _bcast(weights[step], x))
    return _one(((x - base) * total).sum(1), one)


def occlusion(
    learn: Any,
    item: Any = None,
    target: Target = None,
    window: int = 8,
    stride: int = 4,
    baseline: float = 0.0,
    xb: Tensor | None = None,
    bs: int = 64,
) -> Tensor:
    """How much the score drops when a `window` x `window` square around each pixel is set to
    `baseline` (Zeiler & Fergus 2014): the drop of each placement of the square, `stride` apart,
    averaged over the placements covering the pixel (the last one in each row and column reaches the
    edge, so every pixel is covered). `bs` occluded images go through the model at a time.

    >>> occ = occlusion(learn, "digit.png", window=6, stride=3)  # doctest: +SKIP
    """
    x, one = input_batch(learn, item, xb, "occlusion")
    model, (b, h, w) = model_of(learn), (len(x), *x.shape[-2:])
    tops, lefts = _starts(h, window, stride), _starts(w, window, stride)
    corners = torch.cartesian_prod(tops, lefts).to(x.device)  # (p, 2)
    total = x.new_zeros(b, h, w)
    with explaining(model), torch.no_grad():
        out = flat_output(model(x))
        idx = target_indices(learn, out, target)
        ref = scores(out, idx)  # (b,)
        for rows in _row_chunks(len(corners) * b, bs, x.device):
            img, mask = rows % b, _squares(corners[rows // b], window, h, w)  # (r,), (r, h, w)
            hidden = torch.where(mask[:, None], torch.as_tensor(baseline).to(x), x[img])
            drop = ref[img] - scores(flat_output(model(hidden)), idx[img])
            total.index_add_(0, img, drop[:, None, None] * mask)
    cover = _squares(corners, window, h, w).sum(0)  # (h, w) placements covering each pixel
    return _one(total / cover, one)


def _targets(learn: Any, model: nn.Module, x: Tensor, target: Target) -> Tensor:
    with torch.no_grad():
        return target_indices(learn, flat_output(model(x)), target)


def _input_grad(model: nn.Module, x: Tensor, idx: Tensor) -> Tensor:
    """d score / d input for each row of `x` (rows are independent: the model is in eval mode)."""
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(scores(flat_output(model(x)), idx).sum(), x)
    return grad


def _row_chunks(n: int, bs: int, device: torch.device) -> list[Tensor]:
    return list(torch.arange(n, device=device).split(bs))


def _bcast(v: Tensor, like: Tensor) -> Tensor:
    """(r,) -> (r, 1, 1, 1): one value per image of a batch shaped like `like`."""
    return v.view(-1, *[1] * (like.ndim - 1))


def _starts(size: int, window: int, stride: int) -> Tensor:
    last = max(size - window, 0)
    starts = list(range(0, last + 1, stride))
    return torch.tensor(starts if starts[-1] == last else [*starts, last])


def _squares(corners: Tensor, window: int, h: int, w: int) -> Tensor:
    """(r, h, w) masks, True inside the `window` square at each (top, left) corner."""
    ys, xs = torch.arange(h, device=corners.device), torch.arange(w, device=corners.device)
    rows = (ys >= corners[:, :1]) & (ys < corners[:, :1] + window)  # (r, h)
    cols = (xs >= corners[:, 1:]) & (xs < corners[:, 1:] + window)  # (r, w)
    return rows[:, :, None] & cols[:, None, :]


def _one(maps: Tensor, one: bool) -> Tensor:
    maps = maps.detach()
    return maps[0] if one else maps
