"""Uploaded bytes to a decoded RGB image, refusing what is not a safe, whole image before it is decoded.

The size in pixels is read from the file's header and checked before any pixel is decoded, so a small
file that claims to be huge (a decompression bomb) costs nothing.

>>> img = read_image(open("cat.jpg", "rb").read(), max_pixels=40_000_000)  # doctest: +SKIP
"""

from __future__ import annotations

import io

from PIL import Image, UnidentifiedImageError

__all__ = ["ImageRejected", "read_image"]


class ImageRejected(ValueError):
    """An upload that is not an image the server will decode; `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def read_image(data: bytes, max_pixels: int, name: str = "the upload") -> Image.Image:
    """`data` decoded as an RGB image, or `ImageRejected` naming `name` (413 when too large, else 400)."""
    if not data:
        raise ImageRejected(f"{name} is empty: send the bytes of an image file (JPEG, PNG, WebP, ...)")
    img = _open_header(data, max_pixels, name)
    w, h = img.size
    if w * h > max_pixels:
        raise _too_large(name, w, h, max_pixels)
    try:
        img.load()
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, struct.error, ...
        raise ImageRejected(
            f"{name} is a damaged or truncated {img.format} image ({type(e).__name__}: {e}); "
            "send the whole file"
        ) from e
    return img.convert("RGB")


def _open_header(data: bytes, max_pixels: int, name: str) -> Image.Image:
    """Read the header only (format and size); no pixel is decoded yet."""
    try:
        return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        # Pillow's own check (at twice Image.MAX_IMAGE_PIXELS) fired before the size could be read.
        raise ImageRejected(f"{name} is refused as a decompression bomb ({e})", status=413) from e
    except UnidentifiedImageError as e:
        raise ImageRejected(
            f"{name} is not an image this server can read ({len(data)} bytes starting {data[:8]!r}); "
            "send a JPEG, PNG, WebP, GIF, BMP or TIFF file"
        ) from e
    except Exception as e:  # a header Pillow recognises but cannot parse
        raise ImageRejected(
            f"{name} has a damaged or truncated image header ({type(e).__name__}: {e})"
        ) from e


def _too_large(name: str, w: int, h: int, max_pixels: int) -> ImageRejected:
    return ImageRejected(
        f"{name} is {w}x{h} = {w * h / 1e6:.1f} megapixels; this server decodes at most "
        f"{max_pixels / 1e6:.1f} megapixels: resize it first",
        status=413,
    )
