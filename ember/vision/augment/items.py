"""Item transforms: per item on the CPU, on PIL images and masks and on points in pixel coordinates.

`Resize` and `RandomResizedCrop` resample an image bilinearly and its mask with nearest neighbour, and
move its points; `ToTensor` makes tensors of them (points scaled to [-1, 1]).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ember.core.serial import register_config_type
from ember.data.transforms import TRAIN, Transform
from ember.vision.augment._common import PAD_MODES, Size, check_choice, frame_of, hw
from ember.vision.kinds import IMAGE, MASK, POINTS

__all__ = ["RandomResizedCrop", "Resize", "ToTensor"]

Box = tuple[float, float, float, float]  # (left, top, right, bottom) as fractions of the width/height
Resamples = tuple[Image.Resampling, Image.Resampling]  # (for images, for masks)

_BILINEAR_NEAREST = (Image.Resampling.BILINEAR, Image.Resampling.NEAREST)


def _pil_frame(values: tuple, kinds: Sequence[str], tfm: Transform) -> tuple[int, int] | None:
    """`frame_of`, after checking that the item's images and masks are still PIL images."""
    for v, k in zip(values, kinds):
        if k in (IMAGE, MASK) and not isinstance(v, Image.Image):
            raise TypeError(
                f"{tfm!r} is an item transform for PIL images, got a {type(v).__name__} {k}: use it in "
                "item_tfms (it runs before ToTensor), or resize batches with aug_transforms(size=...)"
            )
    return frame_of(values, kinds)


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
    fw, fh = frame_of(values, kinds) or (1, 1)  # (1, 1) when the item has no image, mask nor points
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
    out = Image.fromarray(np.pad(a, widths, mode=PAD_MODES[pad_mode]))
    if img.mode == "P":
        out.putpalette(img.getpalette())  # numpy kept the indices; the palette must come along
    return out


def _fit_pad(
    values: tuple, kinds: Sequence[str], out_wh: tuple[int, int], pad_mode: str, resamples: Resamples
) -> tuple:
    """Resize each image and mask to fit inside `out_wh`, centred, and pad the rest; move the points."""
    (w, h), (tw, th) = frame_of(values, kinds) or (1, 1), out_wh
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
        check_choice("Resize method", method, ("crop", "pad", "squish"))
        check_choice("Resize pad_mode", pad_mode, tuple(PAD_MODES))
        self.size, self.method, self.pad_mode, self.resamples = hw(size), method, pad_mode, resamples

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
        self.size, self.min_scale, self.ratio = hw(size), min_scale, ratio
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
        frame = frame_of(values, kinds)
        return tuple(_to_tensor(v, k, frame) for v, k in zip(values, kinds))

    def to_config(self) -> dict:
        return {}


register_config_type(Resize, RandomResizedCrop, ToTensor)
