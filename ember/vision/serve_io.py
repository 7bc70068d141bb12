"""How the web server reads images and answers for vision models (vision's `RequestIO`s): a classifier
answers a label and probabilities; a segmentation model answers each class's share of the image and the
colour overlay of its mask on the upload; an image-to-image model answers the image it makes.

Uploads are read exactly as training and `learn.predict` read them (`ember.vision.core.open_image`:
upright by their EXIF orientation, 16-bit scaled, transparency on white), so a served answer is the
answer `learn.predict` gives. The size in pixels is read from the file's header and checked before any
pixel is decoded, so a small file that claims to be huge (a decompression bomb) costs nothing; the
limit is the request's, and Pillow's process-wide `Image.MAX_IMAGE_PIXELS` is left as it is.

>>> img = read_image(open("cat.jpg", "rb").read(), max_pixels=40_000_000)  # doctest: +SKIP
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ember.learner.app import InputRejected, RequestIO

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from ember.learner.learner import Learner

__all__ = [
    "IMAGE_IO",
    "IMAGE_TO_IMAGE_IO",
    "SEGMENT_IO",
    "Overlay",
    "Upload",
    "draw_overlay",
    "read_image",
    "read_upload",
]

SERVABLE = "single-label classification"
SEGMENTATION, IMAGE_TO_IMAGE = "segmentation", "image to image"
# A model with no fixed input size (no Resize) sees an upload shrunk by a whole factor to at most this
# many pixels: a fully convolutional U-Net would otherwise run a camera photo at full size.
MAX_FREE_PIXELS = 1024 * 1024


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
    and being resized in the one forward thread. A model with no input size: to `MAX_FREE_PIXELS`."""
    hw = _hw(learn.export_info.get("input_size"))
    if hw is None:
        factor = math.ceil(math.sqrt(img.width * img.height / MAX_FREE_PIXELS))
    else:
        factor = min(img.width // (2 * hw[1]), img.height // (2 * hw[0]))
    return img.reduce(factor) if factor >= 2 else img  # a box filter: averages, no aliasing


def classify(learn: Learner, images: list[Image.Image]) -> list[dict[str, Any]]:
    """One forward over `images` (RGB); for each: label, index and every class's probability."""
    labels = [str(v) for v in learn.dls.vocab]  # JSON keys are strings; True -> "True"
    probs = _forward(learn, images)  # (n, n_classes), softmax applied
    return [_answer(p, labels) for p in probs]


def _forward(learn: Learner, images: list[Image.Image]) -> torch.Tensor:
    dl = learn.dls.test_dl(images, with_getters=False, bs=len(images))
    return learn.get_preds(dl=dl)[0]


def _answer(probs: torch.Tensor, labels: list[str]) -> dict[str, Any]:
    order = probs.argsort(descending=True).tolist()
    return {
        "label": labels[order[0]],
        "index": order[0],
        "probabilities": {labels[i]: round(float(probs[i]), 6) for i in order},  # most likely first
    }


# ---- segmentation and image-to-image: answers with a picture ---------------------------------------
@dataclass(frozen=True)
class Upload:
    """An upload for a model whose answer is a picture: `image` for the model (shrunk), and the file's
    bytes, decoded again to draw on (a camera-sized image does not wait in memory for its forward).
    `box` is where the image's corners land in the model's frame `(w, h)`: (x0, y0, x1, y1) in frame
    pixels, outside the frame where the validation transforms crop, inside where they pad."""

    image: Image.Image
    data: bytes
    name: str
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    frame: tuple[int, int] = (0, 0)


def read_upload(data: bytes, max_pixels: int, name: str = "the upload") -> Upload:
    """`data` decoded (`read_image`), its bytes kept to draw the answer on."""
    return Upload(read_image(data, max_pixels, name), data, name)


def prepare_upload(learn: Learner, up: Upload) -> Upload:
    """`up` with its image shrunk for the model (`shrink`) and where that image lands in the model's frame."""
    img = shrink(learn, up.image)
    box, frame = _landing(learn, img.size)
    return Upload(img, up.data, up.name, box, frame)


def _landing(learn: Learner, size: tuple[int, int]) -> tuple[tuple[float, float, float, float], tuple]:
    """Where an image of `size` (w, h) lands in the model's frame, and the frame's (w, h): its corners go
    through the validation item transforms as points, with a blank image of that size."""
    import torch
    from PIL import Image

    from ember.data.transforms import VALID, Pipeline
    from ember.vision.kinds import IMAGE, POINTS

    tfms = learn.dls.dblock.item_pipeline(learn.dls.datasets.blocks[:1], VALID).tfms
    corners = torch.tensor([[0.0, 0.0], [float(size[0]), float(size[1])]])
    img, pts = Pipeline(tfms, (IMAGE, POINTS), VALID)((Image.new("L", size), corners))
    fh, fw = img.shape[-2:]
    (x0, y0), (x1, y1) = ((pts + 1) / 2 * torch.tensor([fw, fh])).tolist()  # ToTensor put points in [-1, 1]
    return (x0, y0, x1, y1), (int(fw), int(fh))


def _by_frame(ups: list[Upload]) -> list[list[int]]:
    """The uploads' indices grouped by frame: one forward each (a single one when the model resizes)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, up in enumerate(ups):
        groups.setdefault(up.frame, []).append(i)
    return list(groups.values())


@dataclass(frozen=True)
class Overlay:
    """What a segmentation answer's picture is drawn from: the upload, and its predicted mask (h, w) in
    the model's frame."""

    upload: Upload
    mask: torch.Tensor
    codes: list[str]


def segment(learn: Learner, ups: list[Upload]) -> list[dict[str, Any]]:
    """Each upload's predicted mask: every class's share of its pixels (`classes`, in the codes' order),
    the colour of each class in the picture (`colors`), and the picture (`image`, an `Overlay`)."""
    from ember.vision.mask_io import mask_colours

    codes = [str(c) for c in learn.dls.vocab]
    colors = {c: "#{:02x}{:02x}{:02x}".format(*rgb) for c, rgb in zip(codes, mask_colours(len(codes)))}
    answers: list[dict[str, Any]] = [{} for _ in ups]
    for idxs in _by_frame(ups):
        masks = _forward(learn, [ups[i].image for i in idxs]).argmax(1)  # (n, h, w) from (n, c, h, w)
        for i, mask in zip(idxs, masks):
            share = mask.flatten().bincount(minlength=len(codes)).double() / mask.numel()
            answers[i] = {
                "classes": {c: round(float(s), 6) for c, s in zip(codes, share)},
                "colors": colors,
                "image": Overlay(ups[i], mask, codes),
            }
    return answers


def draw_overlay(o: Overlay) -> bytes:
    """A PNG of the upload at its own size with its mask's classes tinted over it (`overlay_mask`,
    every class in its colour); what the model did not see (a cropped border) is left untinted."""
    import numpy as np
    from PIL import Image

    from ember.vision.core import open_image
    from ember.vision.mask_io import overlay_mask

    img = open_image(o.upload.data, "RGB", name=o.upload.name)
    (w, h), (fw, fh) = img.size, o.upload.frame
    (mh, mw), (x0, y0, x1, y1) = o.mask.shape, o.upload.box
    sx, sy = mw / fw, mh / fh  # frame pixels -> mask pixels (a batch transform may have resized)
    # Each upload pixel's centre -> the mask pixel under it; -1 outside the mask.
    coeffs = ((x1 - x0) / w * sx, 0.0, x0 * sx, 0.0, (y1 - y0) / h * sy, y0 * sy)
    mask = Image.fromarray(o.mask.numpy().astype(np.int32))
    mask = mask.transform(img.size, Image.Transform.AFFINE, coeffs, Image.Resampling.NEAREST, fillcolor=-1)
    a = np.asarray(mask)
    seen = a >= 0
    out = overlay_mask(img, np.where(seen, a, 0), o.codes, bkg_idx=None)
    if not seen.all():
        out = Image.composite(out, img, Image.fromarray(seen.astype(np.uint8) * 255))
    return png_bytes(out)


def translate(learn: Learner, ups: list[Upload]) -> list[dict[str, Any]]:
    """Each upload's predicted image (`image`, a PIL image at the model's output size) and its size."""
    from PIL import Image

    from ember.vision.report_sections import images_01

    answers: list[dict[str, Any]] = [{} for _ in ups]
    for idxs in _by_frame(ups):
        preds = images_01(learn, _forward(learn, [ups[i].image for i in idxs]), -1)  # (n, c, h, w)
        for i, p in zip(idxs, preds):
            a = (p * 255).round().byte().permute(1, 2, 0).numpy()
            img = Image.fromarray(a[..., 0] if a.shape[2] == 1 else a)
            answers[i] = {"width": img.width, "height": img.height, "image": img}
    return answers


def png_bytes(img: Image.Image) -> bytes:
    """`img` as PNG bytes, compressed lightly: at the default level a camera photo takes seconds."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


# ---- which exports each serves -----------------------------------------------------------------------
def check(info: dict[str, Any]) -> str | None:
    """Why an export cannot be served: its predictions are not one label out of a vocabulary."""
    if info.get("task") != SERVABLE or not info.get("vocab"):
        return (
            f"holds a {info.get('task', 'unknown')} model; `ember serve` serves {SERVABLE}, {SEGMENTATION} "
            f"and {IMAGE_TO_IMAGE} models (a vision_learner on a CategoryBlock, a unet_learner on a "
            "MaskBlock or an ImageBlock): for this one, use load_learner(...).predict in your code"
        )
    return None


def _check_segment(info: dict[str, Any]) -> str | None:
    if not info.get("vocab"):
        return "holds a segmentation model without codes: give MaskBlock(codes) the class names and export it"
    return None


def _variant(info: dict[str, Any]) -> RequestIO | None:
    return {SEGMENTATION: SEGMENT_IO, IMAGE_TO_IMAGE: IMAGE_TO_IMAGE_IO}.get(info.get("task"))


def _hw(size: int | list[int] | None) -> tuple[int, int] | None:
    if not size:
        return None
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


SEGMENT_IO = RequestIO(
    kind="image",
    read=read_upload,
    predict=segment,
    prepare=prepare_upload,
    check=_check_segment,
    example="curl -F file=@photo.jpg URL/predict",
    draw=draw_overlay,
    about="`classes` gives each class's share of the image's pixels, `colors` the colour it has in the "
    "picture: the upload with its predicted mask over it.",
)
IMAGE_TO_IMAGE_IO = RequestIO(
    kind="image",
    read=read_upload,
    predict=translate,
    prepare=prepare_upload,
    example="curl -F file=@photo.jpg URL/predict",
    draw=png_bytes,
    about="The picture is the image the model makes, at its output size (`width`, `height`).",
)
IMAGE_IO = RequestIO(
    kind="image",
    read=read_image,
    predict=classify,
    prepare=shrink,
    check=check,
    example="curl -F file=@cat.jpg URL/predict",
    variant=_variant,
)
