"""Geometric batch augmentations: flips, rotations, zooms, warps and crops, each a random 3x3 matrix per
image, composed by `AffineWarp` into one resampling of the batch's images (bilinear), masks (nearest
neighbour) and points (moved through the inverse).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ember.core.serial import register_config_type
from ember.data.transforms import TRAIN, Transform
from ember.vision.augment._common import PAD_MODES, Size, check_choice, coin_flips, frame_of, hw, uniform
from ember.vision.kinds import IMAGE, MASK, POINTS

__all__ = ["AffineWarp", "Dihedral", "Flip", "MatrixTransform", "Rotate", "Warp", "Zoom"]


def _eye(n: int, device: torch.device) -> Tensor:
    return torch.eye(3, device=device).repeat(n, 1, 1)  # (n, 3, 3)


class MatrixTransform(Transform):
    """A random geometric augmentation given as one 3x3 matrix per image.

    The matrix maps an output pixel's normalised coordinates (x, y, 1) to where it samples in the
    input (divided by the third coordinate: perspective). `AffineWarp` multiplies several and
    resamples once; used alone, a `MatrixTransform` resamples with bilinear and reflection padding.
    Subclasses define `matrices`. Training set only.
    """

    order = 30
    split_idx = TRAIN

    def matrices(self, n: int, aspect: float, device: torch.device) -> Tensor:
        """(n, 3, 3) random matrices; `aspect` is the image's w / h (rotations must undo it)."""
        raise NotImplementedError(f"{type(self).__name__} must define matrices(n, aspect, device)")

    def encodes(self, values: tuple, kinds: tuple[str, ...], split_idx: int) -> tuple:
        return AffineWarp([self]).encodes(values, kinds, split_idx)


class Flip(MatrixTransform):
    """Mirror each image left-right with probability p."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def matrices(self, n: int, aspect: float, device: torch.device) -> Tensor:
        m = _eye(n, device)
        m[:, 0, 0] = torch.where(coin_flips(n, self.p, device), -1.0, 1.0)
        return m


class Dihedral(MatrixTransform):
    """With probability p, one of the 8 flips and quarter turns of the square, at random."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def matrices(self, n: int, aspect: float, device: torch.device) -> Tensor:
        k = torch.randint(0, 8, (n,), device=device) * coin_flips(n, self.p, device)  # 0 is the identity
        m = _eye(n, device)
        m[:, 0, 0] = torch.where(k % 2 == 1, -1.0, 1.0)
        m[:, 1, 1] = torch.where(k // 2 % 2 == 1, -1.0, 1.0)
        # k >= 4 also swaps x and y (a square's diagonal mirror); `where` keeps the GPU from syncing
        return torch.where((k >= 4)[:, None, None], m[:, [1, 0, 2]], m)


class Rotate(MatrixTransform):
    """Rotate each image by a random angle in [-max_deg, max_deg] degrees, with probability p."""

    def __init__(self, max_deg: float = 10.0, p: float = 0.5) -> None:
        self.max_deg, self.p = max_deg, p

    def matrices(self, n: int, aspect: float, device: torch.device) -> Tensor:
        deg = uniform(n, -self.max_deg, self.max_deg, device) * coin_flips(n, self.p, device)
        cos, sin = torch.cos(torch.deg2rad(deg)), torch.sin(torch.deg2rad(deg))
        m = _eye(n, device)
        # a rotation in pixels, seen in normalised coordinates, where x is squeezed by w / h
        m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = cos, -sin / aspect, sin * aspect, cos
        return m


class Zoom(MatrixTransform):
    """Zoom each image by a random factor in [min_zoom, max_zoom] about a random centre, with
    probability p (a factor below 1 zooms out and pads)."""

    def __init__(self, min_zoom: float = 1.0, max_zoom: float = 1.1, p: float = 0.5) -> None:
        self.min_zoom, self.max_zoom, self.p = min_zoom, max_zoom, p

    def matrices(self, n: int, aspect: float, device: torch.device) -> Tensor:
        chosen = coin_flips(n, self.p, device)
        s = torch.where(chosen, uniform(n, self.min_zoom, self.max_zoom, device), 1.0)
        m = _eye(n, device)
        m[:, 0, 0] = m[:, 1, 1] = 1 / s
        # the shift keeps the sampled window inside the image when zooming in: (1 - 1/s) of room
        m[:, :2, 2] = (1 - 1 / s)[:, None] * (2 * torch.rand(n, 2, device=device) - 1)
        return m


def _homography(dst: Tensor) -> Tensor:
    """(n, 3, 3) perspective matrices taking the corners of [-1, 1]^2 to the quads `dst` (n, 4, 2)."""
    src = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], device=dst.device)
    n = dst.shape[0]
    x, y = src[:, 0].expand(n, 4), src[:, 1].expand(n, 4)
    u, v = dst[..., 0], dst[..., 1]
    one, zero = torch.ones_like(u), torch.zeros_like(u)
    # u = (h0 x + h1 y + h2) / (h6 x + h7 y + 1), and v likewise with h3..h5: 2 linear rows per corner
    rows_u = torch.stack([x, y, one, zero, zero, zero, -u * x, -u * y], -1)  # (n, 4, 8)
    rows_v = torch.stack([zero, zero, zero, x, y, one, -v * x, -v * y], -1)
    h = torch.linalg.solve(torch.cat([rows_u, rows_v], 1), torch.cat([u, v], 1))  # (n, 8)
    return torch.cat([h, torch.ones(n, 1, device=dst.device)], 1).reshape(n, 3, 3)


