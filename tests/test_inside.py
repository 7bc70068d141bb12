"""Seeing inside a vision network, on tiny synthetic images: kernels against conv2d and a hand-computed
pixel, filters and feature maps against the model's own layers, activation maximisation's promises
(determinism, the learner's channels and normalisation, weights untouched), and layer names."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ember.basics import Learner
from ember.interpret import LayerNotFoundError
from ember.vision.all import ImageDataLoaders, Normalize, PILImageBW
from ember.vision.inside import (
    KERNELS,
    apply_kernel,
    class_probs,
    feature_maps,
    show_class_visualizations,
    show_conv_filters,
    show_feature_maps,
    show_kernel_effect,
    visualize_channel,
    visualize_class,
    visualize_classes,
)


def write_images(path, size=16):
    """bright/ and dark/ images of noise, 6 of each in train/ and valid/."""
    for split in ("train", "valid"):
        for label, base in (("bright", 170), ("dark", 0)):
            (path / split / label).mkdir(parents=True)
            for i in range(6):
                a = np.random.default_rng(i + 10 * len(split)).integers(0, 80, (size, size, 3)) + base
                Image.fromarray(a.astype(np.uint8)).save(path / split / label / f"{i}.png")
    return path


def small_cnn(n_in=3):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(n_in, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, stride=2, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))  # fmt: skip


@pytest.fixture(scope="module")
def image_path(tmp_path_factory):
    return write_images(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def learn(image_path):
    """RGB 16 px images normalised with stats far from 0/1, a random 2-conv CNN (no training needed)."""
    norm = Normalize.from_stats([0.6, 0.4, 0.3], [0.2, 0.3, 0.25])
    dls = ImageDataLoaders.from_folder(image_path, bs=4, num_workers=0, device="cpu", batch_tfms=norm)
    return Learner(dls, small_cnn(), quiet=True)


def item(image_path):
    return image_path / "valid" / "bright" / "0.png"


# ---- kernels ---------------------------------------------------------------------------------------------
def test_a_kernel_is_conv2d_on_each_channel():
    x = torch.rand(3, 7, 9)
    k = KERNELS["emboss"]
    expected = F.conv2d(x[:, None], k[None, None], padding=1)[:, 0]
    assert torch.allclose(apply_kernel(x, "emboss", padding_mode="zeros"), expected, atol=1e-6)


def test_top_edge_at_the_centre_pixel_is_the_hand_computed_sum():
    x = torch.arange(1.0, 10.0).reshape(1, 3, 3)  # 1 2 3 / 4 5 6 / 7 8 9
    # (7 + 2*8 + 9) below, minus (1 + 2*2 + 3) above: positive, a top edge of something bright
    assert apply_kernel(x, "top_edge")[0, 1, 1].item() == pytest.approx(32 - 8)
    assert apply_kernel(x, "left_edge")[0, 1, 1].item() == pytest.approx((3 + 12 + 9) - (1 + 8 + 7))
    assert apply_kernel(x, [[0, 0, 0], [0, 0, 1], [0, 0, 0]])[0, 1, 1].item() == 6  # a shift: the right pixel


def test_identity_keeps_the_image_and_blur_keeps_a_flat_one_flat():
    x = torch.rand(3, 5, 5)
    assert torch.equal(apply_kernel(x, "identity"), x)
    assert torch.allclose(apply_kernel(torch.full((1, 6, 6), 0.3), "blur"), torch.full((1, 6, 6), 0.3))


def test_a_uint8_image_is_read_as_0_to_1_and_a_file_as_rgb(image_path):
    u8 = torch.full((1, 4, 4), 255, dtype=torch.uint8)
    assert torch.allclose(apply_kernel(u8, "identity"), torch.ones(1, 4, 4))
    assert apply_kernel(item(image_path), "sharpen").shape == (3, 16, 16)


def test_an_unknown_kernel_name_lists_the_names_and_an_even_kernel_is_refused():
    with pytest.raises(KeyError, match="sharpen"):
        apply_kernel(torch.rand(1, 4, 4), "sharpn")
    with pytest.raises(ValueError, match="odd"):
        apply_kernel(torch.rand(1, 4, 4), [[1, 0], [0, 1]])


def test_the_kernel_figure_shows_image_kernel_and_result_with_the_numbers_written_in(image_path):
    fig = show_kernel_effect(item(image_path), "left_edge")
    assert [ax.get_title() for ax in fig.axes] == ["original", "left_edge", "result"]
    assert sorted(t.get_text() for t in fig.axes[1].texts) == sorted(
        ["1", "0", "-1", "2", "0", "-2", "1", "0", "-1"]
    )


# ---- filters and feature maps -------------------------------------------------------------------------
def test_feature_maps_have_the_layers_channels_and_size_whichever_way_the_layer_is_named(learn, image_path):
    by_index = feature_maps(learn, item(image_path), 1)  # the second conv: 8 channels, stride 2
    assert by_index.shape == (8, 8, 8)
    assert torch.equal(feature_maps(learn, item(image_path), "2"), by_index)
    assert torch.equal(feature_maps(learn, item(image_path), learn.model[2]), by_index)


def test_feature_maps_are_what_the_layer_computes_on_the_normalised_input(learn, image_path):
    xb = learn.dls.test_dl([item(image_path)], with_getters=False).one_batch()[0]
    with torch.no_grad():
        expected = learn.model[0](xb)[0]
    assert torch.allclose(feature_maps(learn, item(image_path), 0), expected, atol=1e-6)
    assert all(not m._forward_hooks for m in learn.model.modules())  # the hooks are gone


def test_an_unknown_layer_name_raises_the_named_error_listing_the_layers(learn, image_path):
    with pytest.raises(LayerNotFoundError, match=r"no layer named 'body.2'.*conv layers are '0', '2'"):
        feature_maps(learn, item(image_path), "body.2")
    with pytest.raises(LayerNotFoundError, match="2 conv layers"):
        show_conv_filters(learn, 5)


def test_the_filter_grid_has_one_panel_per_filter(learn):
    assert len(show_conv_filters(learn).axes) == 6
    assert len(show_conv_filters(learn, 1).axes) == 8  # 6 input channels: each drawn as their mean
    assert len(show_conv_filters(learn, 1, max_n=5).axes) == 5


def test_the_feature_map_figure_has_a_panel_per_channel_of_each_layer(learn, image_path):
    assert len(show_feature_maps(learn, item(image_path), [0, "2"]).axes) == 6 + 8
    assert len(show_feature_maps(learn, item(image_path), 1, max_n=3).axes) == 3


# ---- activation maximisation ----------------------------------------------------------------------------
def test_a_class_image_is_in_0_1_at_the_data_size_and_the_same_for_the_same_seed(learn):
    a = visualize_class(learn, "bright", steps=6, seed=3)
    assert a.shape == (3, 16, 16) and a.min() >= 0 and a.max() <= 1
    assert torch.equal(visualize_class(learn, 0, steps=6, seed=3), a)  # "bright" is class 0 of bright, dark
    assert not torch.equal(visualize_class(learn, 0, steps=6, seed=4), a)
    assert visualize_class(learn, 0, steps=2, size=(12, 20), param="pixels").shape == (3, 12, 20)


def test_visualising_leaves_the_weights_their_grads_and_the_training_mode_alone(learn):
    before = [p.detach().clone() for p in learn.model.parameters()]
    learn.model.train()
    visualize_channel(learn, 1, 2, steps=3)
    assert learn.model.training
    assert all(torch.equal(p, b) and p.grad is None for p, b in zip(learn.model.parameters(), before))


def test_ascent_makes_a_brightness_class_bright_and_its_opposite_dark(image_path):
    """A linear model on the normalised mean colour: class 0's logit grows with brightness, class 1's
    falls; the images drawn for them must be brighter and darker than the data's mean."""
    dls = ImageDataLoaders.from_folder(image_path, bs=4, num_workers=0, device="cpu",
                                       batch_tfms=Normalize.from_stats([0.5] * 3, [0.25] * 3))  # fmt: skip
    head = nn.Linear(3, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 1, 1], [-1, -1, -1]]))
        head.bias.zero_()
    learn = Learner(dls, nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), head), quiet=True)
    bright, dark = visualize_classes(learn, [0, 1], steps=100, l2=0)  # the decay would hold them back
    data_mean = 0.5 * (170 + 40 + 40) / 255  # the two classes' mean pixel
    assert bright.mean() > data_mean + 0.2 and dark.mean() < data_mean - 0.2


