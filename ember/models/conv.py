"""Convolutional layers the course names: `ConvLayer`, `ResBlock`, `PixelShuffle_ICNR`, `SelfAttention`,
`MergeLayer` and `simple_cnn`, with the normalisations of `NormType`.

>>> ConvLayer(3, 16, stride=2)(torch.randn(1, 3, 32, 32)).shape  # doctest: +SKIP
torch.Size([1, 16, 16, 16])
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import Enum
from typing import Literal

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrizations

__all__ = [
    "ConvLayer",
    "MergeLayer",
    "NormType",
    "PixelShuffle_ICNR",
    "ResBlock",
    "SelfAttention",
    "icnr_",
    "simple_cnn",
]

Init = Literal["auto"] | Callable[[Tensor], object] | None


class NormType(Enum):
    """How `ConvLayer` normalises; `norm_type=None` means no normalisation.

    `BatchZero` and `InstanceZero` start the norm's scale at 0, so a residual branch ending in one
    starts as the identity.
    """

    Batch = "batch"
    BatchZero = "batch_zero"
    Weight = "weight"
    Spectral = "spectral"
    Instance = "instance"
    InstanceZero = "instance_zero"


_BATCH = (NormType.Batch, NormType.BatchZero)
_INSTANCE = (NormType.Instance, NormType.InstanceZero)


def _conv_class(ndim: int, transpose: bool) -> type[nn.Module]:
    if ndim not in (1, 2, 3):
        raise ValueError(f"ConvLayer: ndim={ndim}; convolutions exist for 1, 2 and 3 dimensions")
    plain = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
    tr = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
    return (tr if transpose else plain)[ndim]


def _norm_layer(norm_type: NormType, nf: int, ndim: int) -> nn.Module:
    """The BatchNorm or InstanceNorm (affine) for `nf` channels, its scale at 0 for the *Zero types."""
    if norm_type in _BATCH:
        norm = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[ndim](nf)
    else:
        norm = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[ndim](nf, affine=True)
    nn.init.constant_(norm.weight, 0.0 if norm_type in (NormType.BatchZero, NormType.InstanceZero) else 1.0)
    nn.init.zeros_(norm.bias)
    return norm


def _init_conv(conv: nn.Module, act_cls: type[nn.Module] | None, init: Init) -> None:
    """'auto': He (Kaiming) uniform for ReLU-like activations, PyTorch's default otherwise; bias to 0."""
    if init == "auto":
        relu_like = act_cls is not None and issubclass(act_cls, (nn.ReLU, nn.LeakyReLU, nn.ReLU6))
        init = nn.init.kaiming_uniform_ if relu_like else None
    if init is not None:
        init(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class ConvLayer(nn.Sequential):
    """Convolution, then normalisation and activation (`bn_1st=False` swaps those two), then `xtra`.

    `padding` defaults to `(ks - 1) // 2` (0 for a transposed conv), so stride 1 keeps the size; the conv
    has no bias when a Batch/Instance norm follows (its shift does the same job). `Weight` and `Spectral`
    reparametrise the conv's weight instead of adding a layer. `init` is "auto", a function initialising
    the weight in place, or None for PyTorch's default.

    >>> ConvLayer(16, 32, ks=1, norm_type=NormType.BatchZero)[1].weight.sum().item()
    0.0
    """

    def __init__(
        self,
        ni: int,
        nf: int,
        ks: int = 3,
        stride: int = 1,
        padding: int | None = None,
        bias: bool | None = None,
        ndim: int = 2,
        norm_type: NormType | None = NormType.Batch,
        bn_1st: bool = True,
        act_cls: type[nn.Module] | None = nn.ReLU,
        transpose: bool = False,
        init: Init = "auto",
        xtra: nn.Module | None = None,
        groups: int = 1,
    ) -> None:
        padding = ((ks - 1) // 2 if not transpose else 0) if padding is None else padding
        has_norm = norm_type in _BATCH or norm_type in _INSTANCE
        bias = not has_norm if bias is None else bias
        conv = _conv_class(ndim, transpose)(
            ni, nf, ks, stride=stride, padding=padding, bias=bias, groups=groups
        )
        _init_conv(conv, act_cls, init)
        if norm_type == NormType.Weight:
            conv = parametrizations.weight_norm(conv)
        elif norm_type == NormType.Spectral:
            conv = parametrizations.spectral_norm(conv)
        after: list[nn.Module] = []
        if act_cls is not None:
            after.append(act_cls())
        if has_norm:
            norm = _norm_layer(norm_type, nf, ndim)
            after.insert(0 if bn_1st else len(after), norm)
        super().__init__(conv, *after, *([xtra] if xtra is not None else []))


class ResBlock(nn.Module):
    """A residual block: `act(convs(x) + idconv(pool(x)))`.

    `expansion == 1` gives two `ks` convs (ResNet's basic block); more gives 1x1, `ks`, 1x1 convs with
    `nf * expansion` outputs (the bottleneck block). The identity path average-pools when `stride > 1`
    and has a 1x1 conv when the channels change. The branch's last norm starts at 0, so a new block
    starts as the identity path.

    >>> ResBlock(1, 16, 32, stride=2)(torch.randn(2, 16, 9, 9)).shape  # doctest: +SKIP
    torch.Size([2, 32, 5, 5])
    """

    def __init__(
        self,
        expansion: int,
        ni: int,
        nf: int,
        stride: int = 1,
        groups: int = 1,
        sa: bool = False,
        norm_type: NormType | None = NormType.Batch,
        act_cls: type[nn.Module] | None = nn.ReLU,
        ndim: int = 2,
        ks: int = 3,
    ) -> None:
        super().__init__()
        zero = {NormType.Batch: NormType.BatchZero, NormType.Instance: NormType.InstanceZero}.get(
            norm_type, norm_type
        )  # fmt: skip
        nh, ni, nf = nf, ni * expansion, nf * expansion
        kw = dict(norm_type=norm_type, act_cls=act_cls, ndim=ndim)
        last = dict(norm_type=zero, act_cls=None, ndim=ndim)
        if expansion == 1:
            layers = [ConvLayer(ni, nh, ks, stride, groups=groups, **kw), ConvLayer(nh, nf, ks, **last)]
        else:
            layers = [
                ConvLayer(ni, nh, 1, **kw),
                ConvLayer(nh, nh, ks, stride, groups=groups, **kw),
                ConvLayer(nh, nf, 1, **last),
            ]
        if sa:
            layers.append(SelfAttention(nf))
        self.convs = nn.Sequential(*layers)
        self.idconv = nn.Identity() if ni == nf else ConvLayer(ni, nf, 1, act_cls=None, ndim=ndim)
        pool = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}[ndim]
        # ceil_mode: an odd size pools to the size the strided conv gives, (n + 1) // 2
        self.pool = nn.Identity() if stride == 1 else pool(stride, ceil_mode=True)
        self.act = act_cls() if act_cls is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.convs(x) + self.idconv(self.pool(x)))