class Warp(MatrixTransform):
    """Tilt each image in perspective, with probability p: its top edge narrows while its bottom edge
    widens by a random amount in [-magnitude, magnitude] (of the half-width), and likewise its left
    and right edges."""

    def __init__(self, magnitude: float = 0.2, p: float = 0.5) -> None:
        self.magnitude, self.p = magnitude, p

    def matrices(self, n: int, aspect: float, device: torch.device) -> Tensor:
        on = coin_flips(n, self.p, device)[:, None]
        mag = self.magnitude * (2 * torch.rand(n, 2, device=device) - 1) * on
        mx, my = mag[:, 0], mag[:, 1]
        corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], device=device)
        # the corners (TL, TR, BR, BL) move: x inwards at the top and outwards at the bottom by mx,
        # y inwards on the left and outwards on the right by my
        dx = torch.stack([mx, -mx, mx, -mx], 1)
        dy = torch.stack([my, -my, my, -my], 1)
        return _homography(corners + torch.stack([dx, dy], -1))


def _crop_matrix(
    n: int,
    in_aspect: float,
    out_aspect: float,
    min_scale: float,
    ratio: tuple[float, float],
    device: torch.device,
) -> Tensor:
    """(n, 3, 3): a random crop (area in [min_scale, 1], aspect ratio in `ratio` relative to the
    output's) when min_scale < 1, else the centred crop with the output's aspect ratio."""
    rel = out_aspect / in_aspect  # the crop's w / h, in normalised units, for an undistorted output
    m = _eye(n, device)
    if min_scale >= 1:
        m[:, 0, 0], m[:, 1, 1] = min(1.0, rel), min(1.0, 1 / rel)
        return m
    area = uniform(n, min_scale, 1.0, device)
    r = torch.exp(uniform(n, math.log(ratio[0]), math.log(ratio[1]), device)) * rel
    bw, bh = (area * r).sqrt().clamp(max=1), (area / r).sqrt().clamp(max=1)  # clamped: no retries
    m[:, 0, 0], m[:, 1, 1] = bw, bh
    m[:, :2, 2] = torch.stack([1 - bw, 1 - bh], 1) * (2 * torch.rand(n, 2, device=device) - 1)
    return m


def _base_grid(oh: int, ow: int, align_corners: bool, device: torch.device) -> Tensor:
    """(oh * ow, 3): each output pixel's normalised (x, y, 1), in grid_sample's convention."""

    def coords(k: int) -> Tensor:
        if align_corners:
            return torch.linspace(-1, 1, k, device=device)
        return (torch.arange(k, device=device) + 0.5) * (2 / k) - 1

    gy, gx = torch.meshgrid(coords(oh), coords(ow), indexing="ij")
    return torch.stack([gx, gy, torch.ones_like(gx)], -1).reshape(-1, 3)


def _grid(m: Tensor, out_hw: tuple[int, int], align_corners: bool) -> Tensor:
    """(n, oh, ow, 2) sampling grid: where each output pixel reads the input."""
    oh, ow = out_hw
    p = _base_grid(oh, ow, align_corners, m.device) @ m.transpose(1, 2)  # (n, oh * ow, 3)
    return (p[..., :2] / p[..., 2:]).reshape(m.shape[0], oh, ow, 2)


def _grid_units(w: int, h: int, align_corners: bool, device: torch.device) -> Tensor:
    """Points' [-1, 1] coordinates (pixel edges) times this are grid_sample's coordinates."""
    if not align_corners:
        return torch.ones(2, device=device)
    return torch.tensor([w / max(w - 1, 1), h / max(h - 1, 1)], device=device)  # ±1 are pixel centres


