"""Variational autoencoders (Kingma & Welling 2014): an encoder to a Gaussian over a latent z, a decoder
back to the image, and the two architectures `vae_learner` builds, `mlp_vae` and `conv_vae`.

The decoders end in a sigmoid: they output images in [0, 1] (the mean of a Bernoulli per pixel, or of a
Gaussian), which is what `VAELoss` compares with the target and what `learn.decode` shows.

>>> vae = mlp_vae(784, hidden=400, latent_dim=20)
>>> recon, mu, logvar = vae(torch.rand(8, 1, 28, 28))
>>> recon.shape, mu.shape
(torch.Size([8, 1, 28, 28]), torch.Size([8, 20]))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ember.core.serial import ConfigError, register_config_type
from ember.models.conv import ConvLayer

__all__ = ["VAE", "conv_vae", "mlp_vae"]


class VAE(nn.Module):
    """`encoder` maps images `(bs, ...)` to `(bs, 2 * latent_dim)` (mu then logvar) or to a pair
    `(mu, logvar)`; `decoder` maps `(bs, latent_dim)` back to images. `forward` returns
    `(recon, mu, logvar)`: in training z is sampled (the reparameterisation `mu + eps * exp(logvar / 2)`),
    in eval mode z is `mu`, so the output is deterministic.

    `img_shape` `(c, h, w)` is the decoder's output shape when known (the builders set it).

    >>> encoder = nn.Sequential(nn.Flatten(), nn.Linear(16, 4))
    >>> vae = VAE(encoder, nn.Sequential(nn.Linear(2, 16), nn.Sigmoid()), latent_dim=2)
    >>> [t.shape[-1] for t in vae.eval()(torch.rand(3, 1, 4, 4))]
    [16, 2, 2]
    """

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        latent_dim: int,
        img_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.encoder, self.decoder, self.latent_dim = encoder, decoder, latent_dim
        self.img_shape = tuple(img_shape) if img_shape is not None else None
        # How to rebuild this model from JSON (an export): set by mlp_vae and conv_vae, None for your own.
        self.recipe: dict[str, Any] | None = None

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The posterior's mean and log-variance, each `(bs, latent_dim)`."""
        h = self.encoder(x)
        mu, logvar = h if isinstance(h, tuple | list) else h.chunk(2, dim=1)
        if mu.shape[-1] != self.latent_dim or logvar.shape != mu.shape:
            got = tuple(h.shape) if isinstance(h, Tensor) else (tuple(mu.shape), tuple(logvar.shape))
            raise ValueError(
                f"VAE: the encoder returned {got}, but a VAE with latent_dim={self.latent_dim} needs "
                f"(bs, {2 * self.latent_dim}) (mu then logvar) or a pair of (bs, {self.latent_dim}); make "
                f"the encoder's last layer output {2 * self.latent_dim} features"
            )
        return mu, logvar

    def reparameterize(self, mu: Tensor, logvar: Tensor) -> Tensor:
        """A sample of N(mu, exp(logvar)) that gradients flow through: `mu + eps * std`."""
        return mu + torch.randn_like(mu) * (0.5 * logvar).exp()

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar) if self.training else mu  # (bs, latent_dim)
        return self.decoder(z), mu, logvar

    def to_config(self) -> dict[str, Any]:
        if self.recipe is None:
            raise ConfigError(
                "VAE: this model was built from your own encoder and decoder, which an export file cannot "
                "describe; build it with mlp_vae or conv_vae, or save its weights with learn.save()"
            )
        return dict(self.recipe)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> VAE:
        builders = {"mlp": mlp_vae, "conv": conv_vae}
        kwargs = dict(cfg)
        arch = kwargs.pop("arch", None)
        if arch not in builders:
            raise ConfigError(
                f"VAE: unknown arch {arch!r} in the description; expected one of {list(builders)}"
            )
        return builders[arch](**kwargs)