def icnr_(
    weight: Tensor, scale: int = 2, init: Callable[[Tensor], object] = nn.init.kaiming_normal_
) -> Tensor:
    """ICNR: initialise a conv weight of `(nf * scale**2, ni, kh, kw)` so that the `scale**2` kernels a
    pixel shuffle puts side by side are equal, so the shuffled output starts without checkerboard.

    >>> w = icnr_(torch.empty(8, 3, 1, 1)); bool((w[0] == w[3]).all())
    True
    """
    nf, rest = weight.shape[0] // scale**2, weight.shape[1:]
    base = torch.empty(nf, *rest, dtype=weight.dtype, device=weight.device)
    init(base)
    with torch.no_grad():
        # PixelShuffle takes channels c * scale**2 ... c * scale**2 + scale**2 - 1 to output channel c
        weight.copy_(base.repeat_interleave(scale**2, dim=0))
    return weight


class PixelShuffle_ICNR(nn.Sequential):
    """Upsample by `scale`: a 1x1 conv to `nf * scale**2` channels (ICNR-initialised), a pixel shuffle,
    and with `blur` a 2x2 average (after replication padding) that smooths what is left of a checkerboard.

    >>> PixelShuffle_ICNR(16, 8)(torch.randn(1, 16, 5, 7)).shape  # doctest: +SKIP
    torch.Size([1, 8, 10, 14])
    """

    def __init__(
        self,
        ni: int,
        nf: int | None = None,
        scale: int = 2,
        blur: bool = False,
        norm_type: NormType | None = NormType.Weight,
        act_cls: type[nn.Module] | None = nn.ReLU,
    ) -> None:
        nf = ni if nf is None else nf
        conv = ConvLayer(
            ni, nf * scale**2, ks=1, norm_type=norm_type, act_cls=act_cls, bn_1st=False,
            init=lambda w: icnr_(w, scale),
        )  # fmt: skip
        layers: list[nn.Module] = [conv, nn.PixelShuffle(scale)]
        if blur:
            layers += [nn.ReplicationPad2d((1, 0, 1, 0)), nn.AvgPool2d(2, stride=1)]
        super().__init__(*layers)