def _move_points(
    pts: Tensor, m: Tensor, in_wh: tuple[int, int], out_wh: tuple[int, int], align_corners: bool
) -> Tensor:
    """Points (n, k, 2) of the input -> where the same content lands in the output: through m's inverse."""
    p = pts.float() * _grid_units(*in_wh, align_corners, pts.device)
    ph = torch.cat([p, torch.ones_like(p[..., :1])], -1)  # (n, k, 3)
    q = ph @ torch.linalg.inv(m).transpose(1, 2)
    return (q[..., :2] / q[..., 2:]) / _grid_units(*out_wh, align_corners, pts.device)


def _sample(x: Tensor, grid: Tensor, mode: str, pad_mode: str, align_corners: bool) -> Tensor:
    """grid_sample for float or integer tensors (bs, c, h, w); integers are rounded back."""
    y = F.grid_sample(x if x.is_floating_point() else x.float(), grid, mode, pad_mode, align_corners)
    if x.is_floating_point():
        return y
    return y.round().clamp(torch.iinfo(x.dtype).min, torch.iinfo(x.dtype).max).to(x.dtype)


class AffineWarp(Transform):
    """Flips, rotations, zooms, warps and crops of a batch, composed into one resampling.

    Each image gets its own random matrix, the product of one per transform in `tfms`; images are
    sampled once with `mode` and `pad_mode` ("reflection", "zeros" or "border"), masks from the same
    grid with nearest neighbour, and points move through the inverse. `size` (an int or (h, w))
    resizes the batch, on the validation set too, where only a centred crop to the target's aspect
    ratio is applied; `min_scale` < 1 adds a random-resized crop on the training set. `batch=True`
    draws one matrix for the whole batch.

    >>> AffineWarp([Flip(), Rotate(30)], pad_mode="zeros")  # doctest: +SKIP
    """

    order = 30

    def __init__(
        self,
        tfms: Sequence[MatrixTransform],
        size: Size | None = None,
        mode: str = "bilinear",
        pad_mode: str = "reflection",
        align_corners: bool = False,
        min_scale: float = 1.0,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        batch: bool = False,
    ) -> None:
        check_choice("pad_mode", pad_mode, tuple(PAD_MODES))
        self.tfms, self.size = list(tfms), None if size is None else hw(size)
        self.mode, self.pad_mode, self.align_corners = mode, pad_mode, align_corners
        self.min_scale, self.ratio, self.batch = min_scale, ratio, batch
        self.split_idx = TRAIN if size is None else None  # a resize runs on the validation set too

    def matrices(
        self, n: int, in_wh: tuple[int, int], out_wh: tuple[int, int], train: bool, device: torch.device
    ) -> Tensor:
        """(n, 3, 3): the crop, then each transform's matrix, multiplied."""
        k = 1 if self.batch else n
        out_aspect = out_wh[0] / out_wh[1]
        min_scale = self.min_scale if train else 1.0
        m = _crop_matrix(k, in_wh[0] / in_wh[1], out_aspect, min_scale, self.ratio, device)
        for t in self.tfms if train else ():
            m = m @ t.matrices(k, out_aspect, device)
        return m.expand(n, 3, 3)

    def encodes(self, values: tuple, kinds: tuple[str, ...], split_idx: int) -> tuple:
        frame = frame_of(values, kinds)
        train = split_idx == TRAIN
        out_wh = frame if self.size is None or frame is None else (self.size[1], self.size[0])
        if frame is None or (not train and out_wh == frame):
            return values
        x = next(v for v, k in zip(values, kinds) if k in (IMAGE, MASK))
        m = self.matrices(x.shape[0], frame, out_wh, train, x.device)
        grid = _grid(m, (out_wh[1], out_wh[0]), self.align_corners)
        out = list(values)
        for i, (v, k) in enumerate(zip(values, kinds)):
            if k == IMAGE:
                out[i] = _sample(v, grid, self.mode, self.pad_mode, self.align_corners)
            elif k == MASK:
                out[i] = _sample(v[:, None], grid, "nearest", self.pad_mode, self.align_corners)[:, 0]
            elif k == POINTS:
                out[i] = _move_points(v, m, frame, out_wh, self.align_corners)
        return tuple(out)

    def to_config(self) -> dict:
        """What the validation set (and so inference) needs: the resize, not the random augmentations."""
        return {"tfms": [], "size": None if self.size is None else list(self.size), "mode": self.mode,
                "pad_mode": self.pad_mode, "align_corners": self.align_corners}  # fmt: skip

    def __repr__(self) -> str:
        return f"AffineWarp({self.tfms}, size={self.size}, pad_mode={self.pad_mode!r})"


register_config_type(AffineWarp)
