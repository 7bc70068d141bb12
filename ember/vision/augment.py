"""Vision transforms: item transforms on PIL images (per item, CPU) and batch transforms on tensors
(per batch, on the batch's device).

Every transform treats each value by its kind: images are resampled bilinearly, masks with nearest
neighbour (so no new class ids appear), points move with the image content, other kinds pass
through. Points that leave the image are kept, not dropped: their coordinates fall outside the
image (outside [-1, 1] after `ToTensor`), and a loss or metric can mask them if it must.

Coordinates are continuous: pixel column i spans [i, i + 1), so its centre is at i + 0.5; after
`ToTensor` points are scaled to [-1, 1] as `grid_sample(align_corners=False)` reads them.

>>> item_tfms = [Resize(224), ToTensor()]
>>> batch_tfms = [IntToFloatTensor(), *aug_transforms(), Normalize.from_stats(*imagenet_stats)]
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from ember.core.serial import register_config_type
from ember.data.transforms import IMAGE, MASK, POINTS, TRAIN, Transform

__all__ = [
    "AffineWarp",
    "Brightness",
    "Contrast",
    "Dihedral",
    "Flip",
    "IntToFloatTensor",
    "Lighting",
    "LogitTransform",
    "MatrixTransform",
    "Normalize",
    "RandomResizedCrop",
    "Resize",
    "Rotate",
    "ToTensor",
    "Warp",
    "Zoom",
    "aug_transforms",
]

Size = int | tuple[int, int]  # an int for a square, else (h, w) as in torch
Box = tuple[float, float, float, float]  # (left, top, right, bottom) as fractions of the width/height
Resamples = tuple[Image.Resampling, Image.Resampling]  # (for images, for masks)

_PAD_MODES = {"zeros": "constant", "border": "edge", "reflection": "symmetric"}  # grid_sample -> numpy
_BILINEAR_NEAREST = (Image.Resampling.BILINEAR, Image.Resampling.NEAREST)


def _hw(size: Size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _check_choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}")


# ---------------------------------------------------------------------------------------------------
# Item transforms: PIL images and masks, points in pixel coordinates


def _frame(values: tuple, kinds: Sequence[str]) -> tuple[int, int] | None:
    """(w, h) of the item's first image, else its first mask: the frame its points live in."""
    for kind in (IMAGE, MASK):
        for v, k in zip(values, kinds):
            if k == kind:
                return v.size if isinstance(v, Image.Image) else (v.shape[-1], v.shape[-2])
    if POINTS in kinds:
        raise ValueError("points need an image or a mask in the same item: their size is the points' frame")
    return None


def _pil_frame(values: tuple, kinds: Sequence[str], tfm: Transform) -> tuple[int, int] | None:
    """`_frame`, after checking that the item's images and masks are still PIL images."""
    for v, k in zip(values, kinds):
        if k in (IMAGE, MASK) and not isinstance(v, Image.Image):
            raise TypeError(
                f"{tfm!r} is an item transform for PIL images, got a {type(v).__name__} {k}: use it in "
                "item_tfms (it runs before ToTensor), or resize batches with aug_transforms(size=...)"
            )
    return _frame(values, kinds)


def _aspect_box(frame: tuple[int, int], out_wh: tuple[int, int], fx: float, fy: float) -> Box:
    """The largest box with `out_wh`'s aspect ratio; (fx, fy) in [0, 1] place it in the free space."""
    (w, h), (tw, th) = frame, out_wh
    bw, bh = min(1.0, (tw / th) / (w / h)), min(1.0, (w / h) / (tw / th))
    x0, y0 = (1 - bw) * fx, (1 - bh) * fy
    return (x0, y0, x0 + bw, y0 + bh)