class SelfAttention(nn.Module):
    """Self-attention over the pixels of a feature map (SAGAN): `x + gamma * attention(x)`.

    Query and key are 1x1 convs to `n // 8` channels, value a 1x1 conv to `n`; `gamma` starts at 0, so
    a new layer returns its input unchanged and learns how much attention to mix in.

    >>> x = torch.randn(2, 16, 4, 5); bool((SelfAttention(16)(x) == x).all())
    True
    """

    def __init__(self, n: int) -> None:
        super().__init__()
        self.query = nn.Conv1d(n, max(n // 8, 1), 1, bias=False)
        self.key = nn.Conv1d(n, max(n // 8, 1), 1, bias=False)
        self.value = nn.Conv1d(n, n, 1, bias=False)
        for conv in (self.query, self.key, self.value):
            nn.init.kaiming_normal_(conv.weight)
        self.gamma = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(2)  # (bs, n, h*w)
        q, k, v = self.query(flat), self.key(flat), self.value(flat)  # (bs, n//8, hw), same, (bs, n, hw)
        attn = torch.softmax(q.transpose(1, 2) @ k, dim=1)  # (bs, hw, hw): how each pixel weighs the others
        out = self.gamma * (v @ attn) + flat  # (bs, n, hw)
        return out.view_as(x)


class MergeLayer(nn.Module):
    """Merge a block's output with the block's input, both passed explicitly: `x + orig`, or with
    `dense` the two concatenated along the channels.

    >>> MergeLayer(dense=True)(torch.ones(1, 2, 3, 3), torch.ones(1, 4, 3, 3)).shape
    torch.Size([1, 6, 3, 3])
    """

    def __init__(self, dense: bool = False) -> None:
        super().__init__()
        self.dense = dense

    def forward(self, x: Tensor, orig: Tensor) -> Tensor:
        return torch.cat([x, orig], dim=1) if self.dense else x + orig

    def extra_repr(self) -> str:
        return f"dense={self.dense}"


def simple_cnn(
    actns: Sequence[int],
    kernel_szs: Sequence[int] | None = None,
    strides: Sequence[int] | None = None,
    bn: bool = False,
) -> nn.Sequential:
    """A CNN of `ConvLayer`s through the channel counts `actns`, then average pool and flatten.

    Kernels default to 3 and strides to 2; with `bn` every conv but the last has a BatchNorm.

    >>> simple_cnn([3, 16, 16, 2])(torch.randn(4, 3, 28, 28)).shape  # doctest: +SKIP
    torch.Size([4, 2])
    """
    n = len(actns) - 1
    kernel_szs = [3] * n if kernel_szs is None else list(kernel_szs)
    strides = [2] * n if strides is None else list(strides)
    if len(kernel_szs) != n or len(strides) != n:
        raise ValueError(
            f"simple_cnn: {len(actns)} channel counts make {n} convs, but got {len(kernel_szs)} kernel "
            f"sizes and {len(strides)} strides; give one per conv"
        )
    layers: list[nn.Module] = [
        ConvLayer(actns[i], actns[i + 1], kernel_szs[i], strides[i],
                  norm_type=NormType.Batch if bn and i < n - 1 else None)
        for i in range(n)
    ]  # fmt: skip
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
