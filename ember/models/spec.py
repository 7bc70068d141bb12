"""`ModelSpec`: what ember knows about an architecture besides its layers.

A learner needs more than the network: the statistics its pretrained weights expect, where to cut the
body off the classifier, how to split the body into parameter groups, and how many features the body
puts out. `register_model` stores one `ModelSpec` per architecture; `model_spec(arch)` finds it.

>>> spec = model_spec("resnet34")  # doctest: +SKIP
>>> spec.n_features, spec.mean
(512, (0.485, 0.456, 0.406))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from ember.models.weights import WeightSource

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ModelSpec", "Stats", "UnknownModelError", "body_as_one_group"]

Stats = tuple[float, float, float]

# Per-channel mean and std of ImageNet's training images (RGB in [0, 1]): what torchvision's weights expect.
IMAGENET_MEAN: Stats = (0.485, 0.456, 0.406)
IMAGENET_STD: Stats = (0.229, 0.224, 0.225)


class UnknownModelError(ValueError):
    """No registered architecture has this name or constructor."""


def body_as_one_group(body: nn.Module) -> list[list[nn.Parameter]]:
    """The default body split: one parameter group for the whole body.

    >>> len(body_as_one_group(nn.Linear(2, 2)))
    1
    """
    return [list(body.parameters())]


@dataclass(frozen=True)
class ModelSpec:
    """One registered architecture: how to build it and what a learner needs to know about it.

    >>> spec = ModelSpec("tiny", None, lambda: nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten()), 8)
    >>> spec.input_size, spec.cut
    (224, -2)
    """

    name: str  # the registry key: "resnet34", or "timm/<name>" for a timm model
    fn: Callable[..., nn.Module] | None  # the public constructor (`resnet34`), looked up by identity
    build: Callable[[], nn.Module]  # a fresh randomly initialised network with its ImageNet classifier
    n_features: int | None  # channels the body puts out; None: measure with `num_features(body)`
    weights: WeightSource | None = None  # where the pretrained weights come from; None: there are none
    # The body is the network's children up to this index (or what this function returns), i.e. the
    # network without its pooling and classifier: (bs, 3, h, w) -> (bs, n_features, h/32, w/32).
    cut: int | Callable[[nn.Module], nn.Module] = -2
    split: Callable[[nn.Module], list[list[nn.Parameter]]] = body_as_one_group  # body -> param groups
    classifier: str = "fc"  # attribute path of the final `nn.Linear`, replaced when `n_out` is given
    mean: Stats = IMAGENET_MEAN  # normalisation the pretrained weights expect, RGB in [0, 1]
    std: Stats = IMAGENET_STD
    input_size: int = 224  # side of the square images the weights were trained on
    # A U-Net's encoder, when it is not the body: EfficientNet's 1x1 head conv (320 -> 1280 channels) adds
    # no resolution, only width, which the U-Net's middle convs would then carry (60M parameters more).
    encoder_cut: int | Callable[[nn.Module], nn.Module] | None = None
