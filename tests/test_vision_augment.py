"""Vision transforms keep images, masks and points aligned, give each image its own randomness, and
resample a batch once."""

from __future__ import annotations

import math
import random
from unittest import mock

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ember.data.transforms import Pipeline
from ember.vision.augment import (
    AffineWarp,
    Brightness,
    Contrast,
    Dihedral,
    Flip,
    IntToFloatTensor,
    Lighting,
    Normalize,
    RandomResizedCrop,
    Resize,
    Rotate,
    ToTensor,
    Warp,
    Zoom,
    aug_transforms,
)
from ember.vision.core import imagenet_stats
from ember.vision.kinds import IMAGE, MASK, POINTS

TRAIN, VALID = 0, 1


def run(tfms, values, kinds, split_idx=TRAIN):
    return Pipeline(tfms, kinds, split_idx)(values)


# ---------------------------------------------------------------------------------------------------
# Draw a dot, augment, find the dot


def dot_batch(bs: int, h: int, w: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Black images (bs, 1, h, w) with one white pixel each, near the centre, and that pixel's centre
    as a point in [-1, 1] (bs, 1, 2)."""
    g = torch.Generator().manual_seed(seed)
    xs = torch.randint(w // 3, 2 * w // 3, (bs,), generator=g)
    ys = torch.randint(h // 3, 2 * h // 3, (bs,), generator=g)
    x = torch.zeros(bs, 1, h, w)
    x[torch.arange(bs), 0, ys, xs] = 1.0
    pts = torch.stack([(xs + 0.5) * 2 / w - 1, (ys + 0.5) * 2 / h - 1], -1)[:, None]
    return x, pts


def brightest(x: torch.Tensor) -> torch.Tensor:
    """(bs, 2) pixel centres (x, y) of each image's brightest pixel; x is (bs, c, h, w)."""
    w = x.shape[-1]
    i = x.sum(1).flatten(1).argmax(1)
    return torch.stack([i % w, i // w], -1).float() + 0.5


def to_pixels(pts: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return (pts.reshape(-1, 2) + 1) * torch.tensor([w / 2, h / 2])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("extra", [{}, {"flip_vert": True}, {"size": (40, 40), "min_scale": 0.6}])
def test_a_dot_lands_where_its_point_says_after_the_composed_augmentation(seed, align_corners, extra):
    x, pts = dot_batch(16, 48, 64, seed)
    tfms = aug_transforms(
        max_rotate=30, min_zoom=0.9, max_zoom=1.3, max_warp=0.3, p_affine=1.0, max_lighting=0,
        pad_mode="zeros", align_corners=align_corners, **extra,
    )  # fmt: skip
    torch.manual_seed(seed)
    y, moved = run(tfms, (x, pts), (IMAGE, POINTS))
    h, w = y.shape[-2:]
    assert not torch.equal(moved, pts)
    dist = (brightest(y) - to_pixels(moved, h, w)).norm(dim=1)
    assert (dist < 1.5).all(), dist


@pytest.mark.parametrize(
    "tfm", [Flip(p=1), Dihedral(p=1), Rotate(45, p=1), Zoom(1.2, 1.5, p=1), Warp(0.3, p=1)]
)
def test_a_dot_follows_its_point_under_each_augmentation_alone(tfm):
    x, pts = dot_batch(8, 32, 40, seed=1)
    torch.manual_seed(0)
    y, moved = tfm.encodes((x, pts), (IMAGE, POINTS), TRAIN)
    assert (brightest(y) - to_pixels(moved, 32, 40)).norm(dim=1).max() < 1.5


def ramp_batch(bs: int, h: int, w: int) -> torch.Tensor:
    """(bs, 2, h, w) images whose two channels are each pixel's own centre (x, y) in [-1, 1]."""
    xs, ys = (torch.arange(w) + 0.5) * 2 / w - 1, (torch.arange(h) + 0.5) * 2 / h - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy])[None].repeat(bs, 1, 1, 1)


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("size", [None, (20, 36)])
def test_points_land_exactly_on_the_content_they_marked(align_corners, size):
    # Bilinear sampling of a ramp is exact, so each output pixel of `ramp_batch` says where in the input
    # it was read from; that input point, moved as a point, must come out at the output pixel's centre.
    x = ramp_batch(6, 24, 32)
    tfm = AffineWarp([Flip(), Rotate(40, p=1), Zoom(0.8, 1.3, p=1), Warp(0.3, p=1)], size, pad_mode="border",
                     align_corners=align_corners, min_scale=0.5)  # fmt: skip
    torch.manual_seed(0)
    (y,) = tfm.encodes((x,), (IMAGE,), TRAIN)
    read_at = y.permute(0, 2, 3, 1).reshape(6, -1, 2)  # (bs, oh * ow, 2)
    torch.manual_seed(0)  # the same random matrices
    _, moved = tfm.encodes((x, read_at), (IMAGE, POINTS), TRAIN)
    oh, ow = y.shape[-2:]
    centres = ramp_batch(6, oh, ow).permute(0, 2, 3, 1).reshape(6, -1, 2)
    inside = (read_at.abs() < 1 - 2 / 24).all(-1)  # away from the border, where sampling clamps
    assert inside.float().mean() > 0.3
    assert torch.allclose(moved[inside], centres[inside], atol=1e-3)


def test_rotation_is_rigid_in_pixels_on_a_wide_image():
    x = torch.zeros(4, 1, 20, 60)
    pts = torch.tensor([[[-0.5, -0.5], [0.5, 0.5]]]).repeat(4, 1, 1)
    torch.manual_seed(0)
    _, moved = Rotate(45, p=1).encodes((x, pts), (IMAGE, POINTS), TRAIN)
    assert not torch.allclose(moved, pts)
    length = lambda p: (to_pixels(p[:, 1], 20, 60) - to_pixels(p[:, 0], 20, 60)).norm(dim=1)  # noqa: E731
    assert torch.allclose(length(moved), length(pts), atol=1e-4)


def dot_item(w: int, h: int, seed: int) -> tuple[Image.Image, torch.Tensor]:
    rng = random.Random(seed)
    cx, cy = rng.randrange(w // 4, 3 * w // 4), rng.randrange(h // 4, 3 * h // 4)
    a = np.zeros((h, w, 3), np.uint8)
    a[cy, cx] = 255
    return Image.fromarray(a), torch.tensor([[cx + 0.5, cy + 0.5]])


@pytest.mark.parametrize(
    "tfm",
    [
        Resize((24, 32), method="crop"),
        Resize((24, 24), method="crop"),
        Resize((24, 24), method="pad", pad_mode="zeros"),
        Resize((24, 24), method="squish"),
        Resize(70, method="squish"),
        RandomResizedCrop(24, min_scale=0.3),
    ],
    ids=["crop-same-aspect", "crop", "pad", "squish", "upscale", "random-resized-crop"],
)
@pytest.mark.parametrize("split_idx", [TRAIN, VALID])
def test_a_dot_lands_where_its_point_says_after_item_resizes(tfm, split_idx):
    found = 0
    for seed in range(12):
        random.seed(seed)
        img, pt = dot_item(60, 45, seed)
        out, moved = tfm.encodes((img, pt), (IMAGE, POINTS), split_idx)
        a = np.asarray(out).sum(-1)
        (px, py) = moved[0].tolist()
        if 1 <= px <= out.width - 1 and 1 <= py <= out.height - 1:
            iy, ix = np.unravel_index(a.argmax(), a.shape)
            assert math.dist((ix + 0.5, iy + 0.5), (px, py)) < 1.5, (seed, (ix, iy), (px, py))
            found += 1
        elif not (-1 <= px <= out.width + 1 and -1 <= py <= out.height + 1):
            assert a.max() == 0  # cropped away: the point says so
    assert found >= 6


def test_totensor_scales_points_to_grid_sample_coordinates():
    img, pt = Image.new("RGB", (8, 4)), torch.tensor([[0.0, 0.0], [8.0, 4.0], [0.5, 0.5]])
    t, p = ToTensor().encodes((img, pt), (IMAGE, POINTS), TRAIN)
    assert t.shape == (3, 4, 8) and t.dtype == torch.uint8
    assert torch.allclose(p, torch.tensor([[-1.0, -1.0], [1.0, 1.0], [-0.875, -0.75]]))
    # pixel (0, 0)'s centre is where grid_sample(align_corners=False) reads pixel (0, 0) exactly
    x = torch.arange(32.0).reshape(1, 1, 4, 8)
    assert F.grid_sample(x, p[2:].view(1, 1, 1, 2), align_corners=False).item() == 0.0


def test_totensor_gives_uint8_chw_images_and_int64_masks():
    a = np.random.default_rng(0).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    mask = Image.fromarray(np.arange(24, dtype=np.uint8).reshape(4, 6))
    img, m, grey = ToTensor().encodes(
        (Image.fromarray(a), mask, Image.fromarray(a[..., 0])), (IMAGE, MASK, IMAGE), VALID
    )
    assert torch.equal(img, torch.from_numpy(a).permute(2, 0, 1)) and img.is_contiguous()
    assert m.dtype == torch.int64 and torch.equal(m, torch.arange(24).reshape(4, 6))
    assert grey.shape == (1, 4, 6)


def test_resize_uses_nearest_for_masks_and_keeps_palettes():
    ids = np.kron(np.random.default_rng(0).choice([0, 3, 7], (5, 5)), np.ones((7, 7), np.uint8))
    mask = Image.fromarray(ids.astype(np.uint8))
    mask.putpalette(list(range(48)))
    img = Image.fromarray(np.stack([ids * 30] * 3, -1).astype(np.uint8))
    for method in ("crop", "pad", "squish"):
        _, m = Resize(16, method=method).encodes((img, mask), (IMAGE, MASK), TRAIN)
        assert m.mode == "P" and m.size == (16, 16) and set(np.unique(np.asarray(m))) <= {0, 3, 7}


def test_resize_pad_reflects_the_image_into_the_padding():
    a = np.arange(12, dtype=np.uint8).reshape(2, 6) * 20
    out = Resize((10, 6), method="pad").encodes((Image.fromarray(a),), (IMAGE,), VALID)[0]
    b = np.asarray(out)
    assert np.array_equal(b[4:6], a)  # centred, unscaled
    assert np.array_equal(b[3], a[0]) and np.array_equal(b[2], a[1])  # mirrored about the edge
    zeros = np.asarray(
        Resize((10, 6), method="pad", pad_mode="zeros").encodes((Image.fromarray(a),), (IMAGE,), 1)[0]
    )
    assert zeros[:4].max() == 0


def test_validation_crops_are_centred_and_repeatable():
    img, pt = Image.new("RGB", (100, 60)), torch.tensor([[50.0, 30.0]])
    for tfm in (Resize(30), RandomResizedCrop(30)):
        outs = [tfm.encodes((img, pt), (IMAGE, POINTS), VALID)[1] for _ in range(3)]
        assert all(torch.equal(o, outs[0]) for o in outs)
        assert torch.allclose(outs[0], torch.tensor([[15.0, 15.0]]))


def test_random_resized_crop_falls_back_to_a_centre_crop_when_no_random_box_fits():
    img, pt = Image.new("RGB", (100, 10)), torch.tensor([[50.0, 5.0]])
    out, moved = RandomResizedCrop(8, min_scale=1.0).encodes((img, pt), (IMAGE, POINTS), TRAIN)
    assert out.size == (8, 8) and torch.allclose(moved, torch.tensor([[4.0, 4.0]]))


def test_item_resizes_say_where_they_belong_when_given_tensors():
    with pytest.raises(TypeError, match="item_tfms"):
        Resize(8).encodes((torch.zeros(3, 16, 16),), (IMAGE,), TRAIN)


# ---------------------------------------------------------------------------------------------------
# Masks stay aligned with their images


def interior(m: torch.Tensor, k: int) -> torch.Tensor:
    """(bs, h, w) bools: pixels of masks (bs, h, w) whose k x k neighbourhood holds a single class."""
    mf = m[:, None].float()
    return (F.max_pool2d(mf, k, 1, k // 2) == -F.max_pool2d(-mf, k, 1, k // 2))[:, 0]


def label_batch(bs: int, seed: int, ids=(0, 2, 5, 7)) -> torch.Tensor:
    """(bs, 48, 64) blocky label maps with 8-pixel blocks."""
    g = torch.Generator().manual_seed(seed)
    small = torch.tensor(ids)[torch.randint(0, len(ids), (bs, 6, 8), generator=g)]
    return small.repeat_interleave(8, 1).repeat_interleave(8, 2)


@pytest.mark.parametrize("seed", range(3))
def test_masks_stay_aligned_with_their_images_and_keep_their_class_ids(seed):
    mask = label_batch(8, seed)
    img = (mask[:, None].float() / 10).expand(-1, 3, -1, -1)  # the image's pixels are the class ids / 10
    tfms = aug_transforms(max_rotate=30, max_zoom=1.3, max_warp=0.3, p_affine=1.0, max_lighting=0, size=40)
    torch.manual_seed(seed)
    y, m = run(tfms, (img, mask), (IMAGE, MASK))
    assert m.dtype == torch.int64 and set(m.unique().tolist()) <= {0, 2, 5, 7}
    inside = interior(m, 3)  # bilinear mixes classes on their edges
    agree = (y[:, 0] * 10).round().long() == m
    assert agree[inside].float().mean() >= 0.95 and inside.float().mean() > 0.5


def test_a_mask_and_its_image_move_together_at_item_level():
    ids = np.kron(np.random.default_rng(1).choice([0, 3, 7], (6, 8)), np.ones((8, 8), np.uint8)).astype(
        np.uint8
    )
    img = Image.fromarray(np.stack([ids * 30] * 3, -1))
    for seed in range(3):
        random.seed(seed)
        out, m = RandomResizedCrop(32, min_scale=0.3).encodes(
            (img, Image.fromarray(ids)), (IMAGE, MASK), TRAIN
        )
        agree = torch.from_numpy(np.round(np.asarray(out)[..., 0] / 30) == np.asarray(m))
        inside = interior(torch.from_numpy(np.array(m)).long()[None], 5)[0]
        assert agree[inside].float().mean() >= 0.95 and inside.float().mean() > 0.1


# ---------------------------------------------------------------------------------------------------
# Randomness per image, training set only


@pytest.mark.parametrize(
    "tfms",
    [aug_transforms(max_lighting=0, p_affine=1.0), [Lighting([Brightness(p=1.0), Contrast(p=1.0)])]],
    ids=["affine", "lighting"],
)
def test_identical_images_in_a_batch_get_different_augmentations(tfms):
    x = torch.rand(1, 3, 16, 16).expand(2, -1, -1, -1).contiguous()
    torch.manual_seed(0)
    (y,) = run(tfms, (x,), (IMAGE,))
    assert not torch.allclose(y[0], y[1])


def test_batch_true_gives_the_whole_batch_one_augmentation():
    x = torch.rand(1, 3, 16, 16).expand(2, -1, -1, -1).contiguous()
    torch.manual_seed(0)
    (y,) = run(aug_transforms(p_affine=1.0, p_lighting=1.0, batch=True), (x,), (IMAGE,))
    assert torch.allclose(y[0], y[1]) and not torch.allclose(y, x)


def test_validation_leaves_the_batch_unchanged():
    x, m, p = torch.rand(4, 3, 16, 16), label_batch(4, 0)[:, :16, :16], torch.rand(4, 5, 2) * 2 - 1
    tfms = [*aug_transforms(), Flip(), Rotate(), Zoom(), Warp(), Brightness(), Contrast()]
    out = run(tfms, (x, m, p), (IMAGE, MASK, POINTS), VALID)
    assert all(a is b for a, b in zip(out, (x, m, p)))
    assert all(v is w for v, w in zip(Rotate().encodes((x,), (IMAGE,), VALID), (x,)))


def test_size_resizes_validation_batches_without_randomness():
    x = torch.rand(2, 3, 20, 30)
    (tfm,) = aug_transforms(size=10, max_lighting=0, min_scale=0.5)
    a, b = (run([tfm], (x,), (IMAGE,), VALID)[0] for _ in range(2))
    assert a.shape == (2, 3, 10, 10) and torch.equal(a, b)
    # a centre crop: the middle 20x20 of the image, resized
    ref = F.interpolate(x[..., 5:25], size=10, mode="bilinear", align_corners=False)
    assert torch.allclose(a, ref, atol=1e-5)


def test_uint8_images_can_be_augmented_before_inttofloattensor():
    x = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    torch.manual_seed(0)
    (y,) = run(aug_transforms(p_affine=1.0, max_lighting=0), (x,), (IMAGE,))
    assert y.dtype == torch.uint8 and not torch.equal(x, y)


def test_other_kinds_pass_through_untouched():
    x, labels = torch.rand(4, 3, 16, 16), torch.arange(4)
    out = run(
        [IntToFloatTensor(), *aug_transforms(), Normalize(*imagenet_stats)], (x, labels), (IMAGE, "category")
    )
    assert out[1] is labels


# ---------------------------------------------------------------------------------------------------
# One resampling, lighting's formula


def test_the_composed_augmentation_samples_the_images_once():
    x, mask = torch.rand(8, 3, 32, 32), label_batch(8, 0)[:, :32, :32]
    tfms = aug_transforms(p_affine=1.0, size=24, min_scale=0.5)
    with mock.patch("torch.nn.functional.grid_sample", wraps=F.grid_sample) as spy:
        run(tfms, (x,), (IMAGE,))
        assert spy.call_count == 1
        run(tfms, (x, mask), (IMAGE, MASK))
        assert spy.call_count == 3  # one more for the images, one for the mask (nearest)
        assert spy.call_args_list[2].args[2] == "nearest"


def test_lighting_is_brightness_and_contrast_in_logit_space():
    x = torch.rand(6, 3, 4, 4) * 0.9 + 0.05
    b, c = Brightness(0.2, p=1.0), Contrast(0.2, p=1.0)
    torch.manual_seed(3)
    (y,) = Lighting([b, c]).encodes((x,), (IMAGE,), TRAIN)
    torch.manual_seed(3)
    shift = b.params(6, x.device)[1]
    scale = c.params(6, x.device)[0]
    bright = torch.sigmoid(shift)
    assert ((bright >= 0.4 - 1e-6) & (bright <= 0.6 + 1e-6)).all() and (
        (scale >= 0.8) & (scale <= 1.25)
    ).all()
    logit = torch.log(x / (1 - x))
    ref = torch.sigmoid((logit + shift.view(-1, 1, 1, 1)) * scale.view(-1, 1, 1, 1))
    assert torch.allclose(y, ref, atol=1e-5)


def test_lighting_refuses_uint8_images():
    with pytest.raises(TypeError, match="IntToFloatTensor"):
        Brightness(p=1.0).encodes((torch.zeros(1, 3, 2, 2, dtype=torch.uint8),), (IMAGE,), TRAIN)


# ---------------------------------------------------------------------------------------------------
# IntToFloatTensor and Normalize


def test_inttofloattensor_divides_by_255_and_decodes_back():
    x = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    mask = torch.randint(0, 5, (2, 4, 4))
    t = IntToFloatTensor()
    y, m = t.encodes((x, mask), (IMAGE, MASK), TRAIN)
    assert y.dtype == torch.float32 and torch.allclose(y, x / 255.0) and m is mask
    assert torch.equal(t.decodes((y, m), (IMAGE, MASK))[0], x)


def test_normalize_matches_the_formula_and_decodes_back():
    x = torch.rand(2, 3, 4, 4)
    norm = Normalize.from_stats(*imagenet_stats)
    (y,) = norm.encodes((x,), (IMAGE,), VALID)
    mean, std = torch.tensor(imagenet_stats[0]), torch.tensor(imagenet_stats[1])
    assert torch.allclose(y[:, 1], (x[:, 1] - mean[1]) / std[1])
    assert torch.allclose(norm.decodes((y,), (IMAGE,))[0], x, atol=1e-6)


def test_normalize_with_stats_for_other_channels_says_so():
    with pytest.raises(ValueError, match="3 channels but the images have 1"):
        Normalize(*imagenet_stats).encodes((torch.rand(2, 1, 4, 4),), (IMAGE,), TRAIN)
    assert Normalize([0.5], [0.25]).encodes((torch.ones(2, 1, 4, 4),), (IMAGE,), TRAIN)[0].eq(2).all()


def test_normalize_refuses_uint8_images():
    with pytest.raises(TypeError, match="IntToFloatTensor"):
        Normalize(*imagenet_stats).encodes((torch.zeros(1, 3, 2, 2, dtype=torch.uint8),), (IMAGE,), TRAIN)


def test_transforms_run_in_the_course_order():
    tfms = [Normalize(*imagenet_stats), *aug_transforms(), IntToFloatTensor(), ToTensor(), Resize(8)]
    order = [type(t).__name__ for t in Pipeline(tfms, (IMAGE,), TRAIN).tfms]
    assert order == ["Resize", "ToTensor", "IntToFloatTensor", "AffineWarp", "Lighting", "Normalize"]


def test_item_and_batch_pipelines_end_to_end():
    imgs = [
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (30 + i, 40, 3), dtype=np.uint8))
        for i in range(4)
    ]
    items = [
        run([Resize(16), ToTensor()], (im, torch.tensor([[20.0, 15.0]])), (IMAGE, POINTS)) for im in imgs
    ]
    xb, pb = (torch.stack(v) for v in zip(*items))
    batch_tfms = [IntToFloatTensor(), *aug_transforms(), Normalize.from_stats(*imagenet_stats)]
    pipe = Pipeline(batch_tfms, (IMAGE, POINTS), TRAIN)
    y, p = pipe((xb, pb))
    assert y.shape == (4, 3, 16, 16) and y.dtype == torch.float32 and p.shape == (4, 1, 2)
    shown = pipe.decode((y, p))[0]
    assert shown.dtype == torch.uint8 and shown.shape == (4, 3, 16, 16)


def test_the_augmentations_make_every_tensor_on_the_batch_device():
    # The "meta" device has no data: mixing it with a CPU tensor made inside a transform is an error,
    # which catches a forgotten `device=` without a GPU.
    dev = torch.device("meta")
    x = torch.empty(4, 3, 32, 32, dtype=torch.uint8, device=dev)
    mask, pts = torch.empty(4, 32, 32, dtype=torch.int64, device=dev), torch.empty(4, 3, 2, device=dev)
    tfms = [
        IntToFloatTensor(),
        *aug_transforms(size=24, min_scale=0.5, flip_vert=True),
        Normalize(*imagenet_stats),
    ]
    for split_idx in (TRAIN, VALID):
        out = run(tfms, (x, mask, pts), (IMAGE, MASK, POINTS), split_idx)
        assert [v.shape for v in out] == [(4, 3, 24, 24), (4, 24, 24), (4, 3, 2)]
        assert all(v.device == dev for v in out)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_augmentations_run_on_the_batch_device():
    dev = torch.device("cuda")
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, device=dev)
    mask, pts = label_batch(4, 0)[:, :32, :32].to(dev), torch.rand(4, 3, 2, device=dev) * 2 - 1
    tfms = [IntToFloatTensor(), *aug_transforms(size=24, min_scale=0.5), Normalize(*imagenet_stats)]
    out = run(tfms, (x, mask, pts), (IMAGE, MASK, POINTS))
    assert all(v.device.type == "cuda" for v in out)
    assert out[0].shape == (4, 3, 24, 24) and out[1].dtype == torch.int64
