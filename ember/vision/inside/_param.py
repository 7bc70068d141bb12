"""Images made from free parameters for activation maximisation, and the random transforms each step
sees them through.

The Fourier parameterisation optimises the image's spectrum scaled by 1/f: natural images have about
that spectrum, so every frequency starts, and moves, at a comparable scale; plain pixels let the
gradient pile up high-frequency noise. Colours are decorrelated: the parameters are multiplied by the
square root of the data's colour covariance, so a unit step moves along the data's colour directions.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ember.vision.inside._space import ImageSpace

Param = Literal["fourier", "pixels"]


class ParamImage(nn.Module):
    """`n` images `sigmoid(logit(mean) + colour @ z)`, `z` the inverse FFT of a 1/f-scaled spectrum
    ("fourier") or the parameters themselves ("pixels"); `forward()` gives (n, c, h, w) in [0, 1]."""

    def __init__(self, space: ImageSpace, n: int, param: Param, g: torch.Generator, sd: float = 0.01) -> None:
        super().__init__()
        (h, w), c = space.size, space.channels
        self.param, self.hw = param, (h, w)
        m = space.mean.clamp(0.02, 0.98)
        # `colour` is in [0, 1] pixel units; dividing by sigmoid's slope at the mean, m(1 - m), makes a
        # unit step of z move the pixels by about the data's standard deviation.
        self.register_buffer("offset", torch.logit(m).reshape(1, c, 1, 1))
        self.register_buffer("colour", space.colour / (m * (1 - m))[:, None])
        self.register_buffer("mean", space.mean.reshape(1, c, 1, 1).clone())
        if param == "fourier":
            fy, fx = torch.fft.fftfreq(h)[:, None], torch.fft.rfftfreq(w)[None, :]
            self.register_buffer("freqs", (fy**2 + fx**2).sqrt())  # (h, w // 2 + 1) cycles per pixel
            scale = 1 / self.freqs.clamp_min(1 / max(h, w))
            self.register_buffer("scale", scale / scale.pow(2).mean().sqrt())
            self.z = nn.Parameter(torch.randn(n, c, *self.freqs.shape, 2, generator=g) * sd)
        elif param == "pixels":
            self.z = nn.Parameter(torch.randn(n, c, h, w, generator=g) * sd)
        else:
            raise ValueError(f"param must be 'fourier' or 'pixels', got {param!r}")

    def forward(self) -> Tensor:
        z = self.z  # (n, c, h, w) in decorrelated colours, about unit scale
        if self.param == "fourier":
            z = torch.fft.irfft2(torch.view_as_complex(self.z) * self.scale, s=self.hw, norm="ortho")
        return torch.sigmoid(self.offset + torch.einsum("ij,njhw->nihw", self.colour, z))

    @torch.no_grad()
    def blur(self, sigma: float) -> None:
        """Blur the images in place: a Gaussian's transfer function on the spectrum, or a 3x3 kernel."""
        if self.param == "fourier":
            self.z.mul_(torch.exp(-2 * (math.pi * sigma * self.freqs) ** 2)[..., None])
            return
        k = torch.exp(-torch.tensor([1.0, 0.0, 1.0]) / (2 * sigma**2)).to(self.z)
        k2 = (k[:, None] * k[None]) / k.sum() ** 2
        n, c, h, w = self.z.shape
        padded = F.pad(self.z.reshape(n * c, 1, h, w), (1, 1, 1, 1), mode="reflect")
        self.z.copy_(F.conv2d(padded, k2[None, None]).reshape(n, c, h, w))


def random_views(
    x: Tensor, n_views: int, g: torch.Generator, jitter: int, scale: float, degrees: float, fill: Tensor
) -> Tensor:
    """`n_views` copies of the images `x` (n, c, h, w), each randomly shifted by up to `jitter` pixels,
    zoomed by up to `scale` and rotated by up to `degrees` (one affine resampling, edges reflected):
    (n_views * n, c, h, w), copy j of image i at j * n + i."""
    n, (h, w) = len(x), x.shape[-2:]
    u = torch.rand(n_views * n, 4, generator=g) * 2 - 1  # in [-1, 1): shift y, shift x, zoom, angle
    s = 1 + scale * u[:, 2]
    a = torch.deg2rad(degrees * u[:, 3])
    cos, sin = torch.cos(a) / s, torch.sin(a) / s
    tx, ty = 2 * jitter * u[:, 1] / w, 2 * jitter * u[:, 0] / h  # in grid units: the image spans [-1, 1]
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    views = x.repeat(n_views, 1, 1, 1)
    grid = F.affine_grid(theta.to(x), list(views.shape), align_corners=False)
    return F.grid_sample(views - fill, grid, padding_mode="zeros", align_corners=False) + fill
