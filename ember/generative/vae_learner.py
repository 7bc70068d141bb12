"""`vae_learner` and `VAELearner`: a VAE trained on the ordinary Learner, with the latent interface of
`ember.generative` (`encode`, `decode`, `sample_z`, ...) and the course's one-item `predict`.

The data is images in [0, 1] (no Normalize) that are their own target, either a DataBlock
`DataBlock(blocks=(ImageBlock(cls=PILImageBW), ImageBlock(cls=PILImageBW)), get_y=lambda x: x, ...)`, or a
loader without targets (`has_targets=False`), for which the Learner hands the inputs to the loss.

>>> dblock = DataBlock(blocks=(ImageBlock(PILImageBW), ImageBlock(PILImageBW)), get_items=get_image_files,
...                    get_y=lambda x: x, splitter=GrandparentSplitter(valid_name="valid"))  # doctest: +SKIP
>>> learn = vae_learner(dblock.dataloaders(untar_data(URLs.MNIST5K)), "conv", latent_dim=16)  # doctest: +SKIP
>>> learn.fit(5, 1e-3)  # the table shows recon, kl and elbo in nats per image  # doctest: +SKIP
>>> learn.sample(16, seed=0).shape  # doctest: +SKIP
torch.Size([16, 1, 28, 28])
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ember.callbacks.core import Callback
from ember.callbacks.loss_metrics import LossMetrics
from ember.core.utils import listify
from ember.learner.contracts import CanMakeTestLoader, HasBlocks
from ember.learner.learner import Learner
from ember.metrics import Metric
from ember.vision.blocks import ImageBlock
from ember.vision.core import PILImage, PILImageBW

from .vae import VAE, conv_vae, mlp_vae
from .vae_loss import Recon, VAELoss

__all__ = ["VAELearner", "vae_learner"]

ENCODE_BS = 256  # images encoded per forward pass by `encode`


@contextlib.contextmanager
def _evaluating(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode without gradients for the block, then the model's mode as it was."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


class VAELearner(Learner):
    """A Learner whose model is a `VAE`, with the latent interface the latent tools and the sliders use.

    >>> learn = VAELearner(dls, mlp_vae(), loss_func=VAELoss(), cbs=LossMetrics())  # doctest: +SKIP
    >>> z = learn.encode(["three.png", "seven.png"]); learn.decode(z).shape  # doctest: +SKIP
    torch.Size([2, 1, 28, 28])
    """

    model: VAE

    # ---- the shared latent interface (see ember.generative) ----------------------------------------
    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    @property
    def img_shape(self) -> tuple[int, int, int]:
        """`(c, h, w)` of the images the VAE takes and makes (from the model, else from a batch)."""
        if self.model.img_shape is None:
            self.model.img_shape = tuple(self.dls.valid.one_batch()[0].shape[1:])
        return self.model.img_shape  # type: ignore[return-value]

    @property
    def img_size(self) -> tuple[int, int]:
        return self.img_shape[1], self.img_shape[2]

    @property
    def n_channels(self) -> int:
        return self.img_shape[0]

    def sample_z(self, n: int, seed: int | None = None) -> Tensor:
        """`(n, latent_dim)` draws from the prior N(0, I), on the CPU; the same seed gives the same z."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        return torch.randn(n, self.latent_dim, generator=gen)

    def decode(self, z: Tensor) -> Tensor:
        """Images `(n, c, h, w)` in [0, 1], on the CPU, from latent vectors `(n, latent_dim)` (or one)."""
        z = torch.as_tensor(z, dtype=torch.float32)
        z = z[None] if z.dim() == 1 else z
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(
                f"decode: z has shape {tuple(z.shape)}, but this VAE's latent size is {self.latent_dim}: "
                f"give z of shape (n, {self.latent_dim}) (learn.sample_z(n) makes some)"
            )
        with _evaluating(self.model):
            return self.model.decoder(z.to(self.dls.device)).float().cpu()

    def encode(self, items: Any) -> Tensor:
        """The posterior means `(n, latent_dim)`, on the CPU, of images: files, PIL images (through the
        data's validation transforms, so resized when those resize), or a tensor `(n, c, h, w)` or
        `(c, h, w)` of floats in [0, 1] (never resized).

        >>> learn.encode(torch.rand(4, 1, 28, 28)).shape  # doctest: +SKIP
        torch.Size([4, 16])
        """
        x = self._images(items)
        with _evaluating(self.model):
            mus = [self.model.encode(xb.to(self.dls.device))[0] for xb in x.split(ENCODE_BS)]
        return torch.cat(mus).float().cpu()

    # ---- what the course's notebooks call ---------------------------------------------------------
    def sample(self, n: int, seed: int | None = None) -> Tensor:
        """`n` new images `(n, c, h, w)` in [0, 1]: prior draws decoded."""
        return self.decode(self.sample_z(n, seed))

    def interpolate(self, a: Any, b: Any, steps: int = 8) -> Tensor:
        """`steps` images `(steps, c, h, w)` decoded along the straight line from `a` to `b` in latent
        space; `a` and `b` are latent vectors `(latent_dim,)` or images (files, PIL, `(c, h, w)` tensors).

        >>> learn.interpolate("three.png", "seven.png", steps=8).shape  # doctest: +SKIP
        torch.Size([8, 1, 28, 28])
        """
        za, zb = self._latent(a), self._latent(b)
        t = torch.linspace(0, 1, steps)[:, None]  # (steps, 1)
        return self.decode(za + t * (zb - za))

    def latent_traversal(self, dim: int, values: Tensor | None = None, z: Any = None) -> Tensor:
        """Images decoded with latent dimension `dim` set to each of `values` (default -3..3 in 7 steps)
        and the others held at `z` (a latent vector or an image; default the prior's mean, 0).

        >>> learn.latent_traversal(0, torch.linspace(-3, 3, 7)).shape  # doctest: +SKIP
        torch.Size([7, 1, 28, 28])
        """
        if not -self.latent_dim <= dim < self.latent_dim:
            raise IndexError(
                f"latent_traversal: dim={dim}, but the latent dimensions are 0..{self.latent_dim - 1}"
            )
        values = torch.linspace(-3, 3, 7) if values is None else torch.as_tensor(values, dtype=torch.float32)
        base = torch.zeros(self.latent_dim) if z is None else self._latent(z)
        zs = base.repeat(len(values), 1)  # (n_values, latent_dim)
        zs[:, dim] = values
        return self.decode(zs)

    def predict(self, item: Any) -> tuple[Image.Image, Tensor, Tensor]:
        """The reconstruction of one image (file, PIL image, `(c, h, w)` tensor): `(PIL image, floats
        (c, h, w) in [0, 1], mu (latent_dim,))`, decoded from the posterior's mean.

        >>> img, pixels, mu = learn.predict("three.png")  # doctest: +SKIP
        """
        x = self._images(item)[:1]
        with _evaluating(self.model):
            recon, mu, _ = self.model(x.to(self.dls.device))
        pixels = recon[0].float().cpu()
        return ImageBlock().decode(pixels), pixels, mu[0].float().cpu()

    # ---- items to tensors ----------------------------------------------------------------------------
    def _latent(self, a: Any) -> Tensor:
        """A latent vector `(latent_dim,)` as it is, or an image encoded."""
        if isinstance(a, Tensor) and a.dim() == 1:
            if len(a) != self.latent_dim:
                raise ValueError(
                    f"a latent vector of size {len(a)} was given, but this VAE's latent size is "
                    f"{self.latent_dim}; pass a vector of {self.latent_dim} values or an image"
                )
            return a.float().cpu()
        return self.encode(a)[0]

    def _images(self, items: Any) -> Tensor:
        """`(n, c, h, w)` floats in [0, 1] on the CPU, checked against the model's channels and size."""
        if isinstance(items, Tensor):
            x = items[None] if items.dim() == 3 else items
            x = x if x.is_floating_point() else x.float() / 255
            how = "tensors are not resized: resize the tensor first (F.interpolate)"
        else:
            items = list(items) if isinstance(items, list | tuple) else [items]
            x, how = self._read(items)
        if x.dim() != 4 or tuple(x.shape[1:]) != self.img_shape:
            c, h, w = self.img_shape
            raise ValueError(
                f"encode: got images of shape {tuple(x.shape)[1:]} (channels, height, width), but this VAE "
                f"takes {c} channel{'s' * (c > 1)} of {h}x{w}; {how}"
            )
        return x.cpu()

    def _read(self, items: list[Any]) -> tuple[Tensor, str]:
        """Files or PIL images through the data's validation transforms when the loaders can make a test
        loader (a DataBlock's can), else read as they are."""
        if isinstance(self.dls, CanMakeTestLoader) and isinstance(self.dls, HasBlocks):
            dl = self.dls.test_dl(items, with_getters=False)
            x = torch.cat([b[0].float().cpu() for b in dl])
            return (
                x,
                "they went through the data's validation transforms (add item_tfms=Resize(...) to resize)",
            )
        cls = PILImageBW if self.n_channels == 1 else PILImage
        arrays = [np.asarray(cls.create(i)) for i in items]  # (h, w) or (h, w, 3) uint8
        x = torch.stack(
            [torch.from_numpy(a.copy()).reshape(*a.shape[:2], -1).permute(2, 0, 1) for a in arrays]
        )
        return (
            x.float() / 255,
            "these loaders have no transforms, so images are not resized: resize them first",
        )


