"""ClassificationInterpretation against hand-made predictions, and on a trained image learner."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from ember.vision.all import (
    ClassificationInterpretation,
    ImageDataLoaders,
    Learner,
    Resize,
    get_image_files,
)


class _Stub:
    class dls:  # noqa: N801 - stands in for a learner's dls attribute
        vocab = ["cat", "dog", "emu"]


def interp(probs, targs):
    probs, targs = torch.tensor(probs), torch.tensor(targs)
    losses = torch.nn.functional.nll_loss(probs.log(), targs, reduction="none")
    return ClassificationInterpretation(_Stub(), None, None, probs, targs, losses)


P = [[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.45, 0.45], [0.5, 0.49, 0.01], [0.1, 0.1, 0.8]]
T = [0, 1, 1, 2, 1, 1]


def test_confusion_matrix_counts_actual_rows_predicted_columns():
    cm = interp(P, T).confusion_matrix()
    assert cm.tolist() == [[1, 0, 0], [2, 1, 1], [0, 1, 0]]


def test_most_confused_lists_off_diagonal_pairs_largest_first():
    assert interp(P, T).most_confused() == [("dog", "cat", 2), ("dog", "emu", 1), ("emu", "dog", 1)]
    assert interp(P, T).most_confused(min_val=2) == [("dog", "cat", 2)]


def test_top_losses_are_the_largest_per_item_losses():
    losses, idx = interp(P, T).top_losses(2)
    assert idx.tolist() == [5, 2] and losses[0] == pytest.approx(-np.log(0.1))


def test_most_uncertain_are_closest_to_the_boundary():
    assert interp(P, T).most_uncertain(2).tolist() == [3, 4]


def test_report_and_plots_work_headless(capsys, tmp_path):
    i = interp(P, T)
    i.print_classification_report()
    assert "precision" in capsys.readouterr().out
    i.plot_confusion_matrix(normalize=True).savefig(tmp_path / "cm.png")
    assert (tmp_path / "cm.png").stat().st_size > 1000
    plt.close("all")


def test_from_learner_and_plot_top_losses_on_images(tmp_path):
    for k in range(16):
        a = np.full((16, 16, 3), 240 if k % 2 else 20, np.uint8)
        Image.fromarray(a).save(tmp_path / f"{'Cat' if k % 2 else 'dog'}_{k}.png")
    dls = ImageDataLoaders.from_name_func(tmp_path, get_image_files(tmp_path), lambda x: x[0].isupper(),
                                          item_tfms=Resize(8), bs=4, num_workers=0, seed=0)  # fmt: skip
    learn = Learner(dls, torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2)), quiet=True)
    interp_ = ClassificationInterpretation.from_learner(learn)
    assert interp_.confusion_matrix().sum() == len(dls.valid_ds)
    fig = interp_.plot_top_losses(2)
    assert sum(bool(ax.images) for ax in fig.axes) == 2
    plt.close("all")


def test_plot_most_uncertain_titles_the_items_closest_to_the_boundary():
    fig = interp(P, T).plot_most_uncertain(2)
    assert [ax.get_title() for ax in fig.axes[:2]] == ["dog/emu / 0.45 vs 0.45", "cat/dog / 0.50 vs 0.49"]
    plt.close(fig)


def test_from_learner_refuses_a_regression_learner_and_says_why():
    from conftest import linear_dls

    learn = Learner(linear_dls(n=64), torch.nn.Linear(1, 1), torch.nn.MSELoss(), quiet=True)
    with pytest.raises(ValueError, match=r"single-label classifier.*targets \(13, 1\)"):
        ClassificationInterpretation.from_learner(learn)
