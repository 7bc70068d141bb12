"""Loss landscapes (Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets"): the loss around the
trained weights along filter-normalised random directions, and along the line between two checkpoints.

>>> surface = loss_landscape(learn, kind="2d", steps=21)  # doctest: +SKIP
>>> fig = plot_loss_landscape(surface)  # contour plot, and the slice through the centre  # doctest: +SKIP
>>> line = interpolate_loss(learn, initial_state, learn.model.state_dict())  # doctest: +SKIP

A direction has one random tensor per weight, each filter of it (a conv's output channel, a linear
layer's row) rescaled to the norm of the same filter of the weight, so that directions mean the same in
every layer whatever its scale; biases and normalisation parameters (1-d tensors) get no direction.
The loss is `learn.loss_func`, in eval mode, averaged over `n_batches` batches drawn once (the training
set's by default, as the paper). The model's weights are the learner's own, changed in place and put back
exactly when the function returns or fails.

Skip connections smooth the landscape (the paper's figure 5, in small). On `builtin_data("mnist5k")`
(2,000 training digits, bs 64), a CNN of 19 3x3 convs (a stem, then 9 blocks of two convs with BatchNorm,
widths 8/16/32) against the same network with a skip around each block (a ResNet-20), both trained alike:

>>> for skip in (False, True):  # doctest: +SKIP
...     learn = Learner(dls, cnn19(skip), loss_func=CrossEntropyLossFlat(), metrics=accuracy)
...     learn.fit_one_cycle(3, 1e-2)
...     surface = loss_landscape(learn, kind="2d", steps=13, n_batches=2)
...     plot_loss_landscape(surface, log=True)

| network | accuracy | loss at the centre | mean loss at radius 0.5 | inner points curving down |
|---------|----------|--------------------|-------------------------|---------------------------|
| plain   | 0.824    | 0.318              | 2.02                    | 27.3%                     |
| skips   | 0.954    | 0.091              | 7.02                    | 7.4%                      |

(the last column: grid points whose discrete Laplacian is negative, where the surface is not convex).
The plain network's contours are ragged, with shoulders and plateaus; the ResNet's are nested ovals around
one basin, which is steeper: its loss rises faster away from the trained weights.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from ember.learner.learner import Learner

__all__ = [
    "LossLandscape",
    "filter_normalized_direction",
    "interpolate_loss",
    "loss_landscape",
    "plot_loss_landscape",
]


@dataclass
class LossLandscape:
    """Losses on a grid: `losses[i]` at `alphas[i]` (1-d and interpolation), `losses[i, j]` at
    `(alphas[i], betas[j])` (2-d). Coordinate 0 is the trained weights (`state_a` for an interpolation,
    whose coordinate 1 is `state_b`)."""

    alphas: Tensor  # (steps,)
    betas: Tensor | None  # (steps,) for "2d", else None
    losses: Tensor  # (steps,) or (steps, steps)
    kind: str  # "1d", "2d" or "interpolation"

    @property
    def center(self) -> float:
        """The loss at coordinate 0 (the nearest grid point)."""
        i = int(self.alphas.abs().argmin())
        return float(self.losses[i] if self.betas is None else self.losses[i, int(self.betas.abs().argmin())])


def _filter_dim(module: nn.Module) -> int:
    # A transposed conv stores its weight (in, out, ...): its filters (output channels) are dim 1.
    return 1 if isinstance(module, nn.ConvTranspose1d | nn.ConvTranspose2d | nn.ConvTranspose3d) else 0


def filter_normalized_direction(
    model: nn.Module, generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """A random direction in `model`'s parameter space, by name: Gaussian noise for every weight of 2 or
    more dims, each filter (slice along the output channels) scaled to the norm of the weight's filter;
    zeros for 1-d parameters (biases, BatchNorm's scale and shift).

    >>> d = filter_normalized_direction(nn.Linear(3, 2), torch.Generator().manual_seed(0))
    >>> d["weight"].norm(dim=1).shape, d["bias"].abs().sum().item()
    (torch.Size([2]), 0.0)
    """
    dims = {f"{mname}.{pname}".lstrip("."): _filter_dim(m) for mname, m in model.named_modules()
            for pname, _ in m.named_parameters(recurse=False)}  # fmt: skip
    out = {}
    for name, p in model.named_parameters():
        if p.dim() <= 1:
            out[name] = torch.zeros_like(p)
            continue
        d = torch.randn(p.shape, generator=generator, dtype=torch.float32).to(p)
        dim = dims.get(name, 0)
        others = [i for i in range(p.dim()) if i != dim]
        ratio = torch.linalg.vector_norm(p.detach(), dim=others, keepdim=True)
        ratio = ratio / torch.linalg.vector_norm(d, dim=others, keepdim=True).clamp_min(1e-10)
        out[name] = d * ratio
    return out


@contextlib.contextmanager
def _weights_restored(model: nn.Module) -> Iterator[dict[str, Tensor]]:
    """Yields a copy of `model`'s state; however the block ends, the model gets exactly that state back."""
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    training = model.training
    try:
        yield saved
    finally:
        with torch.no_grad():
            for k, v in model.state_dict().items():
                v.copy_(saved[k])
        model.train(training)


def _batches(learn: Learner, ds_idx: int, n_batches: int, seed: int) -> list[tuple[tuple, tuple]]:
    """The first `n_batches` batches of split `ds_idx` as (inputs, targets), in the order `seed` shuffles."""
    dl = learn.dls[ds_idx]
    n_inp = getattr(dl, "n_inp", 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        batches = list(itertools.islice(iter(dl), n_batches))
    if not batches:
        raise ValueError(f"loss landscape: split {ds_idx} of the data has no batches")
    return [(tuple(b[:n_inp]), tuple(b[n_inp:])) for b in batches]


def _mean_loss(learn: Learner, batches: list[tuple[tuple, tuple]]) -> float:
    total, count = 0.0, 0
    for xb, yb in batches:
        bs = len(yb[0]) if yb else len(xb[0])
        total += float(learn.loss_func(learn.model(*xb), *yb)) * bs
        count += bs
    return total / count


def _set_params(
    model: nn.Module, base: Mapping[str, Tensor], moves: list[tuple[float, dict[str, Tensor]]]
) -> None:
    """Each parameter := its value in `base` + sum of coefficient * direction."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            new = base[name].clone()
            for coef, d in moves:
                new.add_(d[name], alpha=coef)
            p.copy_(new)


def loss_landscape(
    learn: Learner,
    kind: Literal["1d", "2d"] = "1d",
    steps: int = 21,
    span: float = 1.0,
    n_batches: int = 4,
    seed: int = 0,
    ds_idx: int = 0,
) -> LossLandscape:
    """The loss at `learn`'s weights + a * d1 (+ b * d2 for "2d"), a and b on `steps` points from -`span`
    to `span`, d1 and d2 filter-normalised random directions (`filter_normalized_direction`, drawn with
    `seed`). The loss is averaged over `n_batches` batches of split `ds_idx` (0: training), the same
    batches at every point. The weights are restored exactly afterwards, also after an error.

    >>> surface = loss_landscape(learn, kind="2d", steps=21)  # doctest: +SKIP
    >>> surface.losses.shape, surface.center  # doctest: +SKIP
    (torch.Size([21, 21]), 0.071)
    """
    if kind not in ("1d", "2d"):
        raise ValueError(f"loss_landscape: kind={kind!r}; expected '1d' or '2d'")
    if steps < 2:
        raise ValueError(f"loss_landscape: steps={steps}; at least 2 points are needed")
    model, batches = learn.model, _batches(learn, ds_idx, n_batches, seed)
    g = torch.Generator().manual_seed(seed)
    d1 = filter_normalized_direction(model, g)
    d2 = filter_normalized_direction(model, g) if kind == "2d" else None
    # symmetric about 0, and exactly 0 in the middle when `steps` is odd (linspace gives -3e-8 there)
    coords = span * (2 * torch.arange(steps, dtype=torch.float32) - (steps - 1)) / (steps - 1)
    losses = torch.zeros(steps, steps) if d2 is not None else torch.zeros(steps)
    with _weights_restored(model) as base, torch.no_grad():
        model.eval()
        for i, a in enumerate(coords.tolist()):
            for j, b in enumerate(coords.tolist() if d2 is not None else [None]):
                _set_params(model, base, [(a, d1)] + ([(b, d2)] if d2 is not None else []))
                loss = _mean_loss(learn, batches)
                if d2 is not None:
                    losses[i, j] = loss
                else:
                    losses[i] = loss
    return LossLandscape(coords, coords.clone() if d2 is not None else None, losses, kind)


def interpolate_loss(
    learn: Learner,
    state_a: Mapping[str, Tensor],
    state_b: Mapping[str, Tensor],
    steps: int = 21,
    span: tuple[float, float] = (-0.5, 1.5),
    n_batches: int = 4,
    seed: int = 0,
    ds_idx: int = 0,
) -> LossLandscape:
    """The loss along the line from `state_a` (coordinate 0) to `state_b` (1), two state dicts of
    `learn.model` (e.g. its initial and trained weights), on `steps` points over `span`: every floating
    entry (weights and BatchNorm statistics) is `(1 - t) * a + t * b`. Batches and restoring as in
    `loss_landscape`.

    >>> init = {k: v.clone() for k, v in learn.model.state_dict().items()}; learn.fit(3)  # doctest: +SKIP
    >>> line = interpolate_loss(learn, init, learn.model.state_dict())  # doctest: +SKIP
    """
    model, batches = learn.model, _batches(learn, ds_idx, n_batches, seed)
    missing = sorted(set(model.state_dict()) - set(state_a) | set(model.state_dict()) - set(state_b))
    if missing:
        raise KeyError(f"interpolate_loss: the states lack entries of the model: {missing[:5]}")
    coords = torch.linspace(span[0], span[1], steps)
    losses = torch.zeros(steps)
    with _weights_restored(model) as saved, torch.no_grad():
        # copies: `state_b` may be the model's own live `state_dict()`, which the loop overwrites
        a = {k: state_a[k].detach().to(v, copy=True) for k, v in saved.items()}
        b = {k: state_b[k].detach().to(v, copy=True) for k, v in saved.items()}
        model.eval()
        for i, t in enumerate(coords.tolist()):
            for k, v in model.state_dict().items():
                v.copy_(torch.lerp(a[k], b[k], t) if v.is_floating_point() else a[k])
            losses[i] = _mean_loss(learn, batches)
    return LossLandscape(coords, None, losses, "interpolation")


def plot_loss_landscape(landscape: LossLandscape, levels: int = 20, log: bool = False, figsize: Any = None):
    """A 2-d landscape as a contour plot beside its slice through the centre (b = 0); a 1-d one or an
    interpolation as a line. `log` plots log10 of the loss. Returns the matplotlib figure.

    >>> fig = plot_loss_landscape(loss_landscape(learn, kind="2d"))  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    z = landscape.losses.log10() if log else landscape.losses
    label = "log10 loss" if log else "loss"
    a = landscape.alphas.numpy()
    if landscape.betas is None:
        fig, ax = plt.subplots(figsize=figsize or (5, 4))
        _line(ax, a, z.numpy(), landscape.kind, label)
        return fig
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=figsize or (10, 4))
    b = landscape.betas.numpy()
    cs = ax.contour(a, b, z.T.numpy(), levels=levels, cmap="viridis")  # contour wants z[y, x]
    ax.clabel(cs, fontsize="x-small")
    ax.plot([0], [0], "r+", markersize=12)
    ax.set(xlabel="direction 1", ylabel="direction 2", title=f"{label}, filter-normalised directions")
    ax.set_aspect("equal")
    _line(ax2, a, z[:, int(landscape.betas.abs().argmin())].numpy(), "1d", label)
    ax2.set_title("slice through the centre (direction 2 = 0)")
    fig.tight_layout()
    return fig


def _line(ax: Any, x: Any, y: Any, kind: str, label: str) -> None:
    ax.plot(x, y, "o-", markersize=3)
    if kind == "interpolation":
        ax.axvline(0, color="grey", lw=0.5)
        ax.axvline(1, color="grey", lw=0.5)
        ax.set(xlabel="t: (1 - t) * state_a + t * state_b", ylabel=label, title="linear interpolation")
    else:
        ax.axvline(0, color="grey", lw=0.5)
        ax.set(xlabel="step along a filter-normalised direction", ylabel=label, title="1-d slice")
