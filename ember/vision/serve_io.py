"""How the web server reads images and answers for an image classifier (vision's `RequestIO`).

Uploads are read exactly as training and `learn.predict` read them (`ember.vision.core.open_image`:
upright by their EXIF orientation, 16-bit scaled, transparency on white), so a served answer is the
answer `learn.predict` gives. The size in pixels is read from the file's header and checked before any
pixel is decoded, so a small file that claims to be huge (a decompression bomb) costs nothing; the
limit is the request's, and Pillow's process-wide `Image.MAX_IMAGE_PIXELS` is left as it is.

>>> img = read_image(open("cat.jpg", "rb").read(), max_pixels=40_000_000)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ember.learner.app import InputRejected, RequestIO

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from ember.learner.learner import Learner

__all__ = ["IMAGE_IO", "read_image"]

SERVABLE = "single-label classification"


def read_image(data: bytes, max_pixels: int, name: str = "the upload") -> Image.Image:
    """`data` decoded as an RGB image, or `InputRejected` naming `name` (413 when too large, else 400)."""
    from ember.vision.core import ImageLoadError, ImageTooLarge, open_image

    try:
        return open_image(data, "RGB", max_pixels=max_pixels, name=name)
    except ImageTooLarge as e:
        raise InputRejected(str(e), status=413) from e
    except ImageLoadError as e:
        raise InputRejected(str(e)) from e


def shrink(learn: Learner, img: Image.Image) -> Image.Image:
    """`img` shrunk by a whole factor while it stays at least twice the model's input size: the same
    picture for the model's Resize, without a camera-sized image waiting in memory for its forward
    and being resized in the one forward thread."""
    hw = _hw(learn.export_info.get("input_size"))
    if hw is None:
        return img
    factor = min(img.width // (2 * hw[1]), img.height // (2 * hw[0]))
    return img.reduce(factor) if factor >= 2 else img  # a box filter: averages, no aliasing


def classify(learn: Learner, images: list[Image.Image]) -> list[dict[str, Any]]:
    """One forward over `images` (RGB); for each: label, index and every class's probability."""
    labels = [str(v) for v in learn.dls.vocab]  # JSON keys are strings; True -> "True"
    dl = learn.dls.test_dl(images, with_getters=False, bs=len(images))
    probs, _ = learn.get_preds(dl=dl)  # (n, n_classes), softmax applied
    return [_answer(p, labels) for p in probs]


def _answer(probs: torch.Tensor, labels: list[str]) -> dict[str, Any]:
    order = probs.argsort(descending=True).tolist()
    return {
        "label": labels[order[0]],
        "index": order[0],
        "probabilities": {labels[i]: round(float(probs[i]), 6) for i in order},  # most likely first
    }


def check(info: dict[str, Any]) -> str | None:
    """Why an export cannot be served: its predictions are not one label out of a vocabulary."""
    if info.get("task") != SERVABLE or not info.get("vocab"):
        return (
            f"holds a {info.get('task', 'unknown')} model; `ember serve` serves {SERVABLE} models "
            "(a vision_learner on a CategoryBlock): for this one, use load_learner(...).predict in your code"
        )
    return None


def _hw(size: int | list[int] | None) -> tuple[int, int] | None:
    if not size:
        return None
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


IMAGE_IO = RequestIO(
    kind="image",
    read=read_image,
    predict=classify,
    prepare=shrink,
    check=check,
    example="curl -F file=@cat.jpg URL/predict",
)
