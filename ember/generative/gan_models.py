"""The course's GAN networks: a DCGAN generator and critic, the super-resolution critic, the noise that
feeds a generator, and `GANModule`, which holds a generator and a critic as one model.

>>> g, c = basic_generator(32, 1, in_sz=100), basic_critic(32, 1)
>>> c(g(torch.randn(4, 100))).shape
torch.Size([4])
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ember.core.serial import ConfigError, register_config_type
from ember.models.conv import ConvLayer, MergeLayer, NormType, SelfAttention

__all__ = ["GANModule", "basic_critic", "basic_generator", "gan_critic", "generate_noise"]


class _LeakyReLU(nn.LeakyReLU):
    """LeakyReLU with DCGAN's slope 0.2, as a class: `ConvLayer` takes an activation class."""

    def __init__(self) -> None:
        super().__init__(0.2, inplace=True)


def _check_size(size: int, what: str, fn: str) -> None:
    if size < 8 or size & (size - 1):
        raise ValueError(
            f"{fn}: {what}={size}, but DCGAN networks halve or double the image at each layer, so it must "
            "be a power of two of at least 8 (8, 16, 32, 64, ...). Resize the data to one, e.g. MNIST's "
            "28 px digits with item_tfms=Resize(32)"
        )


def generate_noise(fn: Any, size: int = 100) -> Tensor:
    """Standard-normal noise `(size,)`, whatever the item: the course's `get_x` of a GAN's DataBlock.

    `GANLearner` draws new noise of this size for every training batch (the loaders cache items, which
    would give each image the same noise every epoch), so only the size matters.

    >>> generate_noise("img.png", size=8).shape
    torch.Size([8])
    """
    return torch.randn(size)