def test_class_probs_normalises_as_the_pipeline_does(learn, tmp_path):
    """The probability of a drawn image, saved as a PNG and read by learn.predict, is class_probs'."""
    img = visualize_class(learn, 0, steps=4)
    img8 = (img * 255).round() / 255
    Image.fromarray((img8.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(tmp_path / "x.png")
    _, _, probs = learn.predict(tmp_path / "x.png")
    assert torch.allclose(class_probs(learn, img8[None])[0], probs, atol=1e-5)


def test_a_one_channel_learner_gets_one_channel_images(image_path):
    dls = ImageDataLoaders.from_folder(image_path, bs=4, num_workers=0, device="cpu", img_cls=PILImageBW)
    learn = Learner(dls, small_cnn(n_in=1), quiet=True)
    assert visualize_class(learn, 0, steps=2).shape == (1, 16, 16)
    assert visualize_channel(learn, "0", 5, steps=2).shape == (1, 16, 16)
    with pytest.raises(IndexError, match="6 channels"):
        visualize_channel(learn, 0, 6, steps=1)


def test_the_class_figure_has_a_panel_per_class_titled_with_its_probability(learn):
    fig = show_class_visualizations(learn, steps=2)
    titles = [ax.get_title() for ax in fig.axes]
    assert [t.split(":")[0] for t in titles] == ["bright", "dark"] and all(" p=" in t for t in titles)
