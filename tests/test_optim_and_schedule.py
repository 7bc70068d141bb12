"""Optimizer groups, weight decay, learning-rate slices, freezing, one-cycle and fine_tune."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import blobs_dls, linear_dls, mlp
from torch import nn

from ember.basics import SGD, Adam, CrossEntropyLossFlat, Learner, MSELossFlat, combined_cos
from ember.core.optimizer import get_hyper, lrs_for


def two_group_splitter(model: nn.Sequential):
    return [list(model[:2].parameters()), list(model[2:].parameters())]


def three_group_splitter(model: nn.Sequential):
    return [list(model[:1].parameters()), list(model[1:3].parameters()), list(model[3:].parameters())]


def test_adam_with_weight_decay_matches_torch_adamw_step_for_step():
    torch.manual_seed(0)
    ref = nn.Linear(4, 3)
    ours = nn.Linear(4, 3)
    ours.load_state_dict(ref.state_dict())
    # every parameter decayed, to compare the decoupled decay itself
    opt_ref = torch.optim.AdamW(ref.parameters(), lr=0.1, betas=(0.9, 0.99), eps=1e-5, weight_decay=0.3)
    opt = Adam(ours.parameters(), lr=0.1, wd=0.3)
    x, y = torch.randn(8, 4), torch.randn(8, 3)
    for _ in range(5):
        for m, o in ((ref, opt_ref), (ours, opt)):
            o.zero_grad()
            nn.functional.mse_loss(m(x), y).backward()
            o.step()
    assert torch.allclose(ref.weight, ours.weight) and torch.allclose(ref.bias, ours.bias)


def test_learner_applies_decoupled_weight_decay_only_to_weights_not_bias_or_batchnorm():
    learn = Learner(blobs_dls(), mlp(), loss_func=CrossEntropyLossFlat(), wd=0.1, quiet=True)
    learn.create_opt()
    decays = {}
    for g in learn.opt.param_groups:
        for p in g["params"]:
            decays[id(p)] = g["weight_decay"]
    names = {id(p): n for n, p in learn.model.named_parameters()}
    by_name = {names[i]: d for i, d in decays.items()}
    assert by_name == {
        "0.weight": 0.1,
        "0.bias": 0.0,
        "1.weight": 0.0,
        "1.bias": 0.0,
        "3.weight": 0.1,
        "3.bias": 0.0,
    }
    learn_all = Learner(
        blobs_dls(), mlp(), loss_func=CrossEntropyLossFlat(), wd=0.1, wd_bn_bias=True, quiet=True
    )
    learn_all.create_opt()
    assert all(g["weight_decay"] == 0.1 for g in learn_all.opt.param_groups)


def test_adam_default_weight_decay_is_001_and_sgd_has_none():
    learn = Learner(blobs_dls(), mlp(bn=False), loss_func=CrossEntropyLossFlat(), quiet=True)
    learn.create_opt()
    assert isinstance(learn.opt, torch.optim.AdamW) and get_hyper(learn.opt, "wd") == [0.01]
    sgd = Learner(blobs_dls(), mlp(bn=False), loss_func=CrossEntropyLossFlat(), opt_func=SGD, quiet=True)
    sgd.create_opt()
    assert isinstance(sgd.opt, torch.optim.SGD) and get_hyper(sgd.opt, "wd") == [0.0]


def test_a_slice_spreads_learning_rates_across_groups():
    assert lrs_for(slice(1e-2), 3) == [1e-3, 1e-3, 1e-2]
    assert lrs_for(slice(1e-5, 1e-3), 3) == pytest.approx([1e-5, 1e-4, 1e-3])
    assert lrs_for(3e-3, 2) == [3e-3, 3e-3]
    learn = Learner(blobs_dls(), mlp(), CrossEntropyLossFlat(), splitter=three_group_splitter, quiet=True)
    learn.fit(1, lr=slice(1e-6, 1e-2))
    assert get_hyper(learn.opt, "lr") == pytest.approx([1e-6, 1e-4, 1e-2])
    with pytest.raises(ValueError, match="slice"):
        lrs_for(slice(None, None), 2)


def test_freeze_trains_only_the_last_group_but_keeps_batchnorm_trainable():
    learn = Learner(blobs_dls(), mlp(), CrossEntropyLossFlat(), splitter=two_group_splitter, quiet=True)
    learn.freeze()
    grads = {n: p.requires_grad for n, p in learn.model.named_parameters()}
    assert grads == {
        "0.weight": False, "0.bias": False, "1.weight": True, "1.bias": True,
        "3.weight": True, "3.bias": True,
    }  # fmt: skip
    frozen_before = learn.model[0].weight.detach().clone()
    bn_before = learn.model[1].weight.detach().clone()
    learn.fit(1, lr=1e-2)
    assert torch.equal(frozen_before, learn.model[0].weight)
    assert not torch.equal(bn_before, learn.model[1].weight)
    learn.unfreeze()
    assert all(p.requires_grad for p in learn.model.parameters())


def test_freeze_without_train_bn_freezes_batchnorm_too():
    learn = Learner(blobs_dls(), mlp(), CrossEntropyLossFlat(), splitter=two_group_splitter, train_bn=False)
    learn.freeze()
    assert not learn.model[1].weight.requires_grad


def test_one_cycle_schedule_matches_the_formula_at_chosen_steps():
    dls = linear_dls(n=320, bs=32)  # 8 training batches per epoch
    learn = Learner(dls, nn.Linear(1, 1), MSELossFlat(), quiet=True)
    learn.fit_one_cycle(2, lr_max=1e-2, div=25, div_final=1e5, pct_start=0.25)
    lrs, moms = learn.recorder.lrs, learn.recorder.moms
    total = 16
    assert len(lrs) == total

    def expected_lr(i: int) -> float:
        pos = i / total
        if pos < 0.25:
            p = pos / 0.25
            return 1e-2 / 25 + (1 - math.cos(math.pi * p)) / 2 * (1e-2 - 1e-2 / 25)
        p = (pos - 0.25) / 0.75
        return 1e-2 + (1 - math.cos(math.pi * p)) / 2 * (1e-2 / 1e5 - 1e-2)

    for i in (0, 2, 4, 9, 15):
        assert lrs[i] == pytest.approx(expected_lr(i), rel=1e-9)
    assert lrs[0] == pytest.approx(1e-2 / 25) and lrs[4] == pytest.approx(1e-2)
    assert moms[0] == pytest.approx(0.95) and moms[4] == pytest.approx(0.85)
    assert moms[15] > moms[8]  # momentum comes back up while the lr anneals


def test_combined_cos_meets_its_end_points():
    f = combined_cos(0.3, 1.0, 5.0, 0.5)
    assert f(0) == pytest.approx(1.0) and f(0.3) == pytest.approx(5.0) and f(1.0) == pytest.approx(0.5)


def test_one_cycle_with_a_slice_schedules_each_group_to_its_own_peak():
    learn = Learner(blobs_dls(), mlp(), CrossEntropyLossFlat(), splitter=two_group_splitter, quiet=True)
    peaks = [0.0, 0.0]

    from ember.basics import Callback

    class Peak(Callback):
        order = 61

        def before_batch(self):
            for k, lr in enumerate(get_hyper(self.learn.opt, "lr")):
                peaks[k] = max(peaks[k], lr)

    learn.fit_one_cycle(2, slice(1e-4, 1e-2), cbs=Peak())
    assert peaks[0] == pytest.approx(1e-4, rel=0.05) and peaks[1] == pytest.approx(1e-2, rel=0.05)


def test_fine_tune_trains_frozen_then_unfrozen_with_discriminative_rates():
    learn = Learner(blobs_dls(), mlp(), CrossEntropyLossFlat(), splitter=two_group_splitter, quiet=True)
    seen = []

    from ember.basics import Callback

    class Spy(Callback):
        def before_fit(self):
            seen.append((self.learn.model[0].weight.requires_grad, self.learn.n_epoch))

    learn.add_cb(Spy())
    learn.fine_tune(2, base_lr=2e-3)
    assert seen == [(False, 1), (True, 2)]
    # the unfrozen cycle ends at lr / div_final; the two groups keep their 1:100 ratio
    lrs = get_hyper(learn.opt, "lr")
    assert lrs[1] / lrs[0] == pytest.approx(100)