def _crop_resize(
    values: tuple, kinds: Sequence[str], box: Box, out_wh: tuple[int, int], resamples: Resamples
) -> tuple:
    """Crop `box` from each image and mask and resize it to `out_wh`; move the points to match."""
    fw, fh = _frame(values, kinds) or (1, 1)  # (1, 1) when the item has no image, mask nor points
    out = list(values)
    for i, (v, k) in enumerate(zip(values, kinds)):
        if k in (IMAGE, MASK):
            w, h = v.size  # a mask may have another resolution than its image: the box is relative
            pix = (box[0] * w, box[1] * h, box[2] * w, box[3] * h)
            gap = 3.0 if k == IMAGE else None  # a fast integer reduce first; 3 is visually lossless
            out[i] = v.resize(out_wh, resamples[k == MASK], box=pix, reducing_gap=gap)
        elif k == POINTS:
            origin = torch.tensor([box[0] * fw, box[1] * fh])
            scale = torch.tensor([out_wh[0] / ((box[2] - box[0]) * fw), out_wh[1] / ((box[3] - box[1]) * fh)])
            out[i] = (torch.as_tensor(v, dtype=torch.float32) - origin) * scale
    return tuple(out)


def _pad_pil(img: Image.Image, ltrb: tuple[int, int, int, int], pad_mode: str) -> Image.Image:
    left, top, right, bottom = ltrb
    a = np.asarray(img)
    widths = ((top, bottom), (left, right)) + ((0, 0),) * (a.ndim - 2)
    out = Image.fromarray(np.pad(a, widths, mode=_PAD_MODES[pad_mode]))
    if img.mode == "P":
        out.putpalette(img.getpalette())  # numpy kept the indices; the palette must come along
    return out


def _fit_pad(
    values: tuple, kinds: Sequence[str], out_wh: tuple[int, int], pad_mode: str, resamples: Resamples
) -> tuple:
    """Resize each image and mask to fit inside `out_wh`, centred, and pad the rest; move the points."""
    (w, h), (tw, th) = _frame(values, kinds) or (1, 1), out_wh
    s = min(tw / w, th / h)  # the scale that fits
    nw, nh = min(tw, max(1, round(w * s))), min(th, max(1, round(h * s)))
    left, top = (tw - nw) // 2, (th - nh) // 2
    ltrb = (left, top, tw - nw - left, th - nh - top)
    out = list(values)
    for i, (v, k) in enumerate(zip(values, kinds)):
        if k in (IMAGE, MASK):
            out[i] = _pad_pil(v.resize((nw, nh), resamples[k == MASK]), ltrb, pad_mode)
        elif k == POINTS:
            scale, shift = torch.tensor([nw / w, nh / h]), torch.tensor([left, top])
            out[i] = torch.as_tensor(v, dtype=torch.float32) * scale + shift
    return tuple(out)


class Resize(Transform):
    """Resize each item's images, masks and points to `size` (an int, or (h, w)).

    `method`: "crop" takes the largest region with the target's aspect ratio (at random on the
    training set, centred on the validation set) then resizes it; "pad" fits the whole image inside
    and pads the rest with `pad_mode` ("reflection", "zeros" or "border"); "squish" resizes, ignoring
    the aspect ratio.

    >>> Resize(2, method="squish").encodes((Image.new("RGB", (8, 4)),), ("image",), 1)[0].size
    (2, 2)
    """

    order = 1

    def __init__(
        self,
        size: Size,
        method: str = "crop",
        pad_mode: str = "reflection",
        resamples: Resamples = _BILINEAR_NEAREST,
    ) -> None:
        _check_choice("Resize method", method, ("crop", "pad", "squish"))
        _check_choice("Resize pad_mode", pad_mode, tuple(_PAD_MODES))
        self.size, self.method, self.pad_mode, self.resamples = _hw(size), method, pad_mode, resamples

    def encodes(self, values: tuple, kinds: tuple[str, ...], split_idx: int) -> tuple:
        frame = _pil_frame(values, kinds, self)
        if frame is None:
            return values
        out_wh = (self.size[1], self.size[0])
        if self.method == "pad":
            return _fit_pad(values, kinds, out_wh, self.pad_mode, self.resamples)
        if self.method == "squish":
            return _crop_resize(values, kinds, (0.0, 0.0, 1.0, 1.0), out_wh, self.resamples)
        fx, fy = (random.random(), random.random()) if split_idx == TRAIN else (0.5, 0.5)
        return _crop_resize(values, kinds, _aspect_box(frame, out_wh, fx, fy), out_wh, self.resamples)

    def to_config(self) -> dict:
        return {"size": list(self.size), "method": self.method, "pad_mode": self.pad_mode,
                "resamples": [int(r) for r in self.resamples]}  # fmt: skip

    def __repr__(self) -> str:
        return f"Resize(size={self.size}, method={self.method!r})"


