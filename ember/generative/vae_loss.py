"""The VAE's loss, the negative evidence lower bound (ELBO), and `KLWarmup`, which schedules its beta.

Per image, in nats: reconstruction `-log p(x | z)` summed over pixels, plus `beta` times the KL divergence
of the encoder's Gaussian `q(z | x)` from the prior `N(0, I)`, summed over latent dimensions:
`KL = -0.5 * sum(1 + logvar - mu**2 - exp(logvar))`. Both are averaged over the batch. The reconstruction
is binary cross-entropy for `recon="bernoulli"` (pixels in [0, 1] read as Bernoulli probabilities, the
PyTorch examples' choice) or `0.5 * sum((x - recon)**2)` for `recon="gaussian"`: the negative
log-likelihood of a unit-variance Gaussian *without* its constant `0.5 * log(2 * pi)` per pixel.

`VAELoss` leaves `recon`, `kl` and `elbo` in `metrics`, so `LossMetrics` shows them in the epoch table.
`elbo` is `-(recon + kl)` with beta 1 whatever the training beta: the true bound, in nats per image
(higher is better).

>>> loss = VAELoss(beta=0.5)
>>> recon, mu, logvar = torch.rand(2, 1, 4, 4), torch.zeros(2, 3), torch.zeros(2, 3)
>>> float(loss((recon, mu, logvar), recon) - loss.metrics["recon"])  # KL of N(0, I) from itself
0.0
"""

from __future__ import annotations

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from ember.callbacks.core import Callback
from ember.callbacks.schedule import sched_lin
from ember.core.serial import register_config_type

__all__ = ["KLWarmup", "VAELoss", "vae_loss"]

Recon = Literal["bernoulli", "gaussian"]


def _recon_nats(recon: Tensor, target: Tensor, kind: Recon) -> Tensor:
    """`-log p(target | recon)` per image, summed over pixels: (bs,)."""
    if recon.shape != target.shape:
        raise ValueError(
            f"VAELoss: the reconstruction has shape {tuple(recon.shape)} but the target "
            f"{tuple(target.shape)}; the target must be the input image itself (get_y=lambda x: x, or a "
            "loader with has_targets=False)"
        )
    if kind == "bernoulli":
        per_pixel = F.binary_cross_entropy(recon, target, reduction="none")
    else:
        per_pixel = 0.5 * (recon - target) ** 2
    return per_pixel.flatten(1).sum(1)


def _kl_nats(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per image, summed over latent dimensions: (bs,)."""
    return -0.5 * (1 + logvar - mu**2 - logvar.exp()).flatten(1).sum(1)


def _check_recon(kind: str) -> None:
    if kind not in ("bernoulli", "gaussian"):
        raise ValueError(f"VAELoss: recon={kind!r}; expected 'bernoulli' (BCE) or 'gaussian' (squared error)")


def _check_unit_range(target: Tensor) -> None:
    lo, hi = (float(v) for v in target.aminmax())
    if lo < 0 or hi > 1:
        raise ValueError(
            f"VAELoss: the targets range over [{lo:.3g}, {hi:.3g}], but the Bernoulli reconstruction loss "
            "needs pixels in [0, 1]: build the DataBlock without Normalize (ImageBlock's IntToFloatTensor "
            "already gives [0, 1]), or use recon='gaussian'"
        )


def vae_loss(
    pred: tuple[Tensor, Tensor, Tensor], target: Tensor, recon: Recon = "bernoulli", beta: float = 1.0
) -> Tensor:
    """The negative ELBO (`beta=1`) of a VAE's `(recon, mu, logvar)` against `target`, in nats per image.

    >>> vae_loss((torch.full((1, 4), 0.5), torch.zeros(1, 2), torch.zeros(1, 2)), torch.ones(1, 4))
    tensor(2.7726)
    """
    _check_recon(recon)
    rec, mu, logvar = pred
    if recon == "bernoulli":
        _check_unit_range(target)
    return (_recon_nats(rec, target, recon) + beta * _kl_nats(mu, logvar)).mean()


class VAELoss(nn.Module):
    """`vae_loss` as a loss function object whose `beta` a callback can change (`KLWarmup`), with its
    parts in `metrics` for `LossMetrics`. The targets' range is checked on the first call only (a sync).

    >>> loss_func = VAELoss(beta=4.0)
    >>> learn = VAELearner(dls, conv_vae(28, 1), loss_func=loss_func, cbs=LossMetrics())  # doctest: +SKIP
    """

    metric_names = ["recon", "kl", "elbo"]

    def __init__(self, recon: Recon = "bernoulli", beta: float = 1.0) -> None:
        super().__init__()
        _check_recon(recon)
        self.recon, self.beta = recon, beta
        self.metrics: dict[str, Tensor] = {}
        self._checked = False

    def forward(self, pred: tuple[Tensor, Tensor, Tensor], target: Tensor) -> Tensor:
        rec, mu, logvar = pred
        if self.recon == "bernoulli" and not self._checked:
            _check_unit_range(target)
            self._checked = True
        rec_nats, kl_nats = _recon_nats(rec, target, self.recon).mean(), _kl_nats(mu, logvar).mean()
        total = rec_nats + kl_nats
        self.metrics = {"recon": rec_nats.detach(), "kl": kl_nats.detach(), "elbo": -total.detach()}
        return rec_nats + self.beta * kl_nats

    def to_config(self) -> dict[str, str | float]:
        return {"recon": self.recon, "beta": float(self.beta)}

    def extra_repr(self) -> str:
        return f"recon={self.recon!r}, beta={self.beta}"


class KLWarmup(Callback):
    """Raise `learn.loss_func.beta` linearly from `beta_start` to `beta_end` over the first `n_epochs`
    epochs (or the first `pct` of the fit), then hold it, so the decoder learns to use z before the KL
    term pulls the posteriors to the prior (Bowman et al. 2016). Set before every training batch from
    `learn.train_iter`, so each fit warms up again and a resumed fit goes on where it stopped; the values
    of the last fit are in `betas`, one per training batch.

    >>> learn.fit_one_cycle(10, 1e-3, cbs=KLWarmup(n_epochs=3))  # doctest: +SKIP
    """

    order = 60  # with the other schedules; any time before the loss is computed will do

    def __init__(
        self,
        n_epochs: float | None = None,
        pct: float | None = None,
        beta_end: float = 1.0,
        beta_start: float = 0.0,
    ) -> None:
        if (n_epochs is None) == (pct is None):
            raise ValueError(
                "KLWarmup: give the warm-up's length as n_epochs=... or as pct=... (one of them)"
            )
        self.n_epochs, self.pct, self.sched = n_epochs, pct, sched_lin(beta_start, beta_end)
        self.betas: list[float] = []

    def before_fit(self) -> None:
        if not hasattr(self.learn.loss_func, "beta"):
            raise TypeError(
                f"KLWarmup: the loss {type(self.learn.loss_func).__name__} has no `beta` to schedule; "
                "use VAELoss (vae_learner's loss)"
            )
        self.betas = []

    def before_batch(self) -> None:
        learn = self.learn
        if not learn.training:
            return
        n_epochs = self.n_epochs if self.n_epochs is not None else self.pct * learn.n_epoch
        n_warm = n_epochs * learn.n_iter  # training batches the warm-up lasts
        beta = self.sched(min(learn.train_iter / n_warm, 1.0) if n_warm > 0 else 1.0)
        learn.loss_func.beta = beta
        self.betas.append(beta)


register_config_type(VAELoss)
