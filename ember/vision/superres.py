"""Super-resolution and colourisation data and scores: `crappify` makes the low-quality inputs, `to_grey`
the grey ones, `RandomPatch` cuts aligned training patches, `PermuteChannels` varies their colours,
`psnr`/`ssim` score results.

>>> path = builtin_data("photo_crops")  # train/ and valid/ 128x128 crops, whole photos held out
>>> crappify(path, path.parent / "crappy2x", scale=2, text=False)  # the same files at 64x64, JPEG'd
>>> dblock = DataBlock(blocks=(ImageBlock, ImageBlock), get_items=get_image_files,
...     get_y=lambda f: path / f.relative_to(path.parent / "crappy2x"), splitter=GrandparentSplitter(),
...     item_tfms=[Resize(128, resamples=BICUBIC_NEAREST), RandomPatch(64)])  # doctest: +SKIP
>>> psnr(pred, targ), ssim(pred, targ)  # tensors in [0, 1]  # doctest: +SKIP
"""

from __future__ import annotations

import io
import os
import random
import threading
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image
from torch import Tensor, nn

from ember.core.serial import register_config_type
from ember.data.transforms import TRAIN, Transform
from ember.vision.core import PILImage, get_image_files
from ember.vision.kinds import IMAGE, MASK

__all__ = [
    "BICUBIC_NEAREST",
    "PermuteChannels",
    "RandomPatch",
    "ResidualOutput",
    "crappify",
    "crappify_one",
    "psnr",
    "ssim",
    "to_grey",
]

# `Resize(size, resamples=BICUBIC_NEAREST)` upsamples a low-resolution input as the bicubic baseline does.
BICUBIC_NEAREST = (Image.Resampling.BICUBIC, Image.Resampling.NEAREST)

_JPEG_SUFFIXES = (".jpg", ".jpeg")


def crappify(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    size: int = 96,
    quality: tuple[int, int] = (10, 70),
    text: bool = True,
    seed: int = 0,
    n_workers: int | None = None,
    scale: float | None = None,
) -> list[Path]:
    """Write a low-quality copy of every image under `src` to the same relative path under `dst`: shorter
    side downscaled to `size` (bilinear), or each side divided by `scale` when it is given (`scale=2`
    for 2x super-resolution; `size` is then ignored), the JPEG quality (drawn in `quality`, inclusive)
    written on it when `text`, then JPEG-encoded at that quality. Returns the files written.

    Each file's random draws are seeded by `seed` and its relative path, so a rerun writes the same bytes.
    Files in `dst` already newer than their source are skipped, so an interrupted run resumes; each file
    is written under a temporary name and renamed, so `dst` never holds a half-written image. Files are
    done by a thread pool (`n_workers` threads, default one per core): on two shared cores it beat a process
    pool (60 photos 1024x768: 0.47 s against 0.63 s), whose start-up costs more than it saves.

    >>> crappify("hr", "lr", size=96)  # doctest: +SKIP
    [PosixPath('lr/cat.jpg'), ...]
    """
    src, dst = Path(src), Path(dst)
    todo = [f for f in get_image_files(src) if not _up_to_date(f, dst / f.relative_to(src))]
    workers = n_workers or os.cpu_count() or 1
    with ThreadPoolExecutor(workers) as pool:
        jobs = [
            pool.submit(
                crappify_one, f, dst / f.relative_to(src), size, quality, text, _seed(f, src, seed), scale
            )
            for f in todo
        ]
        return [job.result() for job in jobs]


def _up_to_date(f: Path, out: Path) -> bool:
    return out.is_file() and out.stat().st_mtime >= f.stat().st_mtime


def _seed(f: Path, src: Path, seed: int) -> int:
    """A per-file seed stable across runs and processes (str `hash` is salted per process)."""
    return zlib.crc32(f"{seed}:{f.relative_to(src).as_posix()}".encode())


