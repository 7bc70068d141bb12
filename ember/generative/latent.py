"""Directions in a latent space worth a slider: the principal components of the latent codes.

`latent_directions` works for any learner with the latent interface of `ember.generative` (a
`VAELearner`, a GAN learner, your own):

- with `learn.encode` (a VAE): PCA of the encoded data, `items` or the first `n` training images; the
  directions are where the real data varies most, as the autoencoder face editors do.
- without it (a GAN): GANSpace's recipe (Harkonen et al. 2020). `n` latent vectors are sampled with a
  fixed seed (0, so the same model gives the same directions), pushed through the generator's first
  layer (`learn.latent_features(z) -> (n, f)` when the learner offers it, else the generated images
  themselves), PCA finds the main directions of those features, and a least-squares regression of z on
  the PCA coordinates carries each direction back to z space.

When the latent space has `k` dimensions or fewer, its raw axes are the directions (sigma 1).

>>> dirs = latent_directions(learn, k=8)  # doctest: +SKIP
>>> two_sigmas = dirs.to_z(torch.tensor([2.0, 0, 0, 0, 0, 0, 0, 0]))  # along the first  # doctest: +SKIP
>>> learn.decode(two_sigmas)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = ["LatentDirections", "latent_directions"]

GAN_SEED = 0  # the seed of the latent vectors sampled for a model that cannot encode
EXACT_SVD_MAX = 1024  # above this many features (and items) PCA is randomised (torch.pca_lowrank)


@dataclass
class LatentDirections:
    """`k` directions in a latent space of `d` dimensions: `directions` `(k, d)` unit rows, `sigmas`
    `(k,)` the data's standard deviation along each, `mean` `(d,)` where they start, and `explained`
    `(k,)` the share of the variance each accounts for (equal shares for raw axes, which are not measured).

    >>> dirs = LatentDirections(torch.eye(2), torch.ones(2), torch.zeros(2), torch.full((2,), 0.5))
    >>> dirs.to_z(torch.tensor([[3.0, 0.0]]))
    tensor([[3., 0.]])
    """

    directions: Tensor
    sigmas: Tensor
    mean: Tensor
    explained: Tensor

    def to_z(self, values: Tensor) -> Tensor:
        """Latent vectors `(n, d)` from slider values `(n, k)` in sigma units: `mean + sum_i v_i s_i d_i`."""
        values = torch.as_tensor(values, dtype=torch.float32)
        values = values[None] if values.dim() == 1 else values
        return self.mean + (values * self.sigmas) @ self.directions

    def to_dict(self) -> dict[str, list]:
        """Plain lists, for JSON (the sliders page's `GET /directions`)."""
        return {k: v.tolist() for k, v in vars(self).items()}


def _pca(x: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The top `k` principal axes of the rows of `x` `(n, f)`: `(axes (k, f) unit rows, stds (k,), mean (f,),
    explained variance ratios (k,))`. Each axis's largest entry is made positive, so the signs are stable."""
    n, f = x.shape
    if n < 2 or k > min(n, f):
        raise ValueError(
            f"latent_directions: {k} directions need at least {k} items and {k} features; got {n}x{f}"
        )
    x = x.double()
    mean = x.mean(0)
    xc = x - mean
    if min(n, f) <= EXACT_SVD_MAX:
        _, s, vh = torch.linalg.svd(xc, full_matrices=False)
    else:
        with torch.random.fork_rng():  # pca_lowrank draws a random basis: seed it, leave the global RNG be
            torch.manual_seed(0)
            _, s, v = torch.pca_lowrank(xc, q=min(k + 10, n, f), center=False, niter=6)
        vh = v.T
    s, vh = s[:k], vh[:k]
    vh = vh * vh.gather(1, vh.abs().argmax(1, keepdim=True)).sign()
    var = s**2 / (n - 1)
    total = xc.pow(2).sum() / (n - 1)
    return vh.float(), var.sqrt().float(), mean.float(), (var / total).float()


def _training_images(learn: Any, n: int) -> Tensor:
    """Up to `n` input images `(n, c, h, w)` from the training loader."""
    xs, have = [], 0
    for batch in learn.dls.train:
        xs.append(batch[0].cpu())
        have += len(batch[0])
        if have >= n:
            break
    if not xs:
        raise ValueError("latent_directions: the training loader yields no batch; pass items=...")
    return torch.cat(xs)[:n]


def _raw_axes(d: int) -> LatentDirections:
    return LatentDirections(torch.eye(d), torch.ones(d), torch.zeros(d), torch.full((d,), 1.0 / d))


def _from_codes(z: Tensor, k: int) -> LatentDirections:
    """PCA of latent codes `(n, d)` (a VAE's posterior means)."""
    axes, sigmas, mean, explained = _pca(z, k)
    return LatentDirections(axes, sigmas, mean, explained)


def _from_features(z: Tensor, feats: Tensor, k: int) -> LatentDirections:
    """GANSpace: PCA of the features `(n, f)` of the sampled `z` `(n, d)`, each axis carried back to z
    space by regressing z on the PCA coordinates: `z ~ coords @ U`, `U` `(k, d)`."""
    axes, _, fmean, explained = _pca(feats, k)
    coords = (feats.float() - fmean) @ axes.T  # (n, k)
    zc = z - z.mean(0)
    u = torch.linalg.lstsq(coords.double(), zc.double()).solution.float()  # (k, d)
    dirs = u / u.norm(dim=1, keepdim=True).clamp_min(1e-12)
    sigmas = (zc @ dirs.T).std(0)  # ~1 for N(0, I) samples: sliders in z's own units
    return LatentDirections(dirs, sigmas, torch.zeros(z.shape[1]), explained)


def latent_directions(
    learn: Any,
    k: int = 8,
    n: int = 2000,
    items: Any = None,
    features: Callable[[Tensor], Tensor] | None = None,
) -> LatentDirections:
    """The `k` main directions of `learn`'s latent space (see the module): PCA of the encoded `items`
    (or `n` training images) when the learner can encode, else GANSpace on `n` sampled vectors, with
    `features(z) -> (n, f)` (default `learn.latent_features`, else the decoded images) as the space
    the PCA runs in. Raw axes (identity, sigma 1) when `learn.latent_dim <= k`.

    >>> dirs = latent_directions(learn, k=4); dirs.directions.shape  # doctest: +SKIP
    torch.Size([4, 16])
    """
    d = learn.latent_dim
    if d <= k:
        return _raw_axes(d)
    if hasattr(learn, "encode") and features is None:
        x = items if items is not None else _training_images(learn, n)
        return _from_codes(learn.encode(x), k)
    z = learn.sample_z(n, seed=GAN_SEED)  # (n, d)
    if features is None:
        features = getattr(learn, "latent_features", None) or (lambda z: learn.decode(z))
    with torch.no_grad():
        feats = features(z).flatten(1).float().cpu()  # (n, f)
    return _from_features(z, feats, k)
