"""vision_learner: the head, groups, freezing, normalisation, and real transfer learning on LFW faces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ember.vision.all import (
    Callback,
    ImageDataLoaders,
    Normalize,
    Resize,
    create_head,
    efficientnet_lite0,
    error_rate,
    get_image_files,
    resnet18,
    set_seed,
    vision_learner,
)


@pytest.fixture
def pets(tmp_path):
    for i in range(32):
        a = np.random.default_rng(i).integers(0, 255, (24, 24, 3), dtype=np.uint8)
        a[..., 0] = 250 if i % 2 else 5
        Image.fromarray(a).save(tmp_path / f"{'Cat' if i % 2 else 'dog'}_{i}.png")
    return ImageDataLoaders.from_name_func(
        tmp_path,
        get_image_files(tmp_path),
        lambda x: x[0].isupper(),
        item_tfms=Resize(32),
        bs=8,
        num_workers=0,
        seed=0,
    )


def test_the_head_is_the_courses_pool_bn_dropout_linear_stack():
    head = create_head(512, 10)
    kinds = [type(m).__name__ for m in head]
    assert kinds == [
        "AdaptiveConcatPool2d",
        "Flatten",
        "BatchNorm1d",
        "Dropout",
        "Linear",
        "ReLU",
        "BatchNorm1d",
        "Dropout",
        "Linear",
    ]
    assert head[3].p == 0.25 and head[7].p == 0.5 and head[4].in_features == 1024
    assert create_head(512, 1, y_range=(-1, 1))(torch.randn(4, 512, 2, 2)).abs().max() <= 1


def test_a_pretrained_learner_starts_frozen_with_body_groups_and_normalises_its_input(pets):
    learn = vision_learner(pets, efficientnet_lite0, metrics=error_rate, quiet=True)
    assert learn.n_groups == 3 and learn.model[1][-1].out_features == 2
    body_convs = [m for m in learn.model[0].modules() if isinstance(m, torch.nn.Conv2d)]
    assert not any(m.weight.requires_grad for m in body_convs)
    bns = [m for m in learn.model[0].modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(m.weight.requires_grad for m in bns)  # train_bn
    assert any(isinstance(t, Normalize) for t in pets.dblock.batch_tfms)
    learn.unfreeze()
    assert all(p.requires_grad for p in learn.model.parameters())


def test_from_scratch_nothing_is_frozen_and_slices_spread_over_groups(pets):
    learn = vision_learner(pets, resnet18, pretrained=False, quiet=True)
    assert all(p.requires_grad for p in learn.model.parameters())
    learn.fit(1, lr=slice(1e-5, 1e-3))
    from ember.core.optimizer import get_hyper

    assert get_hyper(learn.opt, "lr") == pytest.approx([1e-5, 1e-4, 1e-3])


def test_missing_pretrained_weights_say_how_to_provide_them(pets, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match=r"resnet18-.*\.pth(.|\n)*weights=(.|\n)*pretrained=False"):
        vision_learner(pets, resnet18)


def lfw_dls(root, seed: int = 42):
    """The 200 real LFW crops of scikit-image (the first 100 are faces) as PNG files named by label."""
    from skimage import data

    for i, a in enumerate(data.lfw_subset()):
        Image.fromarray((a * 255).astype(np.uint8)).save(root / f"{'face' if i < 100 else 'other'}_{i}.png")
    fnames = get_image_files(root)
    return ImageDataLoaders.from_name_func(
        root, fnames, lambda x: x.startswith("face"), valid_pct=0.3, seed=seed, item_tfms=Resize(128), bs=16
    )


@pytest.mark.slow
def test_transfer_learning_on_real_faces_beats_training_from_scratch(tmp_path):
    set_seed(42)
    (tmp_path / "a").mkdir()
    learn = vision_learner(lfw_dls(tmp_path / "a"), efficientnet_lite0, metrics=error_rate, quiet=True)
    learn.fine_tune(8, 3e-3)
    pretrained_acc = 1 - learn.recorder.value("error_rate")
    set_seed(42)
    (tmp_path / "b").mkdir()
    scratch = vision_learner(
        lfw_dls(tmp_path / "b"), efficientnet_lite0, pretrained=False, metrics=error_rate, quiet=True
    )
    scratch.fine_tune(8, 3e-3)
    scratch_acc = 1 - scratch.recorder.value("error_rate")
    assert pretrained_acc >= 0.95
    assert scratch_acc < pretrained_acc - 0.1


def test_vision_learners_train_channels_last_with_the_same_predictions(pets):
    learn = vision_learner(pets, "resnet18", pretrained=False, quiet=True)
    seen = []

    class Spy(Callback):
        order = 50  # after ChannelsLast

        def before_batch(self):
            seen.append(self.learn.xb[0].is_contiguous(memory_format=torch.channels_last))

    learn.fit(1, 1e-3, cbs=Spy())
    conv = learn.model[0][0]
    assert all(seen) and conv.weight.is_contiguous(memory_format=torch.channels_last)
    preds_cl, _ = learn.get_preds()
    learn.to_contiguous()
    preds, _ = learn.get_preds()
    assert conv.weight.is_contiguous() and torch.allclose(preds, preds_cl, atol=1e-4)


def test_vision_learner_refuses_an_lr_mult_rather_than_ignoring_it(pets):
    with pytest.raises(TypeError, match="lr_mult"):
        vision_learner(pets, resnet18, pretrained=False, lr_mult=10)


def test_fine_tunes_lr_mult_spreads_the_unfrozen_groups_rates(pets):
    learn = vision_learner(pets, resnet18, pretrained=False, quiet=True)
    learn.fine_tune(1, base_lr=1e-2, freeze_epochs=0, lr_mult=1000)
    lrs = [float(g["lr"]) for g in learn.opt.param_groups]  # after the cycle: lr_max / div_final per group
    assert lrs[-1] / lrs[0] == pytest.approx(1000, rel=1e-6)
