"""The images a learner's model takes: channels, size, the data's colours, and its normalisation.

Activation maximisation draws images in this space: it starts from the data's mean colour, moves along
the data's colour directions (a decorrelated parameterisation), and normalises each image as the
learner's batch pipeline would before the model sees it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ember.models.surgery import first_conv
from ember.vision.augment import Normalize


@dataclass
class ImageSpace:
    """`mean` (c,) and `colour` (c, c), the square root of the pixel covariance, are in [0, 1] pixel
    units; `norm` is the learner's `Normalize`, or None when its pipeline has none."""

    channels: int
    size: tuple[int, int]
    mean: Tensor
    colour: Tensor
    norm: Normalize | None

    def to_model(self, img: Tensor) -> Tensor:
        """Images (bs, c, h, w) in [0, 1] -> the model's inputs (normalised like the batches)."""
        return normalize(img, self.norm)

    def from_model(self, xb: Tensor) -> Tensor:
        """The model's inputs (bs, c, h, w) -> images in [0, 1] (the normalisation undone)."""
        return denormalize(xb, self.norm)


def normalize(img: Tensor, norm: Normalize | None) -> Tensor:
    """Images (bs, c, h, w) in [0, 1] normalised by `norm`, as the batch pipeline does."""
    if norm is None:
        return img
    return (img - norm.mean.to(img)) / norm.std.to(img)


def denormalize(xb: Tensor, norm: Normalize | None) -> Tensor:
    """A batch of model inputs (bs, c, h, w) as images in [0, 1], `norm`'s normalisation undone."""
    if norm is None:
        return xb.float().clamp(0, 1)
    mean, std = norm.mean.to(xb.device), norm.std.to(xb.device)
    return (xb.float() * std + mean).clamp(0, 1)


def find_normalize(dls: Any) -> Normalize | None:
    """The `Normalize` among the validation loader's batch transforms (inside their pipelines)."""
    for tfm in getattr(dls.valid, "batch_tfms", []):
        for t in getattr(tfm, "tfms", [tfm]):
            if isinstance(t, Normalize):
                return t
    return None


def image_space(
    learn: Any, size: int | tuple[int, int] | None = None, dl: Iterable | None = None, default_size: int = 64
) -> ImageSpace:
    """The learner's input space. Channels, size and the colour correlations come from the first batch
    of `dl` (the validation set by default); the mean and spread per channel from the learner's
    `Normalize` when it has one (what the model was trained to see; a validation set sorted by class
    makes one batch a biased sample), else from that batch. With no data (a learner from `load_learner`)
    the `Normalize` stats stand in, or mid-grey, at `default_size`."""
    norm = find_normalize(learn.dls)
    batch = next(iter(learn.dls.valid if dl is None else dl), None)
    if batch is None:  # no data: a learner from load_learner, or an empty loader
        return _space_without_data(learn, norm, size, default_size)
    xb = batch[0]
    px = denormalize(xb, norm).cpu()
    flat = px.transpose(0, 1).reshape(px.shape[1], -1)  # (c, pixels)
    c = len(flat)
    cov = torch.atleast_2d(torch.cov(flat)) + 1e-4 * torch.eye(c)
    mean = flat.mean(1)
    if norm is not None:  # keep the batch's correlations, take the spread and the mean from the stats
        sd = cov.diagonal().sqrt()
        want = norm.std.flatten().expand(c)
        cov = cov / (sd[:, None] * sd[None]) * (want[:, None] * want[None])
        mean = norm.mean.flatten().expand(c).clone()
    vals, vecs = torch.linalg.eigh(cov)
    colour = vecs @ torch.diag(vals.clamp_min(0).sqrt()) @ vecs.T  # symmetric square root
    hw = _pair(size) if size is not None else (int(xb.shape[-2]), int(xb.shape[-1]))
    return ImageSpace(c, hw, mean, colour, norm)


def _space_without_data(learn: Any, norm: Normalize | None, size: Any, default_size: int) -> ImageSpace:
    c = first_conv(learn.model).in_channels
    mean = norm.mean.flatten().expand(c).clone() if norm is not None else torch.full((c,), 0.5)
    std = norm.std.flatten().expand(c).clone() if norm is not None else torch.full((c,), 0.25)
    return ImageSpace(c, _pair(size if size is not None else default_size), mean, torch.diag(std), norm)


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
