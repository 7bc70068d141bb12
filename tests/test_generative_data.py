"""The generative built-in data sets: Fashion-MNIST written from idx files (tiny synthetic ones, then the
Debian package's) and colour emoji drawn from Noto Color Emoji, in the layouts and counts their docs state.
The tests on the real packages skip when the package is not installed (`make` installs both)."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from ember.data.builtin import builtin_data
from ember.data.errors import DataError
from ember.generative import datasets
from ember.generative.datasets import (
    EMOJI_FONT,
    FASHION_CLASSES,
    FASHION_MNIST_DIR,
    emoji_code_points,
    read_idx,
)

needs_fashion = pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir(),
    reason=f"Debian's dataset-fashion-mnist is not installed ({FASHION_MNIST_DIR} is missing): "
    "`apt-get install dataset-fashion-mnist`",
)
needs_emoji = pytest.mark.skipif(
    not EMOJI_FONT.is_file(),
    reason=f"Debian's fonts-noto-color-emoji is not installed ({EMOJI_FONT} is missing): "
    "`apt-get install fonts-noto-color-emoji`",
)


def _write_idx(path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """idx files like the package's: 30 training images (3 per class, shuffled) and 20 test images; image
    i is filled with the value i, so each written file can be traced back to its row."""
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 30), ("t10k", 20)):
        labels = rng.permutation(np.arange(n) % 10)
        images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None], (n, 28, 28))
        _write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", folder)
    return folder


def _layout(path) -> dict[str, dict[str, list[str]]]:
    return {
        split: {c.name: sorted(f.name for f in c.glob("*.png")) for c in sorted((path / split).iterdir())}
        for split in ("train", "valid")
    }


def test_fashion_mnist_writes_every_image_into_its_class_folder_named_by_its_row(fake_package, tmp_path):
    path = builtin_data("fashion_mnist", data=tmp_path / "data")
    layout = _layout(path)
    assert sorted(layout["train"]) == sorted(FASHION_CLASSES) and sorted(layout["valid"]) == sorted(
        FASHION_CLASSES
    )
    labels = read_idx(fake_package / "train-labels-idx1-ubyte.gz")
    for i, label in enumerate(labels):
        img = np.asarray(Image.open(path / "train" / FASHION_CLASSES[label] / f"{i:05d}.png"))
        assert img.shape == (28, 28) and (img == i).all()
    assert (
        sum(len(v) for v in layout["train"].values()) == 30 and sum(map(len, layout["valid"].values())) == 20
    )


def test_the_10k_subset_keeps_the_first_images_of_each_class_in_file_order(
    fake_package, tmp_path, monkeypatch
):
    monkeypatch.setattr(datasets, "FASHION_SUBSET_TRAIN", 2)
    monkeypatch.setattr(datasets, "FASHION_SUBSET_VALID", 1)
    layout = _layout(builtin_data("fashion_mnist_10k", data=tmp_path / "data"))
    labels = read_idx(fake_package / "train-labels-idx1-ubyte.gz")
    for c, name in enumerate(FASHION_CLASSES):
        assert layout["train"][name] == [f"{i:05d}.png" for i in np.flatnonzero(labels == c)[:2]]
        assert len(layout["valid"][name]) == 1


def test_a_damaged_idx_file_is_named_and_refused(tmp_path):
    (tmp_path / "bad.idx").write_bytes(b"\x00\x00\x0d\x01\x00\x00\x00\x02ab")  # type 0x0d: floats
    with pytest.raises(DataError, match=r"bad.idx is not an idx file of unsigned bytes"):
        read_idx(tmp_path / "bad.idx")
    (tmp_path / "short.idx").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x05ab")
    with pytest.raises(DataError, match=r"short.idx says it holds \(5,\) values but has 2"):
        read_idx(tmp_path / "short.idx")


@pytest.mark.parametrize(
    ("name", "attr", "package"),
    [
        ("fashion_mnist", "FASHION_MNIST_DIR", "dataset-fashion-mnist"),
        ("emoji", "EMOJI_FONT", "fonts-noto-color-emoji"),
    ],
)
def test_a_missing_debian_package_gives_its_apt_line_and_leaves_nothing_behind(
    tmp_path, monkeypatch, name, attr, package
):
    monkeypatch.setattr(datasets, attr, tmp_path / "not-installed")
    with pytest.raises(DataError, match=f"apt-get install {package}`"):
        builtin_data(name, data=tmp_path / "data")
    assert list((tmp_path / "data").iterdir()) == []  # no data set, no scratch folder


def test_only_single_code_points_that_are_emoji_on_their_own_are_kept():
    kept = [0xA9, 0x2764, 0x1F600, 0x1F4A9, 0x1FAE0]  # (c), heart, grinning face, pile of poo, melting face
    dropped = [0x23, 0x30, 0x200D, 0x20E3, 0xFE0F, 0x1F1FA, 0x1F3FB, 0xE0067, 0xFE4E5]
    assert [datasets._is_single_emoji(cp) for cp in kept + dropped] == [True] * 5 + [False] * 9


# ---- the real Debian packages ------------------------------------------------------------------------
@needs_fashion
def test_the_package_holds_60000_training_and_10000_test_images_6000_and_1000_per_class():
    for prefix, n in (("train", 60_000), ("t10k", 10_000)):
        images = read_idx(FASHION_MNIST_DIR / f"{prefix}-images-idx3-ubyte.gz")
        labels = read_idx(FASHION_MNIST_DIR / f"{prefix}-labels-idx1-ubyte.gz")
        assert images.shape == (n, 28, 28) and np.bincount(labels).tolist() == [n // 10] * 10


@needs_fashion
def test_the_real_subset_is_grey_28px_images_in_class_folders_valid_from_the_test_file(tmp_path, monkeypatch):
    # 20 + 5 of each class instead of 800 + 200 keeps this test fast; the counts are the synthetic test's
    monkeypatch.setattr(datasets, "FASHION_SUBSET_TRAIN", 20)
    monkeypatch.setattr(datasets, "FASHION_SUBSET_VALID", 5)
    path = builtin_data("fashion_mnist_10k", data=tmp_path)
    layout = _layout(path)
    assert {k: len(v) for k, v in layout["train"].items()} == dict.fromkeys(sorted(FASHION_CLASSES), 20)
    assert {k: len(v) for k, v in layout["valid"].items()} == dict.fromkeys(sorted(FASHION_CLASSES), 5)
    first_boot = layout["valid"]["ankle_boot"][0]  # label 9; the package's first test image is an ankle boot
    img = Image.open(path / "valid" / "ankle_boot" / first_boot)
    assert first_boot == "00000.png" and img.mode == "L" and img.size == (28, 28)
    assert (np.asarray(img) == read_idx(FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz")[0]).all()


@needs_emoji
def test_the_emoji_are_1300_plus_64px_rgb_images_on_white_every_tenth_held_out(tmp_path):
    cps = emoji_code_points()
    path = builtin_data("emoji", data=tmp_path)
    train, valid = sorted((path / "train").glob("*.png")), sorted((path / "valid").glob("*.png"))
    assert len(cps) >= 1300 and len(train) + len(valid) == len(cps)
    assert {f.stem for f in valid} == {f"{cp:x}" for cp in cps[9::10]}
    smile = Image.open(path / "train" / "1f600.png")
    assert smile.mode == "RGB" and smile.size == (64, 64)
    pixels = np.asarray(smile).astype(int)
    assert (pixels[0, 0] == 255).all() and (pixels[-1, -1] == 255).all()  # the background is white
    centre = pixels[16:48, 16:48]
    assert (centre[..., 0] - centre[..., 2]).mean() > 60  # a yellow face: far more red than blue