def _mlp_shape(n_in: int, img_shape: Sequence[int] | None) -> tuple[int, int, int]:
    if img_shape is None:
        side = math.isqrt(n_in)
        if side * side != n_in:
            raise ValueError(
                f"mlp_vae: n_in={n_in} is not a square grey image's pixel count; pass img_shape=(c, h, w)"
            )
        return (1, side, side)
    c, h, w = img_shape
    if c * h * w != n_in:
        raise ValueError(f"mlp_vae: img_shape={tuple(img_shape)} holds {c * h * w} values, not n_in={n_in}")
    return (c, h, w)


def mlp_vae(
    n_in: int = 784, hidden: int = 400, latent_dim: int = 20, img_shape: Sequence[int] | None = None
) -> VAE:
    """The PyTorch examples' VAE: the image flattened, `n_in -> hidden` (ReLU) `-> 2 * latent_dim`, and
    back `latent_dim -> hidden` (ReLU) `-> n_in`, a sigmoid, reshaped to `img_shape` (default: a square
    grey image, `(1, 28, 28)` for 784).

    >>> mlp_vae()(torch.rand(2, 1, 28, 28))[0].shape
    torch.Size([2, 1, 28, 28])
    """
    shape = _mlp_shape(n_in, img_shape)
    encoder = nn.Sequential(
        nn.Flatten(), nn.Linear(n_in, hidden), nn.ReLU(), nn.Linear(hidden, 2 * latent_dim)
    )
    decoder = nn.Sequential(
        nn.Linear(latent_dim, hidden),
        nn.ReLU(),
        nn.Linear(hidden, n_in),
        nn.Sigmoid(),
        nn.Unflatten(1, shape),
    )
    vae = VAE(encoder, decoder, latent_dim, shape)
    vae.recipe = {
        "arch": "mlp",
        "n_in": n_in,
        "hidden": hidden,
        "latent_dim": latent_dim,
        "img_shape": list(shape),
    }
    return vae


def _check_size(img_size: int | Sequence[int]) -> tuple[int, int]:
    h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    if h % 4 or w % 4 or h < 4 or w < 4:
        raise ValueError(
            f"conv_vae: img_size={h}x{w}, but its height and width must be multiples of 4 (two stride-2 "
            "convs halve the image twice and two transposed convs double it back): resize the images, e.g. "
            f"item_tfms=Resize({max(4, 4 * round(h / 4))})"
        )
    return h, w


def conv_vae(
    img_size: int | Sequence[int], n_channels: int = 1, latent_dim: int = 16, n_features: int = 32
) -> VAE:
    """A convolutional VAE for images whose sides are multiples of 4 (28 for MNIST): two stride-2
    conv + BatchNorm + ReLU layers (`n_features`, then twice as many channels at 1/4 size) and a linear
    layer to mu and logvar; back, a linear layer and two stride-2 transposed convs, then a sigmoid.

    >>> conv_vae(28, 1, latent_dim=4, n_features=8)(torch.rand(2, 1, 28, 28))[0].shape
    torch.Size([2, 1, 28, 28])
    """
    h, w = _check_size(img_size)
    nf, small = n_features, (2 * n_features, h // 4, w // 4)
    n_flat = math.prod(small)
    encoder = nn.Sequential(
        ConvLayer(n_channels, nf, ks=4, stride=2, padding=1),  # (bs, nf, h/2, w/2)
        ConvLayer(nf, 2 * nf, ks=4, stride=2, padding=1),  # (bs, 2nf, h/4, w/4)
        nn.Flatten(),
        nn.Linear(n_flat, 2 * latent_dim),
    )
    decoder = nn.Sequential(
        nn.Linear(latent_dim, n_flat),
        nn.ReLU(),
        nn.Unflatten(1, small),  # (bs, 2nf, h/4, w/4)
        ConvLayer(2 * nf, nf, ks=4, stride=2, padding=1, transpose=True),  # (bs, nf, h/2, w/2)
        ConvLayer(nf, n_channels, ks=4, stride=2, padding=1, transpose=True, norm_type=None, act_cls=None),
        nn.Sigmoid(),  # (bs, c, h, w) in [0, 1]
    )
    vae = VAE(encoder, decoder, latent_dim, (n_channels, h, w))
    vae.recipe = {"arch": "conv", "img_size": [h, w], "n_channels": n_channels, "latent_dim": latent_dim,
                  "n_features": n_features}  # fmt: skip
    return vae


register_config_type(VAE)
