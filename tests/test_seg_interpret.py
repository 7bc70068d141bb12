"""SegmentationInterpretation: IoU per class and per item against hand-computed values, and its plots."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from ember.losses import CrossEntropyLossFlat
from ember.vision.seg_interpret import SegmentationInterpretation


def scores(labels: list, c: int) -> torch.Tensor:
    """`(n, c, h, w)` scores whose argmax over the class axis is `labels` `(n, h, w)`."""
    return F.one_hot(torch.tensor(labels), c).permute(0, 3, 1, 2).float()


# Two 2x2 items, codes bg/road/car/void ("void" is never a target nor a prediction):
#   item 0: targets [[0,0],[1,1]], predictions [[0,1],[1,1]]
#   item 1: targets [[2,2],[0,0]], predictions [[2,0],[0,1]]
#   pixel confusion (row target, column predicted): [[2,2,0,0],[0,2,0,0],[1,0,1,0],[0,0,0,0]]
#   IoU: bg 2/(4+3-2) = 0.4, road 2/(2+4-2) = 0.5, car 1/(2+1-1) = 0.5, void NaN
#   per item: item 0 (bg 1/2, road 2/3) -> 7/12; item 1 (bg 1/3, road 0, car 1/2) -> 5/18
TARGS = torch.tensor([[[0, 0], [1, 1]], [[2, 2], [0, 0]]])
PREDS = scores([[[0, 1], [1, 1]], [[2, 0], [0, 1]]], 4)
CODES = ["bg", "road", "car", "void"]


def test_the_iou_table_and_the_worst_items_match_a_hand_computed_case():
    interp = SegmentationInterpretation(PREDS, TARGS, CODES, losses=torch.tensor([0.3, 0.9]))
    assert interp.confusion_matrix().tolist() == [[2, 2, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    table = interp.iou_table()
    assert list(table["class"]) == CODES
    assert table["iou"].tolist()[:3] == pytest.approx([0.4, 0.5, 0.5]) and math.isnan(table["iou"].iloc[3])
    assert table["pixels"].tolist() == [4, 2, 2, 0] and table["predicted"].tolist() == [3, 4, 1, 0]
    assert interp.item_iou().tolist() == pytest.approx([7 / 12, 5 / 18])
    idxs, ious = interp.worst(1)
    assert idxs.tolist() == [1] and ious.tolist() == pytest.approx([5 / 18])
    losses, idxs = interp.top_losses(1)
    assert idxs.tolist() == [1] and losses.tolist() == pytest.approx([0.9])


def test_mismatched_shapes_and_mask_values_outside_the_codes_fail_naming_them():
    with pytest.raises(ValueError, match=r"\(n, classes, h, w\).*\(2, 4, 2, 2\).*\(2, 2\)"):
        SegmentationInterpretation(PREDS, TARGS[:, 0])
    with pytest.raises(ValueError, match=r"codes \['bg', 'road'\].*targets hold class 0\.\.2"):
        SegmentationInterpretation(PREDS[:, :2], TARGS, ["bg", "road"])
    with pytest.raises(ValueError, match="top_losses needs the losses"):
        SegmentationInterpretation(PREDS, TARGS, CODES).top_losses(1)


def test_the_plots_draw_the_pixel_confusion_and_the_worst_items(tmp_path):
    import matplotlib.pyplot as plt

    interp = SegmentationInterpretation(PREDS, TARGS, CODES, inputs=torch.rand(2, 3, 2, 2))
    fig = interp.plot_confusion_matrix()
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == CODES and ax.get_ylabel() == "Actual"
    assert [t.get_text() for t in ax.texts][:4] == ["0.50", "0.50", "0.00", "0.00"]  # row bg: 2/4, 2/4
    fig = interp.plot_worst(2)
    titles = [a.get_title() for a in fig.axes]
    assert titles == ["#1 target", "#1 predicted / IoU 0.28", "#0 target", "#0 predicted / IoU 0.58"]
    assert all(len(a.images) == 2 for a in fig.axes)  # the input under the mask
    fig.savefig(tmp_path / "worst.png")
    plt.close("all")


def test_from_learner_scores_a_synthetic_segmentation_validation_set(tmp_path):
    import matplotlib.pyplot as plt

    from ember.learner import Learner
    from ember.vision.all import Resize, SegmentationDataLoaders

    (tmp_path / "masks").mkdir()
    for i in range(10):
        mask = np.zeros((12, 12), np.uint8)
        mask[:, : 2 + i] = 1
        mask[:2, :2] = 2
        Image.fromarray(mask * 100).convert("RGB").save(tmp_path / f"{i}.png")
        Image.fromarray(mask).save(tmp_path / "masks" / f"{i}.png")
    dls = SegmentationDataLoaders.from_label_func(
        tmp_path, sorted(tmp_path.glob("*.png")), lambda p: p.parent / "masks" / p.name,
        codes=["bg", "thing", "corner"], item_tfms=Resize(8), bs=2, num_workers=0, seed=0, valid_pct=0.4,
    )  # fmt: skip
    torch.manual_seed(0)
    learn = Learner(dls, nn.Conv2d(3, 3, 1), CrossEntropyLossFlat(axis=1), quiet=True)
    interp = SegmentationInterpretation.from_learner(learn)
    probs, targs = learn.get_preds()
    assert len(targs) == 4 and targs.shape[1:] == (8, 8) and interp.codes == ["bg", "thing", "corner"]
    pred = probs.argmax(1)
    for k, row in interp.iou_table().iterrows():  # each class by counting pixels
        both, either = ((pred == k) & (targs == k)).sum(), ((pred == k) | (targs == k)).sum()
        assert row["iou"] == pytest.approx(float(both / either)) if either else math.isnan(row["iou"])
        assert row["pixels"] == (targs == k).sum()
    assert interp.losses.shape == (4,) and interp.inputs.shape == (4, 3, 8, 8)
    idxs, ious = interp.worst(3)
    assert ious.tolist() == sorted(ious.tolist()) and ious[0] == interp.item_iou().min()
    fig = interp.plot_worst(2)
    assert len(fig.axes) == 4 and all(len(a.images) == 2 for a in fig.axes)
    fig.savefig("/tmp/seg_worst.png")
    interp.plot_confusion_matrix().savefig("/tmp/seg_cm.png")
    plt.close("all")
