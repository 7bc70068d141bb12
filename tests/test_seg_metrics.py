"""Segmentation metrics: counted over the whole epoch, checked against hand-computed cases."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from ember.metrics import (
    AvgMetric,
    Dice,
    DiceMulti,
    ForegroundAcc,
    JaccardCoeff,
    JaccardCoeffMulti,
    Metric,
    foreground_acc,
    pixel_confusion,
    to_metric,
)


def logits(labels: list[list[int]], c: int) -> Tensor:
    """Outputs `(bs, c, 1, w)` whose argmax over the class axis is `labels` `(bs, w)`."""
    return F.one_hot(torch.tensor(labels), c).float().permute(0, 2, 1).unsqueeze(2)


def masks(labels: list[list[int]]) -> Tensor:
    return torch.tensor(labels).unsqueeze(1)  # (bs, 1, w)


def run_epoch(metric: Metric, batches: list[tuple[Tensor, Tensor]]) -> float | None:
    """Feed each `(pred, targ)` batch to a fresh copy of `metric`, as the Recorder does."""
    m = to_metric(metric)
    for pred, targ in batches:
        m.accumulate(pred, targ)
    return m.value


# Binary: batch A has one foreground pixel, found; batch B has four, two of them found.
#   epoch Dice = 2*(1+2) / ((1+1) + (2+4)) = 0.75; per-batch mean = (1 + 4/6) / 2 = 0.833
#   epoch IoU = 3 / (8-3) = 0.6; per-batch mean = (1 + 2/4) / 2 = 0.75
BINARY = [
    (logits([[1, 0, 0, 0]], 2), masks([[1, 0, 0, 0]])),
    (logits([[1, 1, 0, 0]], 2), masks([[1, 1, 1, 1]])),
]


def test_binary_dice_and_jaccard_count_over_the_epoch_not_per_batch():
    assert run_epoch(Dice(), BINARY) == pytest.approx(0.75)
    assert run_epoch(JaccardCoeff(), BINARY) == pytest.approx(0.6)
    assert run_epoch(Dice(), BINARY[1:]) == pytest.approx(2 / 3)  # batch B alone, by hand
    assert Dice().name == "dice" and JaccardCoeff().name == "jaccard_coeff"


def test_binary_dice_is_none_when_no_pixel_is_foreground_and_refuses_three_classes():
    assert run_epoch(Dice(), [(logits([[0, 0]], 2), masks([[0, 0]]))]) is None
    with pytest.raises(ValueError, match=r"'dice'.*3 classes.*DiceMulti\(\)"):
        Dice().check(3)
    with pytest.raises(ValueError, match=r"'jaccard_coeff'.*3 classes.*JaccardCoeffMulti\(\)"):
        run_epoch(JaccardCoeff(), [(logits([[0, 2]], 3), masks([[0, 1]]))])


# Four classes; class 3 is neither a target nor a prediction anywhere, so it is skipped.
#   targets [0,0,0 | 1,1,2], predictions [0,0,1 | 1,2,1] (two batches of one image)
#   class 0: both 2, predicted 2, target 3 -> Dice 4/5, IoU 2/3
#   class 1: both 1, predicted 3, target 2 -> Dice 2/5, IoU 1/4
#   class 2: both 0, predicted 1, target 1 -> Dice 0,   IoU 0
#   per-batch means would give Dice (0.4 + 0.25) / 2 = 0.325
MULTI = [
    (logits([[0, 0, 1]], 4), masks([[0, 0, 0]])),
    (logits([[1, 2, 1]], 4), masks([[1, 1, 2]])),
]


def test_multi_class_dice_and_jaccard_average_the_classes_that_occur_over_the_epoch():
    assert run_epoch(DiceMulti(), MULTI) == pytest.approx((0.8 + 0.4 + 0) / 3)
    assert run_epoch(JaccardCoeffMulti(), MULTI) == pytest.approx((2 / 3 + 1 / 4 + 0) / 3)
    m = to_metric(DiceMulti())
    for p, t in MULTI:
        m.accumulate(p, t)
    assert torch.allclose(m.per_class[:3], torch.tensor([0.8, 0.4, 0.0], dtype=torch.float64))
    assert m.per_class[3].isnan()
    assert DiceMulti().name == "dice_multi" and JaccardCoeffMulti().name == "jaccard_coeff_multi"


def test_the_pixel_confusion_matrix_counts_target_rows_and_predicted_columns():
    cm = pixel_confusion(torch.tensor([0, 0, 1, 1, 2, 1]), torch.tensor([0, 0, 0, 1, 1, 2]), 3)
    assert cm.tolist() == [[2, 1, 0], [0, 1, 1], [0, 1, 0]]
    with pytest.raises(ValueError, match=r"dice_multi: targets hold class 0\.\.5.*3 classes.*codes"):
        run_epoch(DiceMulti(), [(logits([[0, 1]], 3), masks([[0, 5]]))])


# Foreground: image A's one foreground pixel is right; image B gets 2 of its 4 right.
#   epoch 3/5 = 0.6; per-batch mean (1 + 0.5) / 2 = 0.75. With background 2 instead: 2/6.
FOREGROUND = [
    (logits([[1, 1, 1, 1]], 3), masks([[1, 0, 0, 0]])),
    (logits([[1, 0, 0, 2]], 3), masks([[1, 1, 2, 2]])),
]


def test_foreground_accuracy_skips_background_pixels_and_counts_over_the_epoch():
    assert run_epoch(foreground_acc, FOREGROUND) == pytest.approx(0.6)
    assert run_epoch(AvgMetric(foreground_acc), FOREGROUND) == pytest.approx(0.75)  # what a batch mean gives
    assert run_epoch(ForegroundAcc(bkg_idx=2), FOREGROUND) == pytest.approx(2 / 6)
    assert foreground_acc(*FOREGROUND[1]).item() == pytest.approx(0.5)  # one batch, as a function
    assert to_metric(foreground_acc).name == "foreground_acc"


def test_the_metrics_run_in_a_learners_validation_on_bs_c_h_w_outputs():
    from ember.basics import CrossEntropyLossFlat, Learner
    from ember.data import DataLoaders

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(10, 1, 3, 4, generator=g), torch.randint(0, 3, (10, 3, 4), generator=g)
    dls = DataLoaders.from_dsets(TensorDataset(x[:4], y[:4]), TensorDataset(x[4:], y[4:]), bs=4, device="cpu")
    metrics = [foreground_acc, DiceMulti(), JaccardCoeffMulti()]
    learn = Learner(dls, nn.Conv2d(1, 3, 1), CrossEntropyLossFlat(axis=1), metrics=metrics, quiet=True)
    _, fg, dice, iou = learn.validate()
    with torch.no_grad():  # the whole validation set at once (the learner saw batches of 4 and 2)
        labels = learn.model(x[4:]).argmax(1)
    cm = pixel_confusion(labels, y[4:], 3).double()
    inter, total = cm.diagonal(), cm.sum(0) + cm.sum(1)
    assert dice == pytest.approx(float((2 * inter / total).mean()))
    assert iou == pytest.approx(float((inter / (total - inter)).mean()))
    fg_pixels = y[4:] != 0
    assert fg == pytest.approx(float((labels[fg_pixels] == y[4:][fg_pixels]).float().mean()))
    assert learn.recorder.metric_names[-4:-1] == ["foreground_acc", "dice_multi", "jaccard_coeff_multi"]
    binary = Learner(dls, nn.Conv2d(1, 3, 1), CrossEntropyLossFlat(axis=1), metrics=Dice(), quiet=True)
    with pytest.raises(ValueError, match=r"'dice'.*3 classes"):
        binary.fit(1)
