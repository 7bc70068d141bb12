"""Generative models' built-in data sets: real images read from Debian packages, written once as PNGs.

| name                | read from (Debian package)       | files                                         |
| ------------------- | -------------------------------- | --------------------------------------------- |
| `fashion_mnist`     | `dataset-fashion-mnist`          | `train/<class>/00000.png` (60,000), `valid/`  |
|                     |                                  | (10,000): 28x28 grey, white on black          |
| `fashion_mnist_10k` | the same, 1,000 of each class    | `train/<class>/` (8,000), `valid/` (2,000)    |
| `emoji`             | `fonts-noto-color-emoji`         | `train/1f600.png` (1,243), `valid/` (138):    |
|                     |                                  | 64x64 RGB on white                            |
| `emoji_128`         | the same font, at its own 128 px | the same names, 128x128                       |

`valid/` of both Fashion-MNIST sets comes from the package's test file (`t10k`), so it is the data set's own
held-out split. The class folders are `FASHION_CLASSES` (label 0 is "T-shirt/top", written `tshirt_top`);
`ImageDataLoaders.from_folder` sorts them by name, so its vocab is alphabetical, not in label order.
`fashion_mnist` writes its 70,000 files in 15-25 s on two cores; `fashion_mnist_10k` is for runs that
should read fewer files per epoch (it trains about as fast as `mnist5k`).

The emoji are every single code point the font draws as an emoji (1,381 in Debian 12's font: no flags or
keycaps, which take two code points, nor the skin-tone swatches, the lone regional-indicator letters or the
tag characters), composited on white because a GAN wants plain RGB on one background: an emoji that is
mostly white (a cloud, a white flag) loses its outline. Every tenth code point in order is in `valid/`.

Importing this module (`ember.vision.all` does) registers them, so `builtin_data("fashion_mnist")` works;
a missing package is an error that gives the `apt-get install` line.

>>> path = builtin_data("fashion_mnist_10k")  # doctest: +SKIP
>>> dls = ImageDataLoaders.from_folder(path, bs=64)  # 10 classes, valid = the test split  # doctest: +SKIP
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ember.data.builtin import register_builtin
from ember.data.errors import DataError

__all__ = ["EMOJI_FONT", "FASHION_CLASSES", "FASHION_MNIST_DIR", "emoji_code_points", "read_idx"]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
# Label i of the idx files is FASHION_CLASSES[i]: T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt,
# Sneaker, Bag, Ankle boot, written so that each is a plain folder name.
FASHION_CLASSES = ("tshirt_top", "trouser", "pullover", "dress", "coat")
FASHION_CLASSES += ("sandal", "shirt", "sneaker", "bag", "ankle_boot")
FASHION_SUBSET_TRAIN, FASHION_SUBSET_VALID = 800, 200  # per class in `fashion_mnist_10k`
EMOJI_SIZE = 109  # the one size the font's bitmaps are drawn at without scaling: 136x128 px cells
EMOJI_VALID_EVERY = 10  # code points 9, 19, 29, ... (counting from 0, in order) are the validation set

_IDX_DTYPE = {0x08: np.uint8}  # idx type codes ember reads; Fashion-MNIST's images and labels are both 0x08


def _apt_line(package: str) -> str:
    return f"sudo apt-get install {package}"


def read_idx(path: str | Path) -> np.ndarray:
    """The array in an idx file (the MNIST format: magic, dimensions, then the data), gzipped or not.

    >>> read_idx(FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz").shape  # doctest: +SKIP
    (10000,)
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    # Header: two zero bytes, a type code, the number of dimensions, then each one as a big-endian uint32.
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_DTYPE:
        raise DataError(
            f"{path} is not an idx file of unsigned bytes (its first bytes are {raw[:4].hex()}, expected "
            "0000 08 then the number of dimensions); the package's file may be damaged: reinstall it"
        )
    ndim = raw[3]
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, _IDX_DTYPE[raw[2]], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise DataError(
            f"{path} says it holds {shape} values but has {data.size}: it is cut short; reinstall the package"
        )
    return data.reshape(shape)


def _fashion_split(prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 28, 28) uint8 and labels (n,) of the package's `train` or `t10k` files."""
    if not FASHION_MNIST_DIR.is_dir():
        raise DataError(
            f"Fashion-MNIST is read from Debian's package dataset-fashion-mnist, whose folder "
            f"{FASHION_MNIST_DIR} does not exist. Install it with `{_apt_line('dataset-fashion-mnist')}`."
        )
    images = read_idx(FASHION_MNIST_DIR / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(FASHION_MNIST_DIR / f"{prefix}-labels-idx1-ubyte.gz")
    if len(images) != len(labels):
        raise DataError(f"{FASHION_MNIST_DIR} has {len(images)} {prefix} images but {len(labels)} labels")
    return images, labels


def _first_of_each_class(labels: np.ndarray, n: int | None) -> np.ndarray:
    """Indices of the first `n` items of each class in file order (all of them when `n` is None)."""
    if n is None:
        return np.arange(len(labels))
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:n] for c in range(len(FASHION_CLASSES))]))


