"""Image values: finding image files, loading them as PIL images, and showing images, masks and points.

Before `ToTensor` an image is a plain `PIL.Image.Image` (mode "RGB", or "L" for black and white) and a
mask is a PIL image of class indices (mode "L", "P" or "I"). `PILImage`, `PILImageBW` and `PILMask` are
not types of values: they only say how to make one, with `create`. Every image file is read by
`open_image` (upright by its EXIF orientation, in RGB or L), in training, `learn.predict` and `ember serve`.

>>> img = PILImage.create("cat.jpg")  # doctest: +SKIP
>>> ax = show_image(img, title="cat")  # doctest: +SKIP
"""

from __future__ import annotations

import io
import mimetypes
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from ember.data.errors import DataError
from ember.data.getters import get_files

__all__ = [
    "ImageLoadError",
    "ImageTooLarge",
    "PILImage",
    "PILImageBW",
    "PILMask",
    "get_image_files",
    "image_extensions",
    "image_size",
    "imagenet_stats",
    "open_image",
    "show_image",
    "show_mask",
    "show_points",
]

# Per-channel mean and std of ImageNet's training images (RGB, in [0, 1]).
imagenet_stats = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])

ImageSource = str | Path | bytes | Image.Image | np.ndarray | Tensor

image_extensions: set[str] = {k for k, v in mimetypes.types_map.items() if v.startswith("image/")} | {".webp"}


def get_image_files(
    path: str | os.PathLike, recurse: bool = True, folders: Sequence[str] | None = None
) -> list[Path]:
    """Image files under `path` (by extension), sorted.

    >>> fnames = get_image_files(path / "images")  # doctest: +SKIP
    """
    return get_files(path, extensions=image_extensions, recurse=recurse, folders=folders)


class ImageLoadError(DataError):
    """An image file that is missing, unreadable, corrupt or truncated."""


class ImageTooLarge(ImageLoadError):
    """An image whose header claims more pixels than the caller's `max_pixels` (refused undecoded)."""


# Transparent pixels are shown on white, as an image viewer shows them: the colour a file keeps under
# alpha 0 is arbitrary (often black), and a model should not learn from it.
BACKGROUND = (255, 255, 255)


