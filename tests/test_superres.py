"""Super-resolution and colourisation: the built-in photo crops, crappify's data, aligned patches, the grey
input, the feature loss and its columns, PSNR and SSIM."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import TensorDataset

import ember.vision.datasets as vision_datasets
from ember.callbacks.loss_metrics import LossMetrics
from ember.data import DataBlock, DataLoaders, FuncSplitter
from ember.data.builtin import builtin_data
from ember.data.external import URLs, untar_data
from ember.learner import Learner
from ember.vision.all import ImageBlock, Resize, get_image_files, unet_learner
from ember.vision.feature_loss import FeatureLoss, gram_matrix
from ember.vision.superres import BICUBIC_NEAREST, RandomPatch, crappify, psnr, ssim, to_grey


# ---- the built-in photo crops ---------------------------------------------------------------------
@pytest.fixture
def few_crops(monkeypatch):
    """Fewer crops per photo, so that writing the set twice takes a second, not ten."""
    monkeypatch.setattr(vision_datasets, "PHOTO_N_TRAIN", 3)
    monkeypatch.setattr(vision_datasets, "PHOTO_N_VALID", 2)


def _photo(f):
    return f.stem.rsplit("_", 1)[0]


def test_photo_crops_hold_out_whole_photos_for_validation(tmp_path, few_crops):
    path = untar_data(URLs.PHOTO_CROPS, data=tmp_path)
    train, valid = sorted((path / "train").iterdir()), sorted((path / "valid").iterdir())
    assert {_photo(f) for f in train} == set(vision_datasets.PHOTOS_TRAIN)
    assert {_photo(f) for f in valid} == set(vision_datasets.PHOTOS_VALID)
    assert not set(vision_datasets.PHOTOS_TRAIN) & set(vision_datasets.PHOTOS_VALID)
    n_train, n_valid = len(vision_datasets.PHOTOS_TRAIN), len(vision_datasets.PHOTOS_VALID)
    assert (len(train), len(valid)) == (3 * n_train, 2 * n_valid)
    for f in train + valid:
        with Image.open(f) as im:
            assert im.mode == "RGB" and im.size == (128, 128)
            assert (
                np.asarray(im).std() >= vision_datasets.PHOTO_MIN_STD
            )  # no flat black crop of retina's border


def test_photo_crops_are_written_once_and_the_same_on_every_machine(tmp_path, few_crops):
    first = builtin_data("photo_crops", data=tmp_path / "a")
    stamps = {f: f.stat().st_mtime_ns for f in first.rglob("*.png")}
    assert builtin_data("photo_crops", data=tmp_path / "a") == first
    assert {f: f.stat().st_mtime_ns for f in first.rglob("*.png")} == stamps  # nothing written again
    second = builtin_data("photo_crops", data=tmp_path / "b")
    assert [f.relative_to(first) for f in sorted(stamps)] == [
        f.relative_to(second) for f in sorted(second.rglob("*.png"))
    ]
    assert all(f.read_bytes() == (second / f.relative_to(first)).read_bytes() for f in stamps)


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


def test_crappify_with_a_scale_divides_each_side_by_it(tmp_path):
    src = _photos(tmp_path / "hr", n=1)  # 160x120
    out = crappify(src, tmp_path / "lr", size=7, scale=2, text=False)[0]  # size is ignored
    with Image.open(out) as im:
        assert im.size == (80, 60)


# ---- aligned patches and the grey input -----------------------------------------------------------
def test_random_patch_cuts_the_same_place_from_input_and_target_on_training_only():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    patch = RandomPatch(8)
    seen = set()
    for _ in range(20):
        x, y = patch.encodes((img, img.copy()), ("image", "image"), 0)
        assert x.size == (8, 8) and x.tobytes() == y.tobytes()
        a = np.asarray(img)
        hits = [
            (t, l)
            for t in range(13)
            for l in range(23)
            if np.array_equal(a[t : t + 8, l : l + 8], np.asarray(x))
        ]
        seen.update(hits)
    assert len(seen) > 10  # the place is random
    assert RandomPatch.split_idx == 0  # the pipeline leaves validation items whole
    with pytest.raises(ValueError, match="different sizes"):
        patch.encodes((img, img.resize((15, 10))), ("image", "image"), 0)


def _colour_folder(folder, n=6, size=40):
    rng = np.random.default_rng(1)
    folder.mkdir()
    for i in range(n):
        arr = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"{'valid' if i < 2 else 'train'}_{i}.png")
    return folder


def test_colourisation_learns_from_the_grey_image_to_the_colour_one(tmp_path):
    folder = _colour_folder(tmp_path / "photos")
    dblock = DataBlock(blocks=(ImageBlock, ImageBlock), get_items=get_image_files, get_x=to_grey,
                       splitter=FuncSplitter(lambda o: o.name.startswith("valid")))  # fmt: skip
    dls = dblock.dataloaders(folder, bs=2, num_workers=0)
    xb, yb = dls.train.one_batch()  # (bs, 3, h, w) floats in [0, 1], before any normalisation
    assert xb.shape == yb.shape == (2, 3, 40, 40)
    assert torch.equal(xb[:, 0], xb[:, 1]) and torch.equal(xb[:, 1], xb[:, 2])  # 3 equal channels
    luma = (yb * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)  # ITU-R 601, PIL's "L"
    torch.testing.assert_close(xb[:, 0], luma, atol=1 / 255 + 1e-6, rtol=0)
    assert (yb[:, 0] - yb[:, 1]).abs().max() > 0.1  # the target keeps its colour
    learn = unet_learner(dls, "resnet18", pretrained=False, quiet=True)
    assert learn.model(xb).shape == yb.shape


def test_a_bicubic_resize_gives_the_input_the_target_size(tmp_path):
    small = Image.fromarray(np.random.default_rng(0).integers(0, 255, (16, 16, 3), dtype=np.uint8))
    big = Image.new("RGB", (32, 32))
    x, y = Resize(32, resamples=BICUBIC_NEAREST).encodes((small, big), ("image", "image"), 1)
    assert x.size == y.size == (32, 32)
    assert x.tobytes() == small.resize((32, 32), Image.Resampling.BICUBIC).tobytes()


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
    fl = FeatureLoss(m, layer_ids=[1, 4], layer_wgts=[2.0, 3.0], rescale=False)
    x, y = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    total = fl(x, y)
    assert fl.metric_names == ["pixel", "feat_0", "feat_1", "gram_0", "gram_1"]
    torch.testing.assert_close(fl.metrics["pixel"], F.l1_loss(x, y))
    fx1, fy1 = m[:2](x), m[:2](y)
    torch.testing.assert_close(fl.metrics["feat_0"], F.l1_loss(fx1, fy1) * 2)
    torch.testing.assert_close(fl.metrics["gram_0"], F.l1_loss(gram_matrix(fx1), gram_matrix(fy1)) * 4 * 5e3)
    torch.testing.assert_close(total, sum(fl.metrics.values()))


def test_feature_loss_rescales_each_layer_by_the_targets_mean_feature_so_its_scale_does_not_matter():
    m = _tiny_feat()
    x, y = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    fl = FeatureLoss(m, layer_ids=[1, 4], layer_wgts=[2.0, 3.0])
    total = fl(x, y)
    fx1, fy1 = m[:2](x), m[:2](y)
    s1 = fy1.abs().mean()
    torch.testing.assert_close(fl.metrics["feat_0"], F.l1_loss(fx1 / s1, fy1 / s1) * 2)
    want = F.l1_loss(gram_matrix(fx1 / s1), gram_matrix(fy1 / s1)) * 4 * 5e3
    torch.testing.assert_close(fl.metrics["gram_0"], want)
    # Keras' VGG16 puts out features ~100 times larger than the lesson's: the same network, scaled
    louder = copy.deepcopy(m)
    with torch.no_grad():  # ReLU nets are homogeneous: layer 1's features x10, layer 4's x100
        louder[0].weight *= 10
        louder[0].bias *= 10
        louder[3].weight *= 10
        louder[3].bias *= 100
    torch.testing.assert_close(FeatureLoss(louder, layer_ids=[1, 4], layer_wgts=[2.0, 3.0])(x, y), total)


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