def _write_fashion(out: Path, n_train: int | None, n_valid: int | None) -> None:
    for split, prefix, n in (("train", "train", n_train), ("valid", "t10k", n_valid)):
        images, labels = _fashion_split(prefix)
        for name in FASHION_CLASSES:
            (out / split / name).mkdir(parents=True)
        for i in _first_of_each_class(labels, n):
            # named by the row in the package's file, so a subset's files keep the full set's names
            path = out / split / FASHION_CLASSES[labels[i]] / f"{i:05d}.png"
            Image.fromarray(images[i]).save(path, compress_level=1)  # fast compression: 2x quicker


def _write_fashion_mnist(out: Path) -> None:
    """All 70,000 images: `train/` the package's 60,000 training images, `valid/` its 10,000 test images."""
    _write_fashion(out, None, None)


def _write_fashion_mnist_10k(out: Path) -> None:
    """The first 800 training and 200 test images of each class, in the package's order."""
    _write_fashion(out, FASHION_SUBSET_TRAIN, FASHION_SUBSET_VALID)


def _check_font() -> None:
    if not EMOJI_FONT.is_file():
        raise DataError(
            f"the emoji are drawn from Debian's package fonts-noto-color-emoji, whose font {EMOJI_FONT} "
            f"does not exist. Install it with `{_apt_line('fonts-noto-color-emoji')}`."
        )


def _is_single_emoji(cp: int) -> bool:
    """False for the code points the font maps that are not an emoji on their own."""
    return not (
        cp < 0xA9  # NUL, CR, space, '#', '*', digits: keycap parts
        or cp in (0x200D, 0x20E3)  # zero-width joiner, combining keycap
        or 0xFE00 <= cp <= 0xFE0F  # variation selectors
        or 0x1F1E6 <= cp <= 0x1F1FF  # regional-indicator letters: halves of a flag
        or 0x1F3FB <= cp <= 0x1F3FF  # skin-tone modifiers: colour swatches
        or cp >= 0xE0000  # tag characters and the font's private-use glyphs
    )


def emoji_code_points(font: str | Path | None = None) -> list[int]:
    """The single code points that the colour emoji font (default `EMOJI_FONT`) draws as an emoji, in order.

    >>> hex(emoji_code_points()[0])  # doctest: +SKIP
    '0xa9'
    """
    from fontTools.ttLib import TTFont  # matplotlib's dependency; only this writer needs it

    if font is None:
        _check_font()
    with TTFont(font or EMOJI_FONT, lazy=True) as f:
        return [cp for cp in sorted(f.getBestCmap()) if _is_single_emoji(cp)]


def _render(font: ImageFont.FreeTypeFont, cp: int) -> Image.Image:
    """Code point `cp` as a 128x128 RGB image on white."""
    cell = Image.new("RGBA", (136, 128), (255, 255, 255, 0))  # the font's bitmap cell at EMOJI_SIZE
    ImageDraw.Draw(cell).text((0, 0), chr(cp), font=font, embedded_color=True)
    # The glyphs sit 4 px in from each side of the 136 px cell: a centred 128 px square keeps every pixel.
    square = cell.crop((4, 0, 132, 128))
    return Image.alpha_composite(Image.new("RGBA", square.size, "white"), square).convert("RGB")


def _write_emoji(out: Path, size: int) -> None:
    _check_font()
    font = ImageFont.truetype(str(EMOJI_FONT), EMOJI_SIZE)
    for split in ("train", "valid"):
        (out / split).mkdir()
    for k, cp in enumerate(emoji_code_points()):
        img = _render(font, cp)
        if size != img.width:
            img = img.resize((size, size), Image.Resampling.LANCZOS)
        split = "valid" if k % EMOJI_VALID_EVERY == EMOJI_VALID_EVERY - 1 else "train"
        img.save(out / split / f"{cp:x}.png", compress_level=1)


def _write_emoji_64(out: Path) -> None:
    """Each emoji at 64x64, the course's DCGAN size, shrunk from 128 px with a Lanczos filter."""
    _write_emoji(out, 64)


def _write_emoji_128(out: Path) -> None:
    """Each emoji at the font's own 128x128."""
    _write_emoji(out, 128)


_FONTTOOLS = {"fontTools": "pip install fonttools"}
register_builtin("fashion_mnist", _write_fashion_mnist)
register_builtin("fashion_mnist_10k", _write_fashion_mnist_10k)
register_builtin("emoji", _write_emoji_64, needs=_FONTTOOLS)
register_builtin("emoji_128", _write_emoji_128, needs=_FONTTOOLS)
