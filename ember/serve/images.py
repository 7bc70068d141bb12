"""Uploaded bytes to a decoded RGB image, refusing what is not a safe, whole image before it is decoded.

The server reads images exactly as training and `learn.predict` do (`ember.vision.core.open_image`:
upright by their EXIF orientation, 16-bit scaled, transparency on white), so a served answer is the
answer `learn.predict` gives. The size in pixels is read from the file's header and checked before any
pixel is decoded, so a small file that claims to be huge (a decompression bomb) costs nothing; the
limit is this request's, and Pillow's process-wide `Image.MAX_IMAGE_PIXELS` is left as it is.

>>> img = read_image(open("cat.jpg", "rb").read(), max_pixels=40_000_000)  # doctest: +SKIP
"""

from __future__ import annotations

from PIL import Image

from ember.vision.core import ImageLoadError, ImageTooLarge, open_image

__all__ = ["ImageRejected", "read_image"]


class ImageRejected(ValueError):
    """An upload that is not an image the server will decode; `status` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def read_image(data: bytes, max_pixels: int, name: str = "the upload") -> Image.Image:
    """`data` decoded as an RGB image, or `ImageRejected` naming `name` (413 when too large, else 400)."""
    try:
        return open_image(data, "RGB", max_pixels=max_pixels, name=name)
    except ImageTooLarge as e:
        raise ImageRejected(str(e), status=413) from e
    except ImageLoadError as e:
        raise ImageRejected(str(e)) from e