def _random_box(frame: tuple[int, int], min_scale: float, ratio: tuple[float, float]) -> Box | None:
    """A box of random area (a fraction in [min_scale, 1]) and aspect ratio, or None if 10 tries miss."""
    w, h = frame
    for _ in range(10):
        area = random.uniform(min_scale, 1.0)
        r = math.exp(random.uniform(math.log(ratio[0]), math.log(ratio[1])))  # the box's w / h in pixels
        bw, bh = math.sqrt(area * r * h / w), math.sqrt(area * w / (r * h))
        if bw <= 1 and bh <= 1:
            x0, y0 = random.uniform(0, 1 - bw), random.uniform(0, 1 - bh)
            return (x0, y0, x0 + bw, y0 + bh)
    return None


def _shrink(box: Box, f: float) -> Box:
    """`box` scaled by `f` about its centre."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    hw, hh = (box[2] - box[0]) * f / 2, (box[3] - box[1]) * f / 2
    return (cx - hw, cy - hh, cx + hw, cy + hh)


class RandomResizedCrop(Transform):
    """On the training set, crop a random area (a fraction in [min_scale, 1]) with a random aspect
    ratio in `ratio` and resize it to `size`; on the validation set, crop the centre.

    The validation crop is the largest centred box with the target's aspect ratio, less a margin:
    it is what remains after resizing that box to `size * (1 + val_xtra)` and cropping `size`.
    When 10 random tries do not fit in the image, the training crop falls back to the centred box
    with the nearest aspect ratio in `ratio`.

    >>> RandomResizedCrop(4).encodes((Image.new("RGB", (8, 6)),), ("image",), 0)[0].size
    (4, 4)
    """

    order = 1

    def __init__(
        self,
        size: Size,
        min_scale: float = 0.08,
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        resamples: Resamples = _BILINEAR_NEAREST,
        val_xtra: float = 0.14,
    ) -> None:
        self.size, self.min_scale, self.ratio = _hw(size), min_scale, ratio
        self.resamples, self.val_xtra = resamples, val_xtra

    def encodes(self, values: tuple, kinds: tuple[str, ...], split_idx: int) -> tuple:
        frame = _pil_frame(values, kinds, self)
        if frame is None:
            return values
        out_wh = (self.size[1], self.size[0])
        box = _random_box(frame, self.min_scale, self.ratio) if split_idx == TRAIN else None
        if box is None and split_idx == TRAIN:
            r = min(max(frame[0] / frame[1], self.ratio[0]), self.ratio[1])
            box = _aspect_box(frame, (r, 1), 0.5, 0.5)
        if box is None:
            box = _shrink(_aspect_box(frame, out_wh, 0.5, 0.5), 1 / (1 + self.val_xtra))
        return _crop_resize(values, kinds, box, out_wh, self.resamples)

    def to_config(self) -> dict:
        return {"size": list(self.size), "min_scale": self.min_scale, "ratio": list(self.ratio),
                "resamples": [int(r) for r in self.resamples], "val_xtra": self.val_xtra}  # fmt: skip

    def __repr__(self) -> str:
        return f"RandomResizedCrop(size={self.size}, min_scale={self.min_scale})"


def _to_tensor(v: object, kind: str, frame: tuple[int, int] | None) -> object:
    if kind == IMAGE and isinstance(v, Image.Image):
        a = np.asarray(v)  # (h, w, c), or (h, w) for mode "L"
        chw = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        return torch.from_numpy(chw.copy())  # the copy is contiguous and writable
    if kind == MASK and isinstance(v, Image.Image):
        return torch.from_numpy(np.array(v, dtype=np.int64))  # (h, w) class ids
    if kind == POINTS and frame is not None:
        w, h = frame
        return torch.as_tensor(v, dtype=torch.float32).reshape(-1, 2) * torch.tensor([2 / w, 2 / h]) - 1
    return v


class ToTensor(Transform):
    """PIL image -> uint8 tensor (c, h, w); mask -> int64 tensor (h, w); pixel points -> [-1, 1].

    Points are scaled by the item's image size (its mask's when it has no image): x * 2 / w - 1.
    Decoding leaves values as tensors; `show_points` draws [-1, 1] points directly.

    >>> ToTensor().encodes((Image.new("RGB", (4, 2)),), ("image",), 1)[0].shape
    torch.Size([3, 2, 4])
    """

    order = 5

    def encodes(self, values: tuple, kinds: tuple[str, ...], split_idx: int) -> tuple:
        frame = _frame(values, kinds)
        return tuple(_to_tensor(v, k, frame) for v, k in zip(values, kinds))

    def to_config(self) -> dict:
        return {}


# ---------------------------------------------------------------------------------------------------
# Batch transforms: tensors (bs, c, h, w) images, (bs, h, w) masks, (bs, n, 2) points in [-1, 1]


def _map_kind(values: tuple, kinds: Sequence[str], kind: str, f: Callable[[Tensor], Tensor]) -> tuple:
    return tuple(f(v) if k == kind else v for v, k in zip(values, kinds))


class IntToFloatTensor(Transform):
    """uint8 images -> float images in [0, 1] (divided by `div`); masks stay int64. Decodes to uint8."""

    order = 10

    def __init__(self, div: float = 255.0) -> None:
        self.div = div

    def encodes(self, values: tuple, kinds: tuple[str, ...], split_idx: int) -> tuple:
        return _map_kind(values, kinds, IMAGE, lambda x: x if x.is_floating_point() else x.float() / self.div)

    def decodes(self, values: tuple, kinds: tuple[str, ...]) -> tuple:
        def to_uint8(x: Tensor) -> Tensor:
            return (x * self.div).round().clamp(0, 255).to(torch.uint8) if x.is_floating_point() else x

        return _map_kind(values, kinds, IMAGE, to_uint8)

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
        return _map_kind(values, kinds, IMAGE, self._norm)

    def decodes(self, values: tuple, kinds: tuple[str, ...]) -> tuple:
        return _map_kind(values, kinds, IMAGE, self._denorm)

    def to_config(self) -> dict:
        return {"mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()})"


def _uniform(n: int, lo: float, hi: float, device: torch.device) -> Tensor:
    return torch.rand(n, device=device) * (hi - lo) + lo


def _chosen(n: int, p: float, device: torch.device) -> Tensor:
    """(n,) bools: which images this augmentation applies to, each with probability p."""
    return torch.rand(n, device=device) < p


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
        m[:, 0, 0] = torch.where(_chosen(n, self.p, device), -1.0, 1.0)
        return m


class Dihedral(MatrixTransform):
    """With probability p, one of the 8 flips and quarter turns of the square, at random."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def matrices(self, n: int, aspect: float, device: torch.device) -> Tensor:
        k = torch.randint(0, 8, (n,), device=device) * _chosen(n, self.p, device)  # 0 is the identity
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
        deg = _uniform(n, -self.max_deg, self.max_deg, device) * _chosen(n, self.p, device)
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
        chosen = _chosen(n, self.p, device)
        s = torch.where(chosen, _uniform(n, self.min_zoom, self.max_zoom, device), 1.0)
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
        mag = self.magnitude * (2 * torch.rand(n, 2, device=device) - 1) * _chosen(n, self.p, device)[:, None]
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
    area = _uniform(n, min_scale, 1.0, device)
    r = torch.exp(_uniform(n, math.log(ratio[0]), math.log(ratio[1]), device)) * rel
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
        _check_choice("pad_mode", pad_mode, tuple(_PAD_MODES))
        self.tfms, self.size = list(tfms), None if size is None else _hw(size)
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
        frame = _frame(values, kinds)
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
        b = _uniform(n, 0.5 * (1 - self.max_lighting), 0.5 * (1 + self.max_lighting), device)
        b = torch.where(_chosen(n, self.p, device), b, 0.5)
        return torch.ones(n, device=device), _logit(b)


