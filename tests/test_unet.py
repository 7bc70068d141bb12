"""DynamicUnet with explicit skips (any input size, no hooks), and unet_learner on tiny synthetic masks."""

from __future__ import annotations

import copy

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from ember.models.surgery import num_features
from ember.models.weights import WeightsNotFoundError
from ember.vision.all import (
    CrossEntropyLossFlat,
    DataBlock,
    DynamicUnet,
    EncoderCutError,
    ImageBlock,
    InputTooSmallError,
    MSELossFlat,
    RandomSplitter,
    SegmentationDataLoaders,
    SelfAttention,
    SigmoidRange,
    create_model,
    create_unet_model,
    cut_body,
    model_spec,
    resnet18,
    set_seed,
    unet_learner,
)


def _body(arch="resnet18"):
    return cut_body(create_model(arch), model_spec(arch))


def _no_hooks(model: nn.Module) -> bool:
    return all(not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks) for m in model.modules())


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return DynamicUnet(_body(), n_out=3, img_size=64)


@pytest.mark.parametrize("hw", [(64, 64), (65, 47), (100, 37), (33, 33)])
def test_the_output_has_the_inputs_height_and_width_for_any_size(unet, hw):
    assert unet(torch.randn(2, 3, *hw)).shape == (2, 3, *hw)


def test_a_resnet34_unet_takes_an_odd_non_square_input():
    model = DynamicUnet(_body("resnet34"), n_out=2, img_size=(65, 47)).eval()
    assert model(torch.randn(1, 3, 65, 47)).shape == (1, 2, 65, 47)


def test_the_encoder_returns_its_skip_features_explicitly(unet):
    out, skips = unet.encoder(torch.randn(1, 3, 64, 64))
    assert out.shape == (1, 512, 2, 2)
    # ResNet: after the stem's ReLU (1/2), layer1 (1/4), layer2 (1/8), layer3 (1/16)
    assert [tuple(s.shape[1:]) for s in skips] == [(64, 32, 32), (64, 16, 16), (128, 8, 8), (256, 4, 4)]
    assert len(unet.blocks) == 4 and unet.min_size == (32, 32)


def test_no_hooks_are_registered_after_construction_or_forward(unet):
    assert _no_hooks(unet)
    unet(torch.randn(1, 3, 40, 40)).sum().backward()
    assert _no_hooks(unet)


def test_gradients_reach_the_encoders_first_conv():
    model = DynamicUnet(_body(), n_out=2, img_size=32)
    model(torch.randn(2, 3, 32, 32)).pow(2).mean().backward()
    first = model.encoder.stages[0].weight.grad
    assert first is not None and first.abs().sum() > 0


def test_a_deep_copy_and_a_state_dict_reload_give_the_same_outputs(unet):
    unet.eval()
    x = torch.randn(1, 3, 48, 40)
    twin = copy.deepcopy(unet)
    torch.manual_seed(1)
    fresh = DynamicUnet(_body(), n_out=3, img_size=64).eval()
    assert not torch.allclose(fresh(x), unet(x))
    fresh.load_state_dict(unet.state_dict())
    torch.testing.assert_close(twin(x), unet(x))
    torch.testing.assert_close(fresh(x), unet(x))
    unet.train()


def test_an_input_smaller_than_the_encoders_downsampling_is_a_named_error(unet):
    with pytest.raises(InputTooSmallError, match="8x8 is smaller than 32x32"):
        unet(torch.randn(1, 3, 8, 8))
    with pytest.raises(InputTooSmallError, match="img_size 16x64"):
        DynamicUnet(_body(), n_out=2, img_size=(16, 64))


def test_an_encoder_that_cannot_be_cut_is_a_named_error():
    flat = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
    with pytest.raises(EncoderCutError, match="never changes the size"):
        DynamicUnet(flat, n_out=2, img_size=32)
    with pytest.raises(EncoderCutError, match="cut_body"):
        DynamicUnet(nn.Sequential(*create_model("resnet18").children()), n_out=2, img_size=32)
    with pytest.raises(EncoderCutError, match="must be an nn.Sequential"):
        DynamicUnet(create_model("resnet18"), n_out=2, img_size=32)


def test_self_attention_sits_in_the_third_block_from_the_end_and_y_range_bounds_the_output():
    model = DynamicUnet(_body(), n_out=1, img_size=32, self_attention=True, y_range=(-1, 2), bottle=True)
    has_sa = [any(isinstance(m, SelfAttention) for m in b.modules()) for b in model.blocks]
    assert has_sa == [False, True, False, False]
    assert isinstance(model.head[-1], SigmoidRange)
    out = model(torch.randn(2, 3, 33, 35) * 10)
    assert out.shape == (2, 1, 33, 35) and out.min() >= -1 and out.max() <= 2


def test_a_pretrained_efficientnet_lite0_body_makes_a_unet():
    try:
        model = create_unet_model("efficientnet_lite0", n_out=2, img_size=64, pretrained=True)
    except WeightsNotFoundError:
        pytest.skip("efficientnet-lite0 weights are not installed")
    assert model.eval()(torch.randn(1, 3, 50, 38)).shape == (1, 2, 50, 38)
    assert len(model.blocks) == 4 and _no_hooks(model)


