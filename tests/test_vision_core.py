"""Loading images and masks from every kind of source, clear errors for bad files, and showing them."""

from __future__ import annotations

import io

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from ember.data.errors import DataError
from ember.vision.core import (
    ImageLoadError,
    PILImage,
    PILImageBW,
    PILMask,
    get_image_files,
    image_size,
    imagenet_stats,
    show_image,
    show_mask,
    show_points,
)


def rgb_array(h: int = 6, w: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def save(img: Image.Image, path, fmt: str | None = None):
    img.save(path, fmt)
    return path


def test_imagenet_stats_are_the_published_values():
    assert imagenet_stats == ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "CMYK", "I;16"])
def test_pilimage_from_a_file_of_any_mode_is_rgb(tmp_path, mode):
    src = Image.fromarray(rgb_array()).convert(mode) if mode != "I;16" else Image.new("I;16", (8, 6), 40000)
    path = save(src, tmp_path / ("x.jpg" if mode == "CMYK" else "x.png"))
    img = PILImage.create(path)
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (8, 6)
    if mode == "I;16":  # 16 bits keep their top 8, not clipped to white
        assert img.getpixel((0, 0)) == (40000 >> 8,) * 3


def test_pilimage_from_str_path_bytes_and_pil_give_the_same_pixels(tmp_path):
    a = rgb_array()
    path = save(Image.fromarray(a), tmp_path / "x.png")
    for src in (str(path), path, path.read_bytes(), Image.fromarray(a)):
        assert np.array_equal(np.asarray(PILImage.create(src)), a)


def test_pilimage_from_arrays_and_tensors():
    a = rgb_array()
    assert np.array_equal(np.asarray(PILImage.create(a)), a)  # (h, w, c) uint8
    assert np.array_equal(np.asarray(PILImage.create(a / 255.0)), a)  # float in [0, 1]
    assert np.array_equal(np.asarray(PILImage.create(torch.from_numpy(a).permute(2, 0, 1))), a)  # (c, h, w)
    grey = PILImage.create(torch.full((6, 8), 0.5))  # (h, w) float tensor
    assert grey.mode == "RGB" and grey.getpixel((3, 2)) == (128, 128, 128)


def test_pilimagebw_is_single_channel_from_rgb():
    img = PILImageBW.create(rgb_array())
    assert img.mode == "L" and img.size == (8, 6)


def test_pilimage_rejects_an_array_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"\(h, w\)"):
        PILImage.create(np.zeros((2, 3, 4, 5), np.uint8))


def test_mask_keeps_class_indices_from_palette_files(tmp_path):
    ids = np.random.default_rng(0).integers(0, 5, (6, 8), dtype=np.uint8)
    p = Image.fromarray(ids)
    p.putpalette(list(range(48)))
    mask = PILMask.create(save(p, tmp_path / "m.png"))
    assert mask.mode == "P" and np.array_equal(np.asarray(mask), ids)


def test_mask_from_arrays_tensors_and_large_ids():
    ids = np.array([[0, 1], [2, 300]])
    assert np.array_equal(np.asarray(PILMask.create(ids)), ids)
    assert np.array_equal(np.asarray(PILMask.create(torch.tensor([[0, 1], [2, 3]]))), [[0, 1], [2, 3]])


def test_a_colour_mask_is_an_error_that_says_to_map_colours():
    with pytest.raises(ValueError, match="map its colours"):
        PILMask.create(Image.fromarray(rgb_array()))


def test_a_grey_mask_saved_as_rgb_becomes_indices():
    ids = np.random.default_rng(0).integers(0, 5, (6, 8), dtype=np.uint8)
    mask = PILMask.create(Image.fromarray(np.stack([ids] * 3, -1)))
    assert mask.mode == "L" and np.array_equal(np.asarray(mask), ids)


def truncated(tmp_path, fmt: str):
    buf = io.BytesIO()
    Image.fromarray(rgb_array(64, 64)).save(buf, fmt)
    data = buf.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    "make",
    [
        lambda d: d / "missing.png",
        lambda d: (d / "x.png").write_bytes(np.random.default_rng(0).bytes(500)) and d / "x.png",
        lambda d: truncated(d, "PNG"),
        lambda d: truncated(d, "JPEG"),
    ],
    ids=["missing", "random-bytes", "truncated-png", "truncated-jpeg"],
)
def test_bad_files_raise_imageloaderror_naming_the_file(tmp_path, make):
    path = make(tmp_path)
    for create in (PILImage.create, PILMask.create):
        with pytest.raises(ImageLoadError) as e:
            create(path)
        assert str(path) in str(e.value)
        assert isinstance(e.value, DataError | ValueError)
    if path.exists():
        assert "remove or replace it" in str(e.value)


def test_image_size_is_w_h_for_pil_tensors_and_arrays():
    assert image_size(Image.new("RGB", (8, 6))) == (8, 6)
    assert image_size(torch.zeros(3, 6, 8)) == (8, 6)
    assert image_size(np.zeros((6, 8, 3))) == (8, 6)


@pytest.mark.parametrize(
    "img",
    [
        Image.new("RGB", (8, 6)),
        torch.zeros(3, 6, 8, dtype=torch.uint8),
        torch.rand(1, 6, 8),
        torch.rand(6, 8),
    ],
    ids=["pil", "uint8-chw", "float-1hw", "float-hw"],
)
def test_show_image_draws_every_kind_of_image(img):
    ax = show_image(img, title="t")
    drawn = ax.get_images()[0].get_array()
    assert drawn.shape[:2] == (6, 8) and ax.get_title() == "t"
    plt.close("all")


def test_show_mask_gives_each_class_a_fixed_colour():
    _, ax = plt.subplots()
    show_mask(torch.tensor([[0, 1], [2, 3]]), ax)
    show_mask(torch.tensor([[0, 0], [0, 3]]), ax)
    a, b = (im.to_rgba(im.get_array()) for im in ax.get_images())
    assert np.allclose(a[1, 1], b[1, 1])  # class 3 is the same colour, whatever else the mask holds
    plt.close("all")


def test_show_points_puts_corners_on_the_image_corners():
    _, ax = plt.subplots()
    show_image(torch.zeros(3, 4, 8), ax)
    show_points(torch.tensor([[-1.0, -1.0], [1.0, 1.0]]), ax, (8, 4))
    show_points(torch.tensor([[0.0, 0.0]]), ax, (8, 4), scaled=False)
    left, right, bottom, top = ax.get_images()[0].get_extent()
    pts = np.concatenate([c.get_offsets() for c in ax.collections])
    assert np.allclose(pts, [[left, top], [right, bottom], [left, top]])
    show_points(torch.tensor([[3.0, 3.0]]), ax, (8, 4))  # far outside: the view stays on the image
    assert ax.get_xlim() == (left, right) and ax.get_ylim() == (bottom, top)
    plt.close("all")


def test_get_image_files_finds_images_by_extension_in_any_case_skipping_hidden_ones(tmp_path):
    for rel in ["a/1.png", "a/2.JPG", "a/.hidden.png", "b/3.webp", "b/notes.txt", ".cache/4.png", "5.png"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    names = lambda fs: [f.relative_to(tmp_path).as_posix() for f in fs]  # noqa: E731
    assert names(get_image_files(tmp_path)) == ["5.png", "a/1.png", "a/2.JPG", "b/3.webp"]
    assert names(get_image_files(tmp_path, folders=["a"])) == ["a/1.png", "a/2.JPG"]
    assert names(get_image_files(tmp_path, recurse=False)) == ["5.png"]