class Contrast(LogitTransform):
    """Raise or lower each image's contrast, with probability p: logit(x) is multiplied by a factor
    drawn log-uniformly in [1 - max_lighting, 1 / (1 - max_lighting)]."""

    def __init__(self, max_lighting: float = 0.2, p: float = 0.75) -> None:
        self.max_lighting, self.p = max_lighting, p

    def params(self, n: int, device: torch.device) -> tuple[Tensor, Tensor]:
        lim = -math.log(1 - self.max_lighting)
        c = torch.where(_chosen(n, self.p, device), torch.exp(_uniform(n, -lim, lim, device)), 1.0)
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
        return values if split_idx != TRAIN else _map_kind(values, kinds, IMAGE, self._light)

    def __repr__(self) -> str:
        return f"Lighting({self.tfms})"


def aug_transforms(
    mult: float = 1.0,
    do_flip: bool = True,
    flip_vert: bool = False,
    max_rotate: float = 10.0,
    min_zoom: float = 1.0,
    max_zoom: float = 1.1,
    max_lighting: float = 0.2,
    max_warp: float = 0.2,
    p_affine: float = 0.75,
    p_lighting: float = 0.75,
    xtra_tfms: Sequence[Transform] | None = None,
    size: Size | None = None,
    mode: str = "bilinear",
    pad_mode: str = "reflection",
    align_corners: bool = False,
    batch: bool = False,
    min_scale: float = 1.0,
) -> list[Transform]:
    """The course's standard batch augmentations: one `AffineWarp` (flip, rotate, zoom, warp, and a
    resize/random crop when `size` is given) and one `Lighting` (brightness, contrast).

    `mult` scales max_rotate, max_lighting and max_warp. `flip_vert` flips and turns in all 8 ways
    (`Dihedral`) instead of only left-right.

    >>> [type(t).__name__ for t in aug_transforms()]
    ['AffineWarp', 'Lighting']
    """
    max_rotate, max_lighting, max_warp = max_rotate * mult, max_lighting * mult, max_warp * mult
    geo: list[MatrixTransform] = []
    if do_flip:
        geo.append(Dihedral(p=0.5) if flip_vert else Flip(p=0.5))
    if max_rotate:
        geo.append(Rotate(max_rotate, p=p_affine))
    if min_zoom < 1 or max_zoom > 1:
        geo.append(Zoom(min_zoom, max_zoom, p=p_affine))
    if max_warp:
        geo.append(Warp(max_warp, p=p_affine))
    tfms: list[Transform] = []
    if geo or size is not None or min_scale < 1:
        tfms.append(AffineWarp(geo, size, mode, pad_mode, align_corners, min_scale, batch=batch))
    if max_lighting:
        tfms.append(
            Lighting([Brightness(max_lighting, p_lighting), Contrast(max_lighting, p_lighting)], batch)
        )
    return tfms + list(xtra_tfms or [])


register_config_type(Resize, RandomResizedCrop, ToTensor, IntToFloatTensor, Normalize, AffineWarp)