def _check_data(dls: Any) -> tuple[int, int, int]:
    """The images' `(c, h, w)`, after checking that the data is not normalised."""
    tfms = getattr(getattr(dls, "dblock", None), "batch_tfms", [])
    if any(type(t).__name__ == "Normalize" for t in tfms):
        raise ValueError(
            "vae_learner: the data is normalised (Normalize in the batch transforms), but a VAE's decoder "
            "outputs pixels in [0, 1] and its loss compares them with the input: build the DataBlock without "
            "Normalize"
        )
    xb = dls.train.one_batch()[0]
    if xb.dim() != 4:
        raise ValueError(
            f"vae_learner: the inputs have shape {tuple(xb.shape)}; expected images (bs, c, h, w)"
        )
    return tuple(xb.shape[1:])  # type: ignore[return-value]


def vae_learner(
    dls: Any,
    arch: Literal["conv", "mlp"] = "conv",
    latent_dim: int = 16,
    beta: float = 1.0,
    recon: Recon = "bernoulli",
    cbs: Callback | Sequence[Callback] | None = None,
    metrics: Metric | Callable | Sequence[Metric | Callable] | None = None,
    n_features: int = 32,
    hidden: int = 400,
    **kwargs: Any,
) -> VAELearner:
    """A `VAELearner` for `dls`' images (in [0, 1], their own target): `arch="conv"` is
    `conv_vae(n_features=...)`, `"mlp"` is `mlp_vae(hidden=...)`, the PyTorch examples' VAE. The loss is
    `VAELoss(recon, beta)` and `LossMetrics` is added, so the epoch table shows `recon`, `kl` and `elbo`
    in nats per image. `kwargs` go to the Learner (`lr`, `opt_func`, `path`, `wd`, ...).

    >>> learn = vae_learner(dls, "mlp", latent_dim=20)  # doctest: +SKIP
    >>> learn.fit(10, 1e-3, cbs=KLWarmup(n_epochs=2))  # doctest: +SKIP
    """
    c, h, w = _check_data(dls)
    if arch == "conv":
        model = conv_vae((h, w), c, latent_dim=latent_dim, n_features=n_features)
    elif arch == "mlp":
        model = mlp_vae(c * h * w, hidden=hidden, latent_dim=latent_dim, img_shape=(c, h, w))
    else:
        raise ValueError(
            f"vae_learner: arch={arch!r}; expected 'conv' or 'mlp' (or build a VAELearner yourself)"
        )
    cbs = listify(cbs)
    if not any(isinstance(cb, LossMetrics) for cb in cbs):
        cbs = [*cbs, LossMetrics()]
    learn = VAELearner(dls, model, loss_func=VAELoss(recon, beta), cbs=cbs, metrics=metrics, **kwargs)
    learn.model_config = {"type": "VAE", **model.to_config()}
    return learn
