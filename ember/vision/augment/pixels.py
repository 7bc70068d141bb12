"""Batch transforms on pixel values: uint8 to float, normalisation, and the lighting augmentations
(brightness and contrast, composed in logit space). Only images change; other kinds pass through.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ember.core.serial import register_config_type
from ember.data.transforms import TRAIN, Transform
from ember.vision.augment._common import coin_flips, map_kind, uniform
from ember.vision.kinds import IMAGE

__all__ = ["Brightness", "Contrast", "IntToFloatTensor", "Lighting", "LogitTransform", "Normalize"]


class IntToFloatTensor(Transform):
    """uint8 images -> float images in [0, 1] (divided by `div`); masks stay int64. Decodes to uint8."""

    order = 10

    def __init__(self, div: float = 255.0) -> None:
        self.div = div

    def encodes(self, values: tuple, kinds: tuple[str, ...], split_idx: int) -> tuple:
        return map_kind(values, kinds, IMAGE, lambda x: x if x.is_floating_point() else x.float() / self.div)

    def decodes(self, values: tuple, kinds: tuple[str, ...]) -> tuple:
        def to_uint8(x: Tensor) -> Tensor:
            return (x * self.div).round().clamp(0, 255).to(torch.uint8) if x.is_floating_point() else x

        return map_kind(values, kinds, IMAGE, to_uint8)

    def to_config(self) -> dict:
        return {"div": self.div}


class Normalize(Transform):
    """Images -> (x - mean) / std per channel; decodes back. Runs last (order 99), on float images.

    The stats broadcast as (1, c, 1, 1) and are copied to the batch's device on first use. They must
    have one value per image channel (or a single value): 1-channel images with 3-channel stats are
    an error rather than a silent average, since a model pretrained on RGB expects 3 channels anyway.

    >>> norm = Normalize.from_stats(*imagenet_stats)  # doctest: +SKIP
    """

    order = 99

    def __init__(self, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor) -> None:
        self.mean = torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).reshape(1, -1, 1, 1)
        self._on: dict[tuple[torch.device, torch.dtype], tuple[Tensor, Tensor]] = {}

    @classmethod
    def from_stats(cls, mean: Sequence[float] | Tensor, std: Sequence[float] | Tensor) -> Normalize:
        """`Normalize(mean, std)`, under the course's name: `Normalize.from_stats(*imagenet_stats)`."""
        return cls(mean, std)

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if not x.is_floating_point():
            raise TypeError(f"Normalize needs float images, got {x.dtype}: put IntToFloatTensor() before it")
        c = self.mean.shape[1]
        if c not in (1, x.shape[1]):
            raise ValueError(
                f"Normalize has stats for {c} channels but the images have {x.shape[1]} "
                f"(shape {tuple(x.shape)}); give stats with {x.shape[1]} value(s) per channel, "
                f"or make the images {c}-channel (PILImage for RGB)"
            )
        key = (x.device, x.dtype)
        if key not in self._on:
            self._on[key] = (self.mean.to(x.device, x.dtype), self.std.to(x.device, x.dtype))
        return self._on[key]

    def _norm(self, x: Tensor) -> Tensor:
        mean, std = self._stats(x)
        return (x - mean) / std

    def _denorm(self, x: Tensor) -> Tensor:
        mean, std = self._stats(x)
        return x * std + mean

    def encodes(self, values: tuple, kinds: tuple[str, ...], split_idx: int) -> tuple:
        return map_kind(values, kinds, IMAGE, self._norm)

    def decodes(self, values: tuple, kinds: tuple[str, ...]) -> tuple:
        return map_kind(values, kinds, IMAGE, self._denorm)

    def to_config(self) -> dict:
        return {"mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"


def _logit(x: Tensor) -> Tensor:
    return torch.logit(x, eps=1e-6)  # clamped: 0 and 1 would give infinities


class LogitTransform(Transform):
    """A random lighting change, linear in logit space: logit(x) * scale + shift, per image.

    Subclasses define `params`; `Lighting` composes several into one step. Training set only; the
    images must be floats in [0, 1] (after `IntToFloatTensor`).
    """

    order = 40
    split_idx = TRAIN

    def params(self, n: int, device: torch.device) -> tuple[Tensor, Tensor]:
        """(scale, shift), each (n,)."""
        raise NotImplementedError(f"{type(self).__name__} must define params(n, device)")

    def encodes(self, values: tuple, kinds: tuple[str, ...], split_idx: int) -> tuple:
        return Lighting([self]).encodes(values, kinds, split_idx)


class Brightness(LogitTransform):
    """Brighten or darken each image, with probability p: a level b drawn in
    [0.5 (1 - max_lighting), 0.5 (1 + max_lighting)] is added as logit(b) (b = 0.5 changes nothing)."""

    def __init__(self, max_lighting: float = 0.2, p: float = 0.75) -> None:
        self.max_lighting, self.p = max_lighting, p

    def params(self, n: int, device: torch.device) -> tuple[Tensor, Tensor]:
        b = uniform(n, 0.5 * (1 - self.max_lighting), 0.5 * (1 + self.max_lighting), device)
        b = torch.where(coin_flips(n, self.p, device), b, 0.5)
        return torch.ones(n, device=device), _logit(b)


class Contrast(LogitTransform):
    """Raise or lower each image's contrast, with probability p: logit(x) is multiplied by a factor
    drawn log-uniformly in [1 - max_lighting, 1 / (1 - max_lighting)]."""

    def __init__(self, max_lighting: float = 0.2, p: float = 0.75) -> None:
        self.max_lighting, self.p = max_lighting, p

    def params(self, n: int, device: torch.device) -> tuple[Tensor, Tensor]:
        lim = -math.log(1 - self.max_lighting)
        c = torch.where(coin_flips(n, self.p, device), torch.exp(uniform(n, -lim, lim, device)), 1.0)
        return c, torch.zeros(n, device=device)


class Lighting(Transform):
    """Several `LogitTransform`s in one pass over the images; images left unchosen stay exact."""

    order = 40
    split_idx = TRAIN

    def __init__(self, tfms: Sequence[LogitTransform], batch: bool = False) -> None:
        self.tfms, self.batch = list(tfms), batch

    def _light(self, x: Tensor) -> Tensor:
        if not x.is_floating_point():
            raise TypeError(
                f"{self!r} needs float images in [0, 1], got {x.dtype}: put IntToFloatTensor() before it"
            )
        n = 1 if self.batch else x.shape[0]
        scale, shift = torch.ones(n, device=x.device), torch.zeros(n, device=x.device)
        for t in self.tfms:  # (l * a1 + b1) * a2 + b2
            a, b = t.params(n, x.device)
            scale, shift = scale * a, shift * a + b
        scale, shift = scale.expand(x.shape[0]).view(-1, 1, 1, 1), shift.expand(x.shape[0]).view(-1, 1, 1, 1)
        y = torch.addcmul(shift.to(x.dtype), _logit(x), scale.to(x.dtype)).sigmoid_()  # one pass each
        return torch.where((scale != 1) | (shift != 0), y, x)

    def encodes(self, values: tuple, kinds: tuple[str, ...], split_idx: int) -> tuple:
        return values if split_idx != TRAIN else map_kind(values, kinds, IMAGE, self._light)

    def __repr__(self) -> str:
        return f"Lighting({self.tfms})"


register_config_type(IntToFloatTensor, Normalize)