class BasicGenerator(nn.Sequential):
    """DCGAN's generator: noise `(bs, in_sz)` -> images `(bs, n_channels, out_size, out_size)` in [-1, 1]."""

    def __init__(self, out_size: int, n_channels: int, in_sz: int, n_features: int, n_extra_layers: int,
                 **kwargs: Any) -> None:  # fmt: skip
        _check_size(out_size, "out_size", "basic_generator")
        self.in_sz, self.out_size, self.n_channels = in_sz, out_size, n_channels
        # Channels halve as the image doubles from 4 px; the last layer makes n_channels at out_size.
        ftrs = n_features * out_size // 8  # at 4 px: (bs, ftrs, 4, 4)
        layers: list[nn.Module] = [
            nn.Unflatten(1, (in_sz, 1, 1)),  # (bs, in_sz) -> (bs, in_sz, 1, 1)
            ConvLayer(in_sz, ftrs, 4, 1, transpose=True, **kwargs),  # (bs, ftrs, 4, 4)
        ]
        for _ in range(out_size.bit_length() - 4):  # 4 px -> out_size / 2
            layers.append(ConvLayer(ftrs, ftrs // 2, 4, 2, padding=1, transpose=True, **kwargs))
            ftrs //= 2
        layers += [ConvLayer(ftrs, ftrs, 3, 1, padding=1, transpose=True, **kwargs)
                   for _ in range(n_extra_layers)]  # fmt: skip
        layers += [nn.ConvTranspose2d(ftrs, n_channels, 4, 2, 1, bias=False), nn.Tanh()]
        super().__init__(*layers)
        self._config = dict(out_size=out_size, n_channels=n_channels, in_sz=in_sz, n_features=n_features,
                            n_extra_layers=n_extra_layers)  # fmt: skip
        self._kwargs = kwargs

    def to_config(self) -> dict[str, Any]:
        """The arguments that rebuild it (for an export): `basic_generator`'s, without `ConvLayer` options."""
        return _config(self, "basic_generator")


def basic_generator(
    out_size: int, n_channels: int, in_sz: int = 100, n_features: int = 64, n_extra_layers: int = 0,
    **kwargs: Any,
) -> BasicGenerator:  # fmt: skip
    """A DCGAN generator: transposed convolutions from noise `(bs, in_sz)` up to images `(bs, n_channels,
    out_size, out_size)`, tanh output in [-1, 1] (data normalised with mean 0.5, std 0.5 has that range).
    `out_size` is a power of two >= 8; `kwargs` go to each `ConvLayer` (`norm_type`, `act_cls`).

    >>> basic_generator(16, 1, in_sz=8, n_features=8)(torch.randn(2, 8)).shape
    torch.Size([2, 1, 16, 16])
    """
    return BasicGenerator(out_size, n_channels, in_sz, n_features, n_extra_layers, **kwargs)


class BasicCritic(nn.Sequential):
    """DCGAN's critic: images `(bs, n_channels, in_size, in_size)` -> one logit per image `(bs,)`."""

    def __init__(self, in_size: int, n_channels: int, n_features: int, n_extra_layers: int,
                 norm_type: NormType | None, **kwargs: Any) -> None:  # fmt: skip
        _check_size(in_size, "in_size", "basic_critic")
        self.in_size, self.n_channels = in_size, n_channels
        kwargs.setdefault("act_cls", _LeakyReLU)
        layers: list[nn.Module] = [
            ConvLayer(n_channels, n_features, 4, 2, padding=1, norm_type=None, **kwargs)
        ]
        size, ftrs = in_size // 2, n_features  # (bs, n_features, in_size / 2, in_size / 2)
        layers += [ConvLayer(ftrs, ftrs, 3, 1, norm_type=norm_type, **kwargs) for _ in range(n_extra_layers)]
        while size > 4:
            layers.append(ConvLayer(ftrs, ftrs * 2, 4, 2, padding=1, norm_type=norm_type, **kwargs))
            size, ftrs = size // 2, ftrs * 2
        # A 4x4 convolution without padding turns the (bs, ftrs, 4, 4) map into one logit per image.
        layers += [nn.Conv2d(ftrs, 1, 4, padding=0), nn.Flatten(0)]
        super().__init__(*layers)
        norm = None if norm_type is None else norm_type.name
        self._config = dict(in_size=in_size, n_channels=n_channels, n_features=n_features,
                            n_extra_layers=n_extra_layers, norm_type=norm)  # fmt: skip
        self._kwargs = kwargs

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> BasicCritic:
        norm = cfg["norm_type"]
        return cls(**(cfg | {"norm_type": None if norm is None else NormType[norm]}))

    def to_config(self) -> dict[str, Any]:
        """The arguments that rebuild it (for an export): `basic_critic`'s, without `ConvLayer` options."""
        return _config(self, "basic_critic")


def basic_critic(
    in_size: int, n_channels: int, n_features: int = 64, n_extra_layers: int = 0,
    norm_type: NormType | None = NormType.Batch, **kwargs: Any,
) -> BasicCritic:  # fmt: skip
    """A DCGAN critic: strided convolutions (LeakyReLU 0.2) from images `(bs, n_channels, in_size, in_size)`
    down to one logit per image, `(bs,)`. `in_size` is a power of two >= 8. For the gradient penalty
    (`GANLearner.wgan_gp`) use `norm_type=NormType.Instance` or None: batch norm mixes the images of a
    batch, and the penalty is on each image's gradient.

    >>> basic_critic(16, 1, n_features=8)(torch.randn(2, 1, 16, 16)).shape
    torch.Size([2])
    """
    return BasicCritic(in_size, n_channels, n_features, n_extra_layers, norm_type, **kwargs)


def _config(net: BasicGenerator | BasicCritic, fn: str) -> dict[str, Any]:
    extra = {k: v for k, v in net._kwargs.items() if k != "act_cls" or v is not _LeakyReLU}
    if extra:
        raise ConfigError(
            f"{fn} was given ConvLayer options {sorted(extra)}, which an export file cannot describe; build "
            "it without them to export it, or save the weights with learn.save()"
        )
    return dict(net._config)


def _sn_conv(ni: int, nf: int, ks: int = 3, stride: int = 1, **kwargs: Any) -> ConvLayer:
    """A spectral-normalised conv with LeakyReLU 0.2: the super-resolution critic's building block."""
    return ConvLayer(ni, nf, ks, stride, norm_type=NormType.Spectral, act_cls=_LeakyReLU, **kwargs)


class _DenseResBlock(nn.Module):
    """Two 3x3 convs whose output is concatenated with the input: `(bs, nf, h, w) -> (bs, 2 nf, h, w)`."""

    def __init__(self, nf: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(_sn_conv(nf, nf), _sn_conv(nf, nf))
        self.merge = MergeLayer(dense=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.merge(self.convs(x), x)


def gan_critic(n_channels: int = 3, nf: int = 128, n_blocks: int = 3, p: float = 0.15) -> nn.Sequential:
    """The super-resolution GAN's critic: spectral-normalised convs (LeakyReLU 0.2), dropout `p`, a dense
    residual block, `n_blocks` stride-2 convs (self-attention after the first), then a 4x4 conv to a grid
    of logits, flattened: `(bs, n_channels, s, s) -> (bs, (s / 2**(n_blocks + 1) - 3)**2)`. The image must
    be at least `4 * 2**(n_blocks + 1)` px. Train it with `AdaptiveLoss(nn.BCEWithLogitsLoss())`.

    >>> gan_critic(1, nf=8, n_blocks=1)(torch.randn(2, 1, 32, 32)).shape
    torch.Size([2, 25])
    """
    layers: list[nn.Module] = [_sn_conv(n_channels, nf, 4, 2), nn.Dropout2d(p / 2), _DenseResBlock(nf)]
    nf *= 2  # the dense block concatenated its input
    for i in range(n_blocks):
        xtra = SelfAttention(nf * 2) if i == 0 else None
        layers += [nn.Dropout2d(p), _sn_conv(nf, nf * 2, 4, 2, xtra=xtra)]
        nf *= 2
    conv = ConvLayer(nf, 1, 4, bias=False, padding=0, norm_type=NormType.Spectral, act_cls=None)
    return nn.Sequential(*layers, conv, nn.Flatten())  # (bs, n_logits)


class GANModule(nn.Module):
    """A generator and a critic as one model, so that `learn.save` / `load` and checkpoints hold both.
    Called, it runs the generator when `gen_mode` is True, else the critic (`GANLearner.switch` sets it).

    >>> m = GANModule(basic_generator(16, 1, in_sz=8), basic_critic(16, 1))
    >>> m.gen_mode = True; m(torch.randn(2, 8)).shape
    torch.Size([2, 1, 16, 16])
    """

    def __init__(self, generator: nn.Module, critic: nn.Module, gen_mode: bool = False) -> None:
        super().__init__()
        self.generator, self.critic, self.gen_mode = generator, critic, gen_mode

    def forward(self, *args: Any) -> Any:
        return self.generator(*args) if self.gen_mode else self.critic(*args)

    def extra_repr(self) -> str:
        return f"gen_mode={self.gen_mode}"


register_config_type(BasicGenerator, BasicCritic)
