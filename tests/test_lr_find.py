"""The learning-rate finder: schedule, early stop, exact restore, and the suggestion rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import blobs_dls, mlp

from ember.basics import CrossEntropyLossFlat, Learner, minimum, slide, steep, valley


def test_lr_find_restores_model_and_optimizer_bit_for_bit():
    learn = Learner(blobs_dls(), mlp(), CrossEntropyLossFlat(), quiet=True)
    learn.fit(1, lr=1e-3)  # so the optimizer has state to restore
    model_before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    opt_before = learn.opt.state_dict()
    opt_before_state = {i: {k: v.clone() for k, v in s.items()} for i, s in opt_before["state"].items()}
    opt_before_groups = [{k: v for k, v in g.items() if k != "params"} for g in opt_before["param_groups"]]
    learn.lr_find(num_it=30, show_plot=False)
    for k, v in learn.model.state_dict().items():
        assert torch.equal(v, model_before[k]), k
    after = learn.opt.state_dict()
    for i, s in after["state"].items():
        for k, v in s.items():
            assert torch.equal(v, opt_before_state[i][k]), (i, k)
    assert [{k: v for k, v in g.items() if k != "params"} for g in after["param_groups"]] == opt_before_groups


def test_lr_find_grows_the_lr_exponentially_and_stops_when_the_loss_diverges():
    learn = Learner(blobs_dls(n=2000), mlp(), CrossEntropyLossFlat(), quiet=True)
    learn.lr_find(start_lr=1e-6, end_lr=1e3, num_it=100, show_plot=False)
    lrs = learn.recorder.lrs
    assert lrs[0] == pytest.approx(1e-6)
    ratios = np.array(lrs[1:]) / np.array(lrs[:-1])
    assert np.allclose(ratios, (1e3 / 1e-6) ** (1 / 100))
    assert len(lrs) < 100  # an lr of 1e3 blows the loss up well before the end
    losses = learn.recorder.losses
    assert losses[-1] > 4 * min(losses) or math.isnan(losses[-1])


def test_lr_find_without_stop_div_runs_num_it_batches_across_epochs():
    learn = Learner(blobs_dls(n=200, bs=16), mlp(), CrossEntropyLossFlat(), quiet=True)  # 10 batches/epoch
    learn.lr_find(num_it=25, end_lr=1e-1, stop_div=False, show_plot=False)
    assert len(learn.recorder.lrs) == 25


def test_lr_find_returns_a_suggestion_in_a_sensible_range_and_can_plot(tmp_path):
    learn = Learner(blobs_dls(n=2000), mlp(), CrossEntropyLossFlat(), quiet=True)
    res = learn.lr_find(suggest_funcs=(valley, minimum, steep, slide))
    assert res._fields == ("valley", "minimum", "steep", "slide")
    assert 1e-5 < res.valley < 1
    fig = learn.recorder.plot_lr_find(suggestions=res)
    fig.savefig(tmp_path / "lr.png")
    assert (tmp_path / "lr.png").stat().st_size > 1000


# A synthetic loss curve: flat, then a long descent, a minimum at index 70, then a blow-up.
LRS = np.geomspace(1e-7, 10, 100)
LOSSES = np.concatenate(
    [np.full(20, 2.0), np.linspace(2.0, 0.5, 51)[:-1], np.linspace(0.5, 0.45, 5), np.geomspace(0.46, 5, 25)]
)


def test_valley_picks_a_point_inside_the_longest_descent():
    # The longest decreasing run: from the last flat point (19) to the minimum (74), 56 points.
    start, end = 19, 74
    third = (end - start) / 3
    assert valley(LRS, LOSSES) == pytest.approx(LRS[start + int(third) + int(third / 2)])


def test_minimum_is_a_tenth_of_the_lr_at_the_lowest_loss():
    assert minimum(LRS, LOSSES) == pytest.approx(LRS[int(np.argmin(LOSSES))] / 10)


def test_steep_is_where_the_loss_falls_fastest_per_log_lr():
    slopes = np.diff(LOSSES) / np.diff(np.log(LRS))
    assert steep(LRS, LOSSES) == pytest.approx(LRS[int(np.argmin(slopes))])
    assert 20 <= int(np.argmin(slopes)) < 70


def test_slide_returns_an_lr_before_the_blow_up():
    lr = slide(LRS, LOSSES)
    assert LRS[0] <= lr <= LRS[80]