def open_image(
    source: str | Path | bytes | BinaryIO | Image.Image,
    mode: str | None = "RGB",
    draft: tuple[int, int] | None = None,
    max_pixels: int | None = None,
    name: str | None = None,
) -> Image.Image:
    """Decode an image upright and in `mode`: the one way training, `learn.predict` and `ember serve`
    read an image, so that all three see the same pixels.

    `source` is a path, the file's bytes, a binary file object or a PIL image. The EXIF orientation is
    applied (a phone photo taken upright comes out upright). 16-bit greyscale is scaled to 8 bits;
    transparent pixels (RGBA, LA, a palette with transparency) are composited onto white (`BACKGROUND`);
    CMYK and palettes become RGB. `mode=None` keeps the file's mode (for masks). `max_pixels` refuses,
    from the header and before any pixel is decoded, an image larger than that (`ImageTooLarge`).
    `draft=(w, h)` lets a JPEG decode at 1/2, 1/4 or 1/8 scale, no smaller than (w, h) once upright.
    `name` is what errors call the image (default: the path, or "<bytes>").

    >>> open_image(Image.new("I;16", (4, 2), 65535)).getpixel((0, 0))
    (255, 255, 255)
    """
    name = name or _source_name(source)
    img = source if isinstance(source, Image.Image) else _open_header(source, name)
    if max_pixels is not None and img.width * img.height > max_pixels:
        raise ImageTooLarge(
            f"{name} is {img.width}x{img.height} = {img.width * img.height / 1e6:.1f} megapixels, over the "
            f"limit of {max_pixels / 1e6:.1f} megapixels: resize it first"
        )
    if draft is not None and img.format == "JPEG":  # a JPEG's EXIF is in its header: read before decoding
        img.draft(img.mode, draft if _orientation(img) < 5 else draft[::-1])  # 5 to 8: a quarter turn
    _decode(img, name)
    if _orientation(img) != 1:
        img = ImageOps.exif_transpose(img)
    return img if mode is None else _convert(img, mode)


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation, 1 to 8 (1: upright as stored)."""
    try:
        return int(img.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # a damaged EXIF block: the pixels are still good, shown as stored (as viewers do)
        return 1


def _source_name(source: str | Path | bytes | BinaryIO | Image.Image) -> str:
    if isinstance(source, str | Path):
        return str(source)
    if isinstance(source, bytes):
        return "<bytes>"
    if isinstance(source, Image.Image):
        return "<PIL image>"
    return str(getattr(source, "name", "<file object>"))


def _open_header(source: str | Path | bytes | BinaryIO, name: str) -> Image.Image:
    """Read the header only (format, size, EXIF); no pixel is decoded yet."""
    if isinstance(source, bytes) and not source:
        raise ImageLoadError(f"{name} is empty (0 bytes): expected an image file (JPEG, PNG, WebP, ...)")
    try:
        return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except FileNotFoundError as e:
        raise ImageLoadError(f"image file {name} does not exist; check the path or the getter") from e
    except Image.DecompressionBombError as e:  # Pillow's own limit, hit before the size could be read
        raise ImageTooLarge(f"{name} is refused as a decompression bomb ({e})") from e
    except UnidentifiedImageError as e:
        start = f"; it starts {source[:8]!r}" if isinstance(source, bytes) else ""
        raise ImageLoadError(
            f"{name} is not an image (its format is not one Pillow reads{start}): expected a JPEG, PNG, "
            "WebP, GIF, BMP or TIFF file; remove or replace it"
        ) from e
    except Exception as e:  # a header Pillow recognises but cannot parse
        raise ImageLoadError(
            f"{name} has a damaged or truncated image header ({type(e).__name__}: {e}); remove or replace it"
        ) from e


def _decode(img: Image.Image, name: str) -> None:
    """Decode every pixel now, so that a truncated file fails here rather than in a later resize."""
    try:
        img.load()
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, struct.error, ...
        raise ImageLoadError(
            f"{name} is a damaged or truncated {img.format or ''} image ({type(e).__name__}: {e}); the "
            "file is corrupt or cut short: remove or replace it"
        ) from e


def _convert(img: Image.Image, mode: str) -> Image.Image:
    """`img` in `mode` ("RGB" or "L"), with 16-bit values scaled and transparency shown on white."""
    if img.mode == mode:
        return img
    if img.mode.startswith("I;16"):
        a = np.asarray(img, dtype=np.uint32)  # (h, w) in [0, 65535]
        img = Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8))  # rounded: 65535 -> 255
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info):
        img = Image.alpha_composite(Image.new("RGBA", img.size, (*BACKGROUND, 255)), img.convert("RGBA"))
    return img.convert(mode)


def _from_array(a: np.ndarray | Tensor, what: str) -> Image.Image:
    """A PIL image from an (h, w) or (h, w, c) array, or a (c, h, w) or (h, w) tensor."""
    if isinstance(a, Tensor):
        t = a.detach().cpu()
        if t.ndim == 3:
            t = t.permute(1, 2, 0)  # (c, h, w) -> (h, w, c)
        a = t.numpy()
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(
            f"{what}: expected an array (h, w) or (h, w, 3|4), or a tensor (c, h, w); got {a.shape}"
        )
    if a.dtype.kind == "f":
        a = (np.clip(a, 0.0, 1.0) * 255).round().astype(np.uint8)  # float images are in [0, 1]
    elif a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(a))


class PILImage:
    """Make an RGB image from a path, bytes, a PIL image, an array or a tensor.

    Files and PIL images are read by `open_image`: turned upright by their EXIF orientation, 16-bit
    greyscale scaled to 8 bits, transparent pixels shown on white, CMYK and palettes made RGB. Arrays
    and tensors of floats are read as [0, 1].
    `draft=(w, h)` lets a JPEG decode at a reduced scale no smaller than (w, h): faster, but only for
    items whose other values (points) do not depend on the original size.

    >>> PILImage.create(np.zeros((4, 6, 3), np.uint8)).size
    (6, 4)
    """

    mode = "RGB"

    @classmethod
    def create(cls, src: ImageSource, draft: tuple[int, int] | None = None) -> Image.Image:
        if isinstance(src, np.ndarray | Tensor):
            return open_image(_from_array(src, cls.__name__), cls.mode)
        if isinstance(src, str | Path | bytes | Image.Image):
            return open_image(src, cls.mode, draft)  # upright (EXIF), 16 bits scaled, alpha on white
        raise TypeError(
            f"{cls.__name__}.create takes a path, bytes, PIL image, array or tensor; got {type(src)}"
        )


class PILImageBW(PILImage):
    """Make a black-and-white (mode "L") image from the same sources as `PILImage`."""

    mode = "L"


def _mask_indices(img: Image.Image, name: str) -> Image.Image:
    """Keep a mask's class indices: "L", "P" and "I" stay; other modes are reduced to one index per pixel."""
    if img.mode in ("L", "P", "I"):
        return img
    a = np.asarray(img)
    if a.ndim == 3:
        if not (a == a[:, :, :1]).all():
            raise DataError(
                f"mask {name} is a colour image ({img.mode}); a mask must hold one class index per pixel: "
                "map its colours to indices first (or save it in mode 'L' or 'P')"
            )
        a = a[:, :, 0]
    if a.dtype == np.bool_ or a.max(initial=0) < 256:
        return Image.fromarray(a.astype(np.uint8))
    return Image.fromarray(a.astype(np.int32))


