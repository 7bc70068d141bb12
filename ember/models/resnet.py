"""ResNet 18/34/50/101/152: torchvision's definitions, so torchvision's weight files load unchanged.

Pretrained weights are torchvision's files, looked for in the torch hub cache (where torchvision's own
download puts them) or given as `weights=PATH`; ember never downloads them.

>>> model = resnet34()  # random weights, 1000 classes
>>> model = resnet34(pretrained=True, n_out=10)  # doctest: +SKIP
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from torch import nn

from ember.models.registry import create_model, register_model
from ember.models.weights import WeightSource

if TYPE_CHECKING:
    from torchvision.models import WeightsEnum

__all__ = [
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnet_split",
    "torchvision_weights",
]


def torchvision_weights(*choices: WeightsEnum) -> WeightSource:
    """A `WeightSource` for torchvision weight files, the preferred one first.

    >>> from torchvision.models import ResNet18_Weights
    >>> torchvision_weights(ResNet18_Weights.IMAGENET1K_V1).files
    ('resnet18-f37072fd.pth',)
    """
    files = tuple(w.url.rsplit("/", 1)[-1] for w in choices)
    return WeightSource(files=files, url=choices[0].url)


def _torchvision_files(*files: str) -> WeightSource:
    """What `torchvision_weights` gives for these files of torchvision's, without importing torchvision."""
    return WeightSource(files=files, url=f"https://download.pytorch.org/models/{files[0]}")


def _build_torchvision(name: str) -> nn.Module:
    """torchvision's `resnet18` & co. with random weights. torchvision is imported here, when a ResNet is
    built, not with ember: importing it loads its whole model zoo, which takes seconds."""
    from torchvision import models as tvm

    return getattr(tvm, name)(weights=None)


def resnet_split(body: nn.Module) -> list[list[nn.Parameter]]:
    """Two parameter groups: the stem with layer1-2 (edges, textures), and layer3-4.

    The body's children are conv1, bn1, relu, maxpool, layer1, layer2, layer3, layer4.
    """
    return [list(body[:6].parameters()), list(body[6:].parameters())]


# The body is the children up to layer4 (cut=-2 drops avgpool and fc): (bs, 3, h, w) -> (bs, C, h/32, w/32).
# For 50/101/152 torchvision's V2 weights (better ImageNet accuracy) are preferred; its V1 files load too.
# The file names are torchvision's `ResNet*_Weights` (tests/test_api.py checks them against torchvision).


@register_model(
    build=partial(_build_torchvision, "resnet18"),
    n_features=512,
    weights=_torchvision_files("resnet18-f37072fd.pth"),
    cut=-2,
    split=resnet_split,
)
def resnet18(
    pretrained: bool = False, n_out: int | None = None, n_in: int = 3, weights: str | Path | None = None
) -> nn.Module:
    """ResNet-18: basic blocks [2, 2, 2, 2], 512 body features. Arguments as in `create_model`.

    >>> resnet18(n_out=10).fc.out_features
    10
    """
    return create_model(resnet18, pretrained, n_out, n_in, weights)


@register_model(
    build=partial(_build_torchvision, "resnet34"),
    n_features=512,
    weights=_torchvision_files("resnet34-b627a593.pth"),
    cut=-2,
    split=resnet_split,
)
def resnet34(
    pretrained: bool = False, n_out: int | None = None, n_in: int = 3, weights: str | Path | None = None
) -> nn.Module:
    """ResNet-34: basic blocks [3, 4, 6, 3], 512 body features. Arguments as in `create_model`.

    >>> resnet34(n_out=10).fc.out_features
    10
    """
    return create_model(resnet34, pretrained, n_out, n_in, weights)


@register_model(
    build=partial(_build_torchvision, "resnet50"),
    n_features=2048,
    weights=_torchvision_files("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth"),
    cut=-2,
    split=resnet_split,
)
def resnet50(
    pretrained: bool = False, n_out: int | None = None, n_in: int = 3, weights: str | Path | None = None
) -> nn.Module:
    """ResNet-50: bottleneck blocks [3, 4, 6, 3], 2048 body features. Arguments as in `create_model`.

    >>> resnet50(n_out=10).fc.out_features
    10
    """
    return create_model(resnet50, pretrained, n_out, n_in, weights)


@register_model(
    build=partial(_build_torchvision, "resnet101"),
    n_features=2048,
    weights=_torchvision_files("resnet101-cd907fc2.pth", "resnet101-63fe2227.pth"),
    cut=-2,
    split=resnet_split,
)
def resnet101(
    pretrained: bool = False, n_out: int | None = None, n_in: int = 3, weights: str | Path | None = None
) -> nn.Module:
    """ResNet-101: bottleneck blocks [3, 4, 23, 3], 2048 body features. Arguments as in `create_model`.

    >>> resnet101(n_out=10).fc.out_features
    10
    """
    return create_model(resnet101, pretrained, n_out, n_in, weights)


@register_model(
    build=partial(_build_torchvision, "resnet152"),
    n_features=2048,
    weights=_torchvision_files("resnet152-f82ba261.pth", "resnet152-394f9c45.pth"),
    cut=-2,
    split=resnet_split,
)
def resnet152(
    pretrained: bool = False, n_out: int | None = None, n_in: int = 3, weights: str | Path | None = None
) -> nn.Module:
    """ResNet-152: bottleneck blocks [3, 8, 36, 3], 2048 body features. Arguments as in `create_model`.

    >>> resnet152(n_out=10).fc.out_features
    10
    """
    return create_model(resnet152, pretrained, n_out, n_in, weights)
