"""Image targets (super-resolution, colourisation) decoded like the inputs: `predict` gives a PIL image of
the denormalised output, `show_results` and `show_batch` draw the target beside the input; masks and
points keep coming out as before."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from ember.vision.all import (
    DataBlock,
    ImageBlock,
    MaskBlock,
    Normalize,
    PointBlock,
    RandomSplitter,
    Resize,
    aug_transforms,
    crappify,
    get_image_files,
    imagenet_stats,
    load_learner,
    resnet18,
    set_seed,
    unet_learner,
    vision_learner,
)

MEAN = torch.tensor(imagenet_stats[0]).view(3, 1, 1)
STD = torch.tensor(imagenet_stats[1]).view(3, 1, 1)


def _pixels(normalised: torch.Tensor) -> np.ndarray:
    """A normalised (3, h, w) output as the (h, w, 3) uint8 pixels it stands for, computed by hand."""
    return ((normalised * STD + MEAN) * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def _write_pictures(folder, n: int = 8) -> None:
    """n 40x48 pictures: a red ramp, a green level per picture and a blue square that moves."""
    folder.mkdir(parents=True)
    for i in range(n):
        a = np.zeros((40, 48, 3), np.uint8)
        a[..., 0] = np.linspace(0, 255, 48, dtype=np.uint8)[None]
        a[..., 1] = 30 * i
        a[10:30, 10 + i : 30 + i, 2] = 255
        Image.fromarray(a).save(folder / f"{i}.png")


@pytest.fixture(scope="module")
def i2i(tmp_path_factory):
    """An untrained image-to-image U-Net: crappified 20x24 copies in, the 40x48 originals out (32x32)."""
    root = tmp_path_factory.mktemp("i2i")
    hr, lr = root / "hr", root / "lr"
    _write_pictures(hr)
    crappify(hr, lr, size=20, text=False)
    dblock = DataBlock(
        blocks=(ImageBlock, ImageBlock),
        get_items=get_image_files,
        get_y=lambda f: hr / f.name,
        splitter=RandomSplitter(0.25, seed=0),
        item_tfms=Resize(32),
        batch_tfms=[*aug_transforms(), Normalize.from_stats(*imagenet_stats)],
    )
    dls = dblock.dataloaders(lr, bs=4, num_workers=0)
    set_seed(0)
    return unet_learner(dls, resnet18, pretrained=False, quiet=True), sorted(lr.glob("*.png")), root


def test_predict_gives_an_image_target_as_a_pil_image_of_the_denormalised_output(i2i):
    learn, files, _ = i2i
    dl = learn.dls.test_dl([files[0]], with_getters=False)
    out = learn.get_preds(dl=dl)[0][0]  # (3, 32, 32), normalised
    img, pixels, raw = learn.predict(files[0])
    assert isinstance(img, Image.Image) and img.mode == "RGB" and img.size == (32, 32)
    assert np.array_equal(np.asarray(img), _pixels(out))
    assert pixels.dtype == torch.float32 and pixels.shape == (3, 32, 32)
    assert pixels.min() >= 0 and pixels.max() <= 1
    assert np.array_equal((pixels * 255).round().to(torch.uint8).permute(1, 2, 0).numpy(), _pixels(out))
    torch.testing.assert_close(raw, out)


def test_image_block_decode_makes_floats_in_0_1_a_clamped_rounded_pil_image():
    rgb = ImageBlock().decode(torch.tensor([-0.5, 0.2, 0.5, 1.5]).view(1, 2, 2).expand(3, 2, 2))
    assert rgb.mode == "RGB" and rgb.size == (2, 2)
    assert np.asarray(rgb)[..., 0].tolist() == [[0, 51], [128, 255]]
    gray = ImageBlock().decode(torch.full((1, 3, 5), 0.25))
    assert gray.mode == "L" and gray.size == (5, 3) and np.asarray(gray).max() == 64


def test_show_results_draws_input_target_and_prediction_in_a_row_per_item(i2i):
    learn, _, root = i2i
    xb, yb = learn.dls.valid.one_batch()
    with torch.no_grad():
        out = learn.model.eval()(xb)
    fig = learn.show_results(max_n=2)
    fig.savefig(root / "show_results.png")
    axs = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axs] == ["input", "target", "prediction"] * 2
    assert all(len(ax.images) == 1 for ax in axs)  # nothing drawn over anything else
    for i in range(2):
        data = [np.asarray(ax.images[-1].get_array()) for ax in axs[3 * i : 3 * i + 3]]
        assert np.array_equal(data[0], _pixels(xb[i]))  # the input is shown, denormalised
        assert np.array_equal(data[1], _pixels(yb[i]))
        assert np.array_equal(data[2], _pixels(out[i]))  # the prediction, denormalised
    plt.close(fig)


def test_show_batch_puts_an_image_target_beside_its_input(i2i):
    learn, _, root = i2i
    fig = learn.dls.show_batch(max_n=2)
    fig.savefig(root / "show_batch.png")
    axs = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axs] == ["input", "target"] * 2
    assert all(len(ax.images) == 1 for ax in axs)
    assert not np.array_equal(axs[0].images[0].get_array(), axs[1].images[0].get_array())
    plt.close(fig)


def test_an_exported_image_to_image_unet_predicts_the_same_image_after_loading(i2i, tmp_path):
    learn, files, _ = i2i
    loaded = load_learner(learn.export(tmp_path / "i2i.pkl"))
    img, pixels, raw = learn.predict(files[1])
    img2, pixels2, raw2 = loaded.predict(files[1])
    assert isinstance(img2, Image.Image) and np.array_equal(np.asarray(img2), np.asarray(img))
    torch.testing.assert_close(pixels2, pixels)
    torch.testing.assert_close(raw2, raw)


@pytest.fixture
def rects(tmp_path):
    """8 noisy 40x48 images with a bright rectangle, which the mask marks as class 1."""
    (tmp_path / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        img = rng.integers(0, 80, (40, 48, 3), dtype=np.uint8)
        mask = np.zeros((40, 48), np.uint8)
        mask[4 + i : 20 + i, 6 + i : 26 + i] = 1
        img[mask == 1] = 220
        Image.fromarray(img).save(tmp_path / f"{i}.png")
        Image.fromarray(mask).save(tmp_path / "masks" / f"{i}.png")
    return tmp_path


def test_a_mask_target_predicts_a_long_mask_of_the_most_probable_codes(rects):
    dblock = DataBlock(
        blocks=(ImageBlock, MaskBlock(["bg", "rect"])),
        get_items=lambda p: sorted(p.glob("*.png")),
        get_y=lambda f: f.parent / "masks" / f.name,
        splitter=RandomSplitter(0.25, seed=0),
        batch_tfms=Normalize.from_stats(*imagenet_stats),
    )
    set_seed(0)
    learn = unet_learner(
        dblock.dataloaders(rects, bs=4, num_workers=0), resnet18, pretrained=False, quiet=True
    )
    mask, decoded, probs = learn.predict(rects / "3.png")
    assert mask.dtype == torch.int64 and mask.shape == (40, 48) and probs.shape == (2, 40, 48)
    assert torch.equal(mask, decoded) and torch.equal(mask, probs.argmax(0))
    fig = learn.show_results(max_n=2)
    axs = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axs] == ["target", "prediction"] * 2
    xb, _ = learn.dls.valid.one_batch()
    assert np.array_equal(axs[1].images[0].get_array(), _pixels(xb[0]))  # the input, under the mask
    assert all(len(ax.images) == 2 for ax in axs)
    plt.close(fig)


def test_a_point_target_still_predicts_points_in_minus_one_to_one(tmp_path):
    for i in range(8):
        Image.fromarray(np.full((20, 24, 3), 20 * i, np.uint8)).save(tmp_path / f"{i}.png")
    dblock = DataBlock(
        blocks=(ImageBlock, PointBlock),
        get_items=get_image_files,
        get_y=lambda f: [[4.0, 5.0], [10.0, 12.0]],
        splitter=RandomSplitter(0.25, seed=0),
        item_tfms=Resize(16),
        batch_tfms=Normalize.from_stats(*imagenet_stats),
    )
    dls = dblock.dataloaders(tmp_path, bs=4, num_workers=0)
    learn = vision_learner(dls, "resnet18", pretrained=False, y_range=(-1, 1), quiet=True)
    pts, decoded, raw = learn.predict(tmp_path / "0.png")
    assert pts.shape == (2, 2) and torch.equal(pts, raw.view(-1, 2)) and torch.equal(decoded, raw)
    assert raw.abs().max() <= 1
    fig = learn.show_results(max_n=2)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["target", "prediction"] * 2
    plt.close(fig)
