"""Super-resolution: crappify's data, the feature loss and its columns, PSNR and SSIM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import TensorDataset

from ember.callbacks.loss_metrics import LossMetrics
from ember.data import DataLoaders
from ember.learner import Learner
from ember.vision.feature_loss import FeatureLoss, gram_matrix
from ember.vision.superres import crappify, psnr, ssim


# ---- crappify -------------------------------------------------------------------------------------
def _photos(folder, n=4, size=(160, 120)):
    rng = np.random.default_rng(0)
    (folder / "sub").mkdir(parents=True)
    for i in range(n):
        # smooth gradients plus noise: a photo-like image whose JPEG size depends on quality
        yy, xx = np.mgrid[0 : size[1], 0 : size[0]]
        base = np.stack([xx * 255 / size[0], yy * 255 / size[1], (xx + yy) % 256], -1)
        arr = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(arr).save(folder / ("sub" if i % 2 else "") / f"img{i}.jpg", quality=95)
    return folder


def _mtimes(folder):
    return {p: p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def test_crappify_writes_each_image_at_the_same_relative_path_with_its_shorter_side_at_size(tmp_path):
    src = _photos(tmp_path / "hr")
    written = crappify(src, tmp_path / "lr", size=48)
    assert sorted(p.relative_to(tmp_path / "lr") for p in written) == sorted(
        p.relative_to(src) for p in src.rglob("*.jpg")
    )
    for p in written:
        with Image.open(p) as im:
            assert im.format == "JPEG" and im.size == (64, 48)  # 160x120 scaled by 48/120


def test_crappify_quality_shows_in_file_size_and_quantization_tables(tmp_path):
    src = _photos(tmp_path / "hr", n=1)
    low = crappify(src, tmp_path / "low", quality=(10, 10), text=False)[0]
    high = crappify(src, tmp_path / "high", quality=(90, 90), text=False)[0]
    assert low.stat().st_size < high.stat().st_size
    with Image.open(low) as a, Image.open(high) as b:
        # coarser quantization (bigger divisors) at lower quality
        assert sum(a.quantization[0]) > 3 * sum(b.quantization[0])


def test_crappify_is_deterministic_per_file(tmp_path):
    src = _photos(tmp_path / "hr")
    first = crappify(src, tmp_path / "a")
    second = crappify(src, tmp_path / "b", n_workers=1)
    assert [p.read_bytes() for p in sorted(first)] == [p.read_bytes() for p in sorted(second)]
    other_seed = crappify(src, tmp_path / "c", seed=1)
    assert [p.read_bytes() for p in sorted(first)] != [p.read_bytes() for p in sorted(other_seed)]


def test_crappify_resumes_rewriting_nothing_up_to_date_and_leaves_no_temp_files(tmp_path):
    src, dst = _photos(tmp_path / "hr"), tmp_path / "lr"
    assert len(crappify(src, dst)) == 4
    before = _mtimes(dst)
    assert crappify(src, dst) == []
    assert _mtimes(dst) == before
    (dst / "img0.jpg").unlink()  # an interrupted run: one file missing
    assert [p.name for p in crappify(src, dst)] == ["img0.jpg"]
    assert not [p for p in dst.rglob("*") if p.name.endswith(".tmp")]


def test_crappify_keeps_a_png_a_png_with_jpeg_artefacts(tmp_path):
    src = tmp_path / "hr"
    src.mkdir()
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(src / "a.png")
    out = crappify(src, tmp_path / "lr", size=32, quality=(10, 10), text=False)[0]
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (32, 32)


# ---- PSNR and SSIM --------------------------------------------------------------------------------
def test_psnr_matches_the_formula_on_a_hand_case():
    pred, targ = torch.full((2, 3, 8, 8), 0.5), torch.full((2, 3, 8, 8), 0.6)
    assert psnr(pred, targ) == pytest.approx(10 * math.log10(1 / 0.1**2))


def test_ssim_is_one_for_identical_images_and_lower_with_noise():
    torch.manual_seed(0)
    targ = torch.rand(2, 3, 16, 16)
    assert ssim(targ, targ) == pytest.approx(1.0)
    noisy = (targ + 0.2 * torch.randn_like(targ)).clamp(0, 1)
    assert ssim(noisy, targ) < 0.9
    from skimage.metrics import structural_similarity

    t0, n0 = targ[0].double().numpy(), noisy[0].double().numpy()
    want = structural_similarity(t0, n0, data_range=1.0, channel_axis=0)
    assert ssim(noisy[:1], targ[:1]) == pytest.approx(want)


# ---- gram matrix and FeatureLoss ------------------------------------------------------------------
def test_gram_matrix_matches_a_hand_computation():
    x = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (1, 2 channels, 1, 2)
    # channel dot products: 1+4=5, 3+8=11, 9+16=25; divided by c*h*w = 4
    want = torch.tensor([[[5.0, 11.0], [11.0, 25.0]]]) / 4
    torch.testing.assert_close(gram_matrix(x), want)


def _tiny_feat():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(inplace=True))  # fmt: skip


def test_feature_loss_parts_are_pixel_features_and_grams():
    m = _tiny_feat()
    fl = FeatureLoss(m, layer_ids=[1, 4], layer_wgts=[2.0, 3.0])
    x, y = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    total = fl(x, y)
    assert fl.metric_names == ["pixel", "feat_0", "feat_1", "gram_0", "gram_1"]
    torch.testing.assert_close(fl.metrics["pixel"], F.l1_loss(x, y))
    fx1, fy1 = m[:2](x), m[:2](y)
    torch.testing.assert_close(fl.metrics["feat_0"], F.l1_loss(fx1, fy1) * 2)
    torch.testing.assert_close(fl.metrics["gram_0"], F.l1_loss(gram_matrix(fx1), gram_matrix(fy1)) * 4 * 5e3)
    torch.testing.assert_close(total, sum(fl.metrics.values()))


def test_feature_loss_is_zero_for_identical_images_and_positive_otherwise():
    fl = FeatureLoss(_tiny_feat(), layer_ids=[1, 4], layer_wgts=[5, 15])
    x = torch.rand(2, 3, 8, 8)
    assert fl(x, x.clone()).item() == 0
    assert fl(x, torch.rand(2, 3, 8, 8)).item() > 0


def test_feature_loss_leaves_no_hooks_and_sends_gradients_to_the_input():
    m = _tiny_feat()
    fl = FeatureLoss(m, layer_ids=[1, 4], layer_wgts=[5, 15])
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    fl(x, torch.rand(2, 3, 8, 8)).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(not layer._forward_hooks and not layer._forward_pre_hooks for layer in m.modules())
    assert all(p.grad is None and not p.requires_grad for p in m.parameters())  # the feature model is frozen


def test_feature_loss_defaults_fit_vgg16_features():
    from ember.models import vgg16_features

    fl = FeatureLoss(vgg16_features(pretrained=False))
    fl(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    assert len(fl.metrics) == 7 and fl.layer_wgts == [5, 15, 2]


def test_loss_metrics_show_each_part_of_the_loss_in_the_epoch_table():
    torch.manual_seed(0)
    x, y = torch.rand(16, 3, 8, 8), torch.rand(16, 3, 8, 8)
    dls = DataLoaders.from_dsets(TensorDataset(x[:8], y[:8]), TensorDataset(x[8:], y[8:]), bs=4, device="cpu")
    fl = FeatureLoss(_tiny_feat(), layer_ids=[1, 4], layer_wgts=[5, 15])
    learn = Learner(dls, nn.Conv2d(3, 3, 3, padding=1), loss_func=fl, cbs=LossMetrics())
    learn.fit(1, lr=1e-3)
    names = learn.recorder.metric_names
    assert names[3:-1] == fl.metric_names
    row = dict(zip(names[1:-1], learn.recorder.values[-1]))
    parts = sum(row[n] for n in fl.metric_names)
    assert row["valid_loss"] == pytest.approx(parts, rel=1e-4)  # the parts add up to the loss, epoch-wide
    learn.fit(1, lr=1e-3)
    assert learn.recorder.metric_names == names  # a second fit adds no duplicate columns
