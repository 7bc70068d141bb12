"""What the augmentations share: sizes, padding modes, an item's frame, random draws per image."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from PIL import Image
from torch import Tensor

from ember.vision.kinds import IMAGE, MASK, POINTS

__all__ = ["PAD_MODES", "Size", "check_choice", "coin_flips", "frame_of", "hw", "map_kind", "uniform"]

Size = int | tuple[int, int]  # an int for a square, else (h, w) as in torch

PAD_MODES = {"zeros": "constant", "border": "edge", "reflection": "symmetric"}  # grid_sample -> numpy


def hw(size: Size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}")


def frame_of(values: tuple, kinds: Sequence[str]) -> tuple[int, int] | None:
    """(w, h) of the item's first image, else its first mask: the frame its points live in."""
    for kind in (IMAGE, MASK):
        for v, k in zip(values, kinds):
            if k == kind:
                return v.size if isinstance(v, Image.Image) else (v.shape[-1], v.shape[-2])
    if POINTS in kinds:
        raise ValueError("points need an image or a mask in the same item: their size is the points' frame")
    return None


def map_kind(values: tuple, kinds: Sequence[str], kind: str, f: Callable[[Tensor], Tensor]) -> tuple:
    return tuple(f(v) if k == kind else v for v, k in zip(values, kinds))


def uniform(n: int, lo: float, hi: float, device: torch.device) -> Tensor:
    return torch.rand(n, device=device) * (hi - lo) + lo


def coin_flips(n: int, p: float, device: torch.device) -> Tensor:
    """(n,) bools: which images this augmentation applies to, each with probability p."""
    return torch.rand(n, device=device) < p