def crappify_one(
    f: Path,
    out: Path,
    size: int = 96,
    quality: tuple[int, int] = (10, 70),
    text: bool = True,
    seed: int = 0,
    scale: float | None = None,
) -> Path:
    """Write the low-quality copy of the image `f` to `out` (see `crappify`); returns `out`."""
    from PIL import ImageDraw, ImageFont

    rng = random.Random(seed)
    img = Image.open(f).convert("RGB")
    factor = 1 / scale if scale else size / min(img.size)
    w, h = max(1, round(img.width * factor)), max(1, round(img.height * factor))
    img = img.resize((w, h), Image.Resampling.BILINEAR)
    q = rng.randint(*quality)
    if text:
        pos = (rng.randint(0, w // 2), rng.randint(0, h // 2))
        ImageDraw.Draw(img).text(pos, str(q), fill=(255, 255, 255), font=ImageFont.load_default())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        _save_jpeg_quality(img, tmp, q, out.suffix.lower())
        os.replace(tmp, out)  # atomic: a reader sees the old file or the whole new one
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _save_jpeg_quality(img, path: Path, q: int, suffix: str) -> None:
    """Save as a JPEG of quality `q`; a file named other than .jpg keeps its format, with JPEG's artefacts."""
    if suffix in _JPEG_SUFFIXES:
        img.save(path, format="JPEG", quality=q)
        return
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=q)
    buf.seek(0)
    fmt = Image.registered_extensions().get(suffix, "PNG")
    Image.open(buf).convert("RGB").save(path, format=fmt)


def to_grey(src: str | os.PathLike | Image.Image) -> Image.Image:
    """The image `src` in grey, as 3 equal RGB channels: colourisation's input (`get_x=to_grey`), which a
    model pretrained on RGB takes as it is.

    >>> to_grey(Image.new("RGB", (2, 1), (255, 0, 0))).getpixel((0, 0))  # ITU-R 601 luma of pure red
    (76, 76, 76)
    """
    return PILImage.create(src).convert("L").convert("RGB")


class RandomPatch(Transform):
    """On the training set, cut the same random `size` x `size` patch out of every image and mask of an
    item (their sizes must agree: put it after `Resize`); on the validation set, leave them whole.
    Training a fully convolutional model on patches sees more scenes for the same compute.

    >>> x, y = RandomPatch(2).encodes((Image.new("RGB", (5, 4)),) * 2, ("image", "image"), 0)
    >>> x.size, y.size
    ((2, 2), (2, 2))
    """

    order = 2  # after Resize (1), before ToTensor (5)
    split_idx = TRAIN

    def __init__(self, size: int) -> None:
        self.size = size

    def encodes(self, values: tuple, kinds: tuple[str, ...], split_idx: int) -> tuple:
        sizes = {v.size for v, k in zip(values, kinds) if k in (IMAGE, MASK)}
        if len(sizes) != 1:
            raise ValueError(
                f"RandomPatch: the item's images are of different sizes {sorted(sizes)}; resize first"
            )
        (w, h), s = sizes.pop(), self.size
        if w < s or h < s:
            raise ValueError(f"RandomPatch({s}): an image of {w}x{h} is smaller than the patch")
        left, top = random.randint(0, w - s), random.randint(0, h - s)
        box = (left, top, left + s, top + s)
        return tuple(v.crop(box) if k in (IMAGE, MASK) else v for v, k in zip(values, kinds))

    def to_config(self) -> dict:
        return {"size": self.size}

    def __repr__(self) -> str:
        return f"RandomPatch({self.size})"


class PermuteChannels(Transform):
    """On the training set, reorder the RGB channels of every image of an item with the same random
    permutation. Super-resolution from a few photos otherwise learns their colours (a retina's reds) instead
    of copying the input's: with six orders of each, the colour can only come from the input. Not for
    colourisation, whose colours are what is learnt.

    >>> x, y = PermuteChannels().encodes((Image.new("RGB", (1, 1), (1, 2, 3)),) * 2, ("image", "image"), 0)
    >>> sorted(x.getpixel((0, 0))) == [1, 2, 3] and x.getpixel((0, 0)) == y.getpixel((0, 0))
    True
    """

    order = 3  # after RandomPatch, before ToTensor
    split_idx = TRAIN

    def encodes(self, values: tuple, kinds: tuple[str, ...], split_idx: int) -> tuple:
        order = random.sample(range(3), 3)
        return tuple(_permute(v, order) if k == IMAGE else v for v, k in zip(values, kinds))

    def to_config(self) -> dict:
        return {}


def _permute(img: Image.Image, order: list[int]) -> Image.Image:
    if img.mode != "RGB":
        raise ValueError(f"PermuteChannels: an image of mode {img.mode}; it reorders RGB images only")
    bands = img.split()
    return Image.merge("RGB", [bands[i] for i in order])


register_config_type(RandomPatch, PermuteChannels)


class ResidualOutput(nn.Module):
    """`x + model(x)`: an image-to-image model (a U-Net) that predicts a correction to its input, which must
    already be the target's size and normalisation (the bicubic upsampling, the grey image). The model's last
    convolution is zeroed, so training starts from the input itself instead of from noise: on a CPU budget a
    plain U-Net spends its first few hundred steps learning to copy its input back.

    `encoder` is the wrapped U-Net's, so `unet_split`, `freeze` and `fine_tune` work unchanged. An export
    file's `model_config` describes a plain U-Net, so `unet_learner`'s is cleared: save the weights instead.

    >>> learn = unet_learner(dls, "resnet18", pretrained=False)  # doctest: +SKIP
    >>> learn.model, learn.model_config = ResidualOutput(learn.model), None  # doctest: +SKIP
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise ValueError(f"ResidualOutput: {type(model).__name__} has no Conv2d to start at zero")
        nn.init.zeros_(convs[-1].weight)  # the U-Net's 1x1 head conv: registered last
        if convs[-1].bias is not None:
            nn.init.zeros_(convs[-1].bias)
        self.model = model

    @property
    def encoder(self) -> nn.Module:
        return self.model.encoder

    def forward(self, x: Tensor) -> Tensor:
        return x + self.model(x)  # (bs, c, h, w): the input and its correction


def _images(pred: Tensor, targ: Tensor) -> tuple:
    """Both as float64 numpy arrays (bs, c, h, w), prediction clipped to [0, 1]."""
    if pred.shape != targ.shape:
        raise ValueError(f"psnr/ssim: prediction {tuple(pred.shape)} and target {tuple(targ.shape)} differ")
    p, t = pred.detach().float().clamp(0, 1).cpu().double(), targ.detach().float().cpu().double()
    if p.dim() == 3:
        p, t = p[None], t[None]
    return p.numpy(), t.numpy()


def psnr(pred: Tensor, targ: Tensor) -> float:
    """Peak signal-to-noise ratio in dB (scikit-image's), averaged over the batch, of images in [0, 1]:
    (c, h, w) or (bs, c, h, w). Usable as a metric. Decode normalised tensors first.

    >>> round(psnr(torch.full((3, 8, 8), 0.5), torch.full((3, 8, 8), 0.6)), 6)  # 10 * log10(1 / 0.1**2)
    20.0
    """
    from skimage.metrics import peak_signal_noise_ratio

    p, t = _images(pred, targ)
    return sum(peak_signal_noise_ratio(ti, pi, data_range=1.0) for pi, ti in zip(p, t)) / len(p)


def ssim(pred: Tensor, targ: Tensor) -> float:
    """Structural similarity (scikit-image's, 7x7 windows), averaged over the batch, of images in [0, 1]:
    (c, h, w) or (bs, c, h, w), at least 7 pixels a side. Usable as a metric.

    >>> ssim(targ, targ)  # doctest: +SKIP
    1.0
    """
    from skimage.metrics import structural_similarity

    p, t = _images(pred, targ)
    scores = [structural_similarity(ti, pi, data_range=1.0, channel_axis=0) for pi, ti in zip(p, t)]
    return float(sum(scores) / len(scores))
