"""Segmentation masks as files: a palette PNG that is both a picture and a training label, and an overlay of
a mask on its image, each class in the colour `MaskBlock.show` and `show_mask` give it.

>>> mask, _, probs = learn.predict("scan.png")  # doctest: +SKIP
>>> save_mask(mask, "scan.mask.png", codes)  # pixel values 0..n-1, shown in colour  # doctest: +SKIP
>>> overlay_mask(open_image("scan.png"), mask, codes).save("scan.overlay.png")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ember.core.utils import atomic_write
from ember.vision.core import MASK_CMAP

__all__ = ["mask_colours", "overlay_mask", "resize_mask", "save_mask"]

MaskLike = torch.Tensor | np.ndarray | Image.Image


def mask_colours(n_classes: int) -> np.ndarray:
    """The RGB colour (n_classes, 3) uint8 of each class: `show_mask`'s, class i at `cmap(i / vmax)` with
    `vmax = max(19, n_classes - 1)`. Up to 20 classes that is tab20's colour i, as `show_mask` draws it;
    with more, `show_mask` stretches the map to each mask's largest value while these colours stay fixed
    for the model's classes, so that every file of a run agrees.

    >>> mask_colours(2).tolist()
    [[31, 119, 180], [174, 199, 232]]
    """
    import matplotlib as mpl

    cmap = mpl.colormaps[MASK_CMAP]
    vmax = max(cmap.N - 1, n_classes - 1)
    rgba = cmap(np.arange(n_classes) / vmax)  # (n, 4) floats in [0, 1]
    return np.rint(rgba[:, :3] * 255).astype(np.uint8)


def _indices(mask: MaskLike) -> np.ndarray:
    """A mask (h, w) of class indices as an int64 array."""
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    a = np.asarray(mask)
    if a.ndim != 2 or a.dtype.kind not in "biu":
        raise ValueError(f"expected a mask of class indices (h, w) of integers; got {a.dtype} {a.shape}")
    return a.astype(np.int64)


def _n_classes(a: np.ndarray, codes: Sequence[str] | None) -> int:
    """How many classes to colour: the codes', checked against the mask's values."""
    if a.size and a.min() < 0:
        raise ValueError(f"the mask has the negative value {int(a.min())}; class indices start at 0")
    top = int(a.max(initial=0))
    if codes is not None and len(codes) and top >= len(codes):
        raise ValueError(
            f"the mask has the value {top} but there are {len(codes)} codes ({', '.join(map(str, codes))}): "
            f"a mask holds class indices 0..{len(codes) - 1}"
        )
    return max(len(codes or ()), top + 1)


def overlay_mask(
    img: Image.Image,
    mask: MaskLike,
    codes: Sequence[str] | None = None,
    alpha: float = 0.5,
    bkg_idx: int | None = 0,
) -> Image.Image:
    """`img` (RGB) with each pixel's class tinted over it in `mask_colours`, at opacity `alpha`.

    The background class `bkg_idx` (0, as for `foreground_acc`) is left untinted, so that the image shows
    through where nothing was found; `bkg_idx=None` tints every class, as `show_mask` does. A mask of
    another size than `img` is resized to it with nearest neighbour (class indices are never blended).

    >>> overlay_mask(Image.new("RGB", (4, 4)), torch.ones(2, 2, dtype=torch.long)).getpixel((0, 0))
    (87, 100, 116)
    """
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha is {alpha}; give an opacity between 0 and 1")
    a = _indices(mask)
    colours = mask_colours(_n_classes(a, codes))
    if (a.shape[1], a.shape[0]) != img.size:
        a = resize_mask(a, img.size)
    base = np.asarray(img.convert("RGB"), dtype=np.float32)  # (h, w, 3)
    weight = np.full(a.shape, alpha, np.float32) if bkg_idx is None else np.where(a != bkg_idx, alpha, 0)
    weight = weight.astype(np.float32)[..., None]  # (h, w, 1)
    out = base * (1 - weight) + colours[a].astype(np.float32) * weight
    return Image.fromarray(np.rint(out).astype(np.uint8))


def resize_mask(mask: MaskLike, size: tuple[int, int]) -> np.ndarray:
    """A mask (h, w) of class indices resized to `size` (w, h) with nearest neighbour, as an int64 array."""
    a = _indices(mask)
    if (a.shape[1], a.shape[0]) == tuple(size):
        return a
    mode = "L" if a.size == 0 or (a.min() >= 0 and a.max() < 256) else "I"
    resized = Image.fromarray(a.astype(np.uint8 if mode == "L" else np.int32)).resize(
        tuple(size), Image.Resampling.NEAREST
    )
    return np.asarray(resized).astype(np.int64)


def save_mask(mask: MaskLike, path: str | os.PathLike, codes: Sequence[str] | None = None) -> Path:
    """Write `mask` (h, w) of class indices as a palette PNG at `path`, atomically: each pixel's value is
    its class index, so the file is a label `MaskBlock` reads as it is, and the palette shows each class
    in its `mask_colours` colour. A value that is not one of `codes`' indices, or over 255, is an error.

    >>> save_mask(torch.tensor([[0, 1], [1, 0]]), "x.mask.png", ["background", "cell"])  # doctest: +SKIP
    """
    a = _indices(mask)
    n = _n_classes(a, codes)
    if n > 256:
        raise ValueError(f"{path}: a palette PNG holds up to 256 classes; this mask has {n}")
    palette = np.zeros((256, 3), np.uint8)
    palette[:n] = mask_colours(n)
    png = Image.fromarray(a.astype(np.uint8))  # mode "L"; the palette makes it "P", the values unchanged
    png.putpalette(palette.flatten().tolist())
    with atomic_write(path) as f:
        png.save(f, format="PNG")
    return Path(path)