class PILMask:
    """Make a mask of class indices; its pixel values are never rescaled or interpolated.

    >>> PILMask.create(np.array([[0, 1], [2, 1]], np.uint8)).getpixel((0, 1))
    2
    """

    @classmethod
    def create(cls, src: ImageSource) -> Image.Image:
        if isinstance(src, str | Path | bytes | Image.Image):
            return _mask_indices(open_image(src, mode=None), _source_name(src))  # upright, like its image
        if isinstance(src, Tensor):
            src = src.detach().cpu().numpy()
        if isinstance(src, np.ndarray):
            if src.ndim != 2 or src.dtype.kind not in "biu":
                raise ValueError(
                    f"PILMask: expected an integer array (h, w) of class indices; got {src.dtype} {src.shape}"
                )
            return _mask_indices(Image.fromarray(src.astype(np.int32)), "<array>")
        raise TypeError(f"PILMask.create takes a path, bytes, PIL image, array or tensor; got {type(src)}")


def image_size(img: Image.Image | Tensor | np.ndarray) -> tuple[int, int]:
    """(w, h) of a PIL image, a tensor (..., h, w) or an array (h, w[, c]).

    >>> image_size(torch.zeros(3, 4, 6))
    (6, 4)
    """
    if isinstance(img, Image.Image):
        return img.size
    if isinstance(img, Tensor):
        return img.shape[-1], img.shape[-2]
    return img.shape[1], img.shape[0]


def _to_display(img: Image.Image | Tensor | np.ndarray) -> np.ndarray:
    """An (h, w) or (h, w, c) array that `imshow` draws as is."""
    if isinstance(img, Image.Image):
        return np.asarray(img)
    if isinstance(img, Tensor):
        t = img.detach().cpu()
        if t.is_floating_point():
            t = t.float().clamp(0, 1)
        a = (t.permute(1, 2, 0) if t.ndim == 3 else t).numpy()
    else:
        a = img
    return a[:, :, 0] if a.ndim == 3 and a.shape[2] == 1 else a


def _new_ax(ax: Any, figsize: tuple[float, float] | None) -> Any:
    if ax is None:
        import matplotlib.pyplot as plt  # imported here: loading ember.vision needs no plotting backend

        _, ax = plt.subplots(figsize=figsize)
    return ax


def show_image(
    img: Image.Image | Tensor | np.ndarray,
    ax: Any = None,
    title: str | None = None,
    cmap: str | None = None,
    figsize: tuple[float, float] | None = None,
    **kwargs: Any,
) -> Any:
    """Draw a PIL image, a uint8 or float ([0, 1]) tensor (c, h, w) or (h, w), or an array; return ax.

    >>> ax = show_image(torch.rand(3, 8, 8), title="noise")  # doctest: +SKIP
    """
    a = _to_display(img)
    ax = _new_ax(ax, figsize)
    if a.ndim == 2 and cmap is None:
        cmap = "gray"
    ax.imshow(a, cmap=cmap, **kwargs)
    if title is not None:
        ax.set_title(title)
    ax.axis("off")
    return ax


MASK_CMAP = "tab20"  # masks' colour map: class i is its colour i (up to 20 classes), wherever drawn


def show_mask(
    mask: Image.Image | Tensor | np.ndarray,
    ax: Any = None,
    alpha: float = 0.5,
    cmap: str = MASK_CMAP,
    **kwargs: Any,
) -> Any:
    """Overlay a mask of class indices (h, w) on `ax`, one fixed colour per class; return ax."""
    import matplotlib as mpl

    a = _to_display(mask)
    ax = _new_ax(ax, None)
    # vmin/vmax pinned so that class i gets the same colour in every mask, whatever classes it holds
    vmax = max(mpl.colormaps[cmap].N - 1, int(a.max(initial=0)))
    ax.imshow(a, alpha=alpha, cmap=cmap, vmin=0, vmax=vmax, interpolation="nearest", **kwargs)
    ax.axis("off")
    return ax


def show_points(
    pts: Tensor | np.ndarray, ax: Any, size: tuple[int, int], scaled: bool = True, **kwargs: Any
) -> Any:
    """Draw points (n, 2) on an image of `size` (w, h) shown on `ax`; return ax.

    `scaled` points are in [-1, 1] (after `ToTensor`); otherwise they are pixel coordinates where
    pixel column i spans [i, i + 1). Points outside the image are drawn only as far as `ax` shows.
    """
    p = torch.as_tensor(pts).detach().cpu().float().reshape(-1, 2)
    w, h = size
    if scaled:
        p = (p + 1) * torch.tensor([w / 2, h / 2])
    p = p - 0.5  # imshow puts pixel i's centre at i, ours is at i + 0.5
    kwargs = {"s": 10, "marker": ".", "c": "magenta"} | kwargs
    limits = ax.get_xlim(), ax.get_ylim()
    ax.scatter(p[:, 0].numpy(), p[:, 1].numpy(), **kwargs)
    ax.set_xlim(limits[0])  # points that left the image must not zoom the image out
    ax.set_ylim(limits[1])
    return ax