def test_an_efficientnet_unet_encoder_stops_before_the_1x1_head_conv_that_only_widens():
    # The classifier's body ends in a 1x1 conv to 1280 channels; a U-Net built on it carries that width
    # through its middle convs (82M parameters) for no resolution. The encoder stops at the last stage.
    model = create_unet_model("efficientnet_lite0", n_out=2, img_size=64, pretrained=False)
    out, _ = model.encoder.eval()(torch.zeros(1, 3, 64, 64))
    assert out.shape[1] == 320
    assert sum(p.numel() for p in model.parameters()) < 12e6
    body = cut_body(create_model("efficientnet_lite0"), model_spec("efficientnet_lite0"))
    assert num_features(body) == 1280  # the classifier's body is unchanged
    wide = create_unet_model("efficientnet_lite0", n_out=2, img_size=64, pretrained=False, cut=3)
    assert wide.encoder.eval()(torch.zeros(1, 3, 64, 64))[0].shape[1] == 1280  # cut=3 keeps the head conv


# ---- unet_learner --------------------------------------------------------------------------------------
@pytest.fixture
def rects(tmp_path):
    """24 noisy 48x40 images, each with a bright rectangle; the mask marks the rectangle as class 1."""
    (tmp_path / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(24):
        img = rng.integers(0, 80, (40, 48, 3), dtype=np.uint8)
        mask = np.zeros((40, 48), np.uint8)
        top, left = rng.integers(0, 20), rng.integers(0, 24)
        mask[top : top + 16, left : left + 20] = 1
        img[mask == 1] = 220
        Image.fromarray(img).save(tmp_path / f"{i}.png")
        Image.fromarray(mask).save(tmp_path / "masks" / f"{i}.png")
    return tmp_path


def _seg_dls(path, bs=8):
    fnames = sorted(path.glob("*.png"))
    get_mask = lambda p: p.parent / "masks" / p.name  # noqa: E731
    return SegmentationDataLoaders.from_label_func(
        path, fnames, get_mask, codes=["bg", "rect"], bs=bs, num_workers=0, seed=0
    )


def test_unet_learner_trains_on_masks_and_shows_results(rects):
    set_seed(0)
    learn = unet_learner(_seg_dls(rects, bs=4), resnet18, pretrained=False, quiet=True)
    assert learn.model.head[0][0].out_channels == 2  # n_out from the MaskBlock's codes
    assert isinstance(learn.loss_func, CrossEntropyLossFlat) and learn.loss_func.axis == 1
    groups = learn.splitter(learn.model)
    assert len(groups) == 2 and len(groups[0]) == len(list(learn.model.encoder.parameters()))
    assert sum(len(g) for g in groups) == len(list(learn.model.parameters()))
    xb, yb = learn.dls.valid.one_batch()
    before = learn.loss_func(learn.model.eval()(xb), yb).item()
    learn.fit_one_cycle(4, 2e-3)
    assert learn.recorder.history[-1]["valid_loss"] < 0.5 * before
    fig = learn.show_results(max_n=2)
    plt.close(fig)
    assert _no_hooks(learn.model)


def test_unet_learner_with_an_image_target_predicts_its_channels_with_mse(rects):
    dblock = DataBlock(blocks=(ImageBlock, ImageBlock), get_items=lambda p: sorted(p.glob("*.png")),
                       splitter=RandomSplitter(0.25, seed=0))  # fmt: skip
    dls = dblock.dataloaders(rects, bs=4, num_workers=0)
    learn = unet_learner(dls, "resnet18", pretrained=False, quiet=True, config=dict(y_range=(0, 1)))
    assert learn.model.head[0][0].out_channels == 3 and isinstance(learn.model.head[-1], SigmoidRange)
    assert isinstance(learn.loss_func, MSELossFlat)
    xb, yb = learn.dls.one_batch()
    assert learn.model(xb).shape == yb.shape


def test_a_pretrained_unet_learner_starts_with_its_encoder_frozen(rects):
    dls = _seg_dls(rects)
    try:
        learn = unet_learner(dls, "efficientnet_lite0", quiet=True)
    except WeightsNotFoundError:
        pytest.skip("efficientnet-lite0 weights are not installed")
    enc, dec = learn.splitter(learn.model)
    bn = {id(p) for m in learn.model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}
    assert not any(p.requires_grad for p in enc if id(p) not in bn) and all(p.requires_grad for p in dec)
    assert any(type(t).__name__ == "Normalize" for t in dls.dblock.batch_tfms)


def test_a_unet_learner_exports_and_its_loaded_copy_predicts_the_same_mask(rects):
    from ember.vision.all import load_learner, read_export_info

    set_seed(0)
    learn = unet_learner(_seg_dls(rects, bs=4), resnet18, pretrained=False, quiet=True, self_attention=True)
    learn.fit(1, 1e-3)
    path = learn.export(rects / "unet.pkl")
    assert read_export_info(path)["task"] == "segmentation"
    loaded = load_learner(path)
    item = rects / "3.png"
    mask, decoded, probs = learn.predict(item)
    mask2, decoded2, probs2 = loaded.predict(item)
    assert decoded.shape == (40, 48) and probs.shape == (2, 40, 48)  # one class per pixel, input's size
    torch.testing.assert_close(probs2, probs)
    assert torch.equal(decoded2, decoded)


def test_a_unet_with_arguments_that_are_not_plain_data_says_it_cannot_be_exported(rects):
    from ember.learner.export import ExportError

    learn = unet_learner(_seg_dls(rects), resnet18, pretrained=False, quiet=True, act_cls=nn.GELU)
    with pytest.raises(ExportError, match="model_config"):
        learn.export(rects / "unet.pkl")
