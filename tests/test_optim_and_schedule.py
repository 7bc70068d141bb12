"""Optimizer groups, weight decay, learning-rate slices, freezing, one-cycle and fine_tune."""

from __future__ import annotations

import copy
import math
from functools import partial

import pytest
import torch
from conftest import blobs_dls, mlp
from torch import nn

from ember.basics import SGD, Adam, Callback, CrossEntropyLossFlat, Learner, RMSProp, combined_cos
from ember.core.optimizer import get_hyper, lrs_for


def two_group_splitter(model: nn.Sequential):
    return [list(model[:2].parameters()), list(model[2:].parameters())]


def three_group_splitter(model: nn.Sequential):
    return [list(model[:1].parameters()), list(model[1:3].parameters()), list(model[3:].parameters())]


def one_cycle(pos: float, start: float, middle: float, end: float, pct: float) -> float:
    """The 1cycle formula written out: a half cosine from start to middle over the first `pct` of
    training, then another from middle to end."""
    if pos < pct:
        return start + (middle - start) * (1 - math.cos(math.pi * pos / pct)) / 2
    return middle + (end - middle) * (1 - math.cos(math.pi * (pos - pct) / (1 - pct))) / 2


class BatchTape(Callback):
    """Keeps every training batch, to replay the same batches through a reference loop."""

    def __init__(self):
        self.batches = []

    def before_batch(self):
        if self.learn.training:
            self.batches.append((self.learn.xb[0].clone(), self.learn.yb[0].clone()))


# mlp(): 0 Linear(2, 16), 1 BatchNorm1d(16), 2 ReLU, 3 Linear(16, 3). Written out by hand: the
# parameters that get weight decay, and those that don't (BatchNorm and biases).
DECAYED = ["0.weight", "3.weight"]
UNDECAYED = ["0.bias", "1.weight", "1.bias", "3.bias"]


def torch_groups(model: nn.Module, groups: list[tuple[list[str], float]]) -> list[dict]:
    """torch parameter groups from `(parameter names, weight decay)` pairs."""
    params = dict(model.named_parameters())
    return [{"params": [params[n] for n in names], "weight_decay": wd} for names, wd in groups]


def replay(model: nn.Module, opt: torch.optim.Optimizer, batches, set_hypers=None) -> None:
    """The reference training loop: plain PyTorch over the recorded batches."""
    model.train()
    for i, (xb, yb) in enumerate(batches):
        if set_hypers is not None:
            set_hypers(opt, i)
        nn.functional.cross_entropy(model(xb), yb).backward()
        opt.step()
        opt.zero_grad()


def assert_same_weights(ours: nn.Module, ref: nn.Module) -> None:
    for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values(), strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6), name


@pytest.mark.parametrize(
    "opt_func, wd, reference",
    [
        (Adam, 0.0, lambda gs: torch.optim.Adam(gs, lr=0.05, betas=(0.9, 0.99), eps=1e-5)),
        (Adam, 0.1, lambda gs: torch.optim.AdamW(gs, lr=0.05, betas=(0.9, 0.99), eps=1e-5)),
        (SGD, 0.1, lambda gs: torch.optim.SGD(gs, lr=0.05)),
        (partial(SGD, mom=0.9), 0.1, lambda gs: torch.optim.SGD(gs, lr=0.05, momentum=0.9)),
    ],
    ids=["adam", "adamw", "sgd", "sgd-momentum"],
)
def test_fit_steps_like_the_matching_torch_optimizer(opt_func, wd, reference):
    torch.manual_seed(0)
    model = mlp()
    ref = copy.deepcopy(model)
    tape = BatchTape()
    learn = Learner(blobs_dls(n=200), model, CrossEntropyLossFlat(), opt_func=opt_func, lr=0.05, wd=wd,
                    cbs=tape, quiet=True)  # fmt: skip
    learn.fit(2)
    replay(ref, reference(torch_groups(ref, [(DECAYED, wd), (UNDECAYED, 0.0)])), tape.batches)
    assert len(tape.batches) == 10
    assert_same_weights(model, ref)


def test_fit_one_cycle_trains_like_torch_adamw_with_lr_and_beta1_set_by_the_formula():
    torch.manual_seed(0)
    model = mlp()
    ref = copy.deepcopy(model)
    tape = BatchTape()
    learn = Learner(blobs_dls(n=400), model, CrossEntropyLossFlat(), splitter=two_group_splitter, wd=0.1,
                    cbs=tape, quiet=True)  # fmt: skip
    learn.fit_one_cycle(2, slice(1e-3, 1e-2), pct_start=0.3, div=10, div_final=100)
    # layer groups: [0, 1] and [3]; each split into its decayed and undecayed parameters
    groups = [
        (["0.weight"], 0.1),
        (["0.bias", "1.weight", "1.bias"], 0.0),
        (["3.weight"], 0.1),
        (["3.bias"], 0.0),
    ]
    peaks = [1e-3, 1e-3, 1e-2, 1e-2]
    total = len(tape.batches)

    def set_hypers(opt: torch.optim.Optimizer, i: int) -> None:
        for g, peak in zip(opt.param_groups, peaks, strict=True):
            g["lr"] = one_cycle(i / total, peak / 10, peak, peak / 100, 0.3)
            g["betas"] = (one_cycle(i / total, 0.95, 0.85, 0.95, 0.3), 0.99)  # Learner's default moms

    # ember's Adam is AdamW with its documented defaults: beta2 0.99, eps 1e-5
    opt = torch.optim.AdamW(torch_groups(ref, groups), lr=0.0, betas=(0.9, 0.99), eps=1e-5)
    replay(ref, opt, tape.batches, set_hypers)
    assert total == 20
    assert_same_weights(model, ref)


class EveryKind(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(5, 4)
        self.conv = nn.Conv1d(4, 4, 1, bias=False)
        self.bn = nn.BatchNorm1d(4)
        self.ln = nn.LayerNorm(4)
        self.gn = nn.GroupNorm(2, 4)
        self.head = nn.Linear(4, 2)
        self.attn = nn.MultiheadAttention(4, 1)  # its biases are called in_proj_bias and out_proj.bias


def test_weight_decay_skips_norm_layers_and_biases_unless_wd_bn_bias():
    def decays(**kwargs) -> dict[str, float]:
        learn = Learner(blobs_dls(), EveryKind(), CrossEntropyLossFlat(), wd=0.1, quiet=True, **kwargs)
        learn.create_opt()
        names = {id(p): n for n, p in learn.model.named_parameters()}
        return {names[id(p)]: g["weight_decay"] for g in learn.opt.param_groups for p in g["params"]}

    decayed = ["emb.weight", "conv.weight", "head.weight", "attn.in_proj_weight", "attn.out_proj.weight"]
    undecayed = ["bn.weight", "bn.bias", "ln.weight", "ln.bias", "gn.weight", "gn.bias", "head.bias",
                 "attn.in_proj_bias", "attn.out_proj.bias"]  # fmt: skip
    assert decays() == {**dict.fromkeys(decayed, 0.1), **dict.fromkeys(undecayed, 0.0)}
    assert decays(wd_bn_bias=True) == dict.fromkeys(decayed + undecayed, 0.1)


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


class HyperSpy(Callback):
    """Each training batch's lr and momentum per layer group, as the optimizer holds them for the step."""

    order = 61  # after ParamScheduler (60)

    def __init__(self):
        self.lrs, self.moms = [], []

    def before_batch(self):
        if self.learn.training:
            self.lrs.append(get_hyper(self.learn.opt, "lr"))
            self.moms.append(get_hyper(self.learn.opt, "mom"))


@pytest.mark.parametrize("opt_func", [Adam, partial(SGD, mom=0.9)], ids=["adam-beta1", "sgd-momentum"])
def test_one_cycle_sets_each_groups_lr_and_momentum_by_the_formula_at_every_step(opt_func):
    learn = Learner(blobs_dls(n=400), mlp(), CrossEntropyLossFlat(), opt_func=opt_func,
                    splitter=three_group_splitter, quiet=True)  # fmt: skip
    spy = HyperSpy()
    moms = (0.9, 0.8, 0.7)
    learn.fit_one_cycle(3, slice(1e-4, 1e-2), div=20, div_final=1e4, pct_start=0.3, moms=moms, cbs=spy)
    total = 30  # 3 epochs of 10 batches
    peaks = [1e-4, 1e-3, 1e-2]  # slice(lo, hi): geometric steps from lo (first group) to hi (last)
    assert len(spy.lrs) == total
    for i in range(total):
        assert spy.lrs[i] == pytest.approx([one_cycle(i / total, p / 20, p, p / 1e4, 0.3) for p in peaks]), i
        assert spy.moms[i] == pytest.approx([one_cycle(i / total, *moms, 0.3)] * 3), i
    # worked out by hand: the start is peak / div, step 9 (pos 0.3) the peak and the lowest momentum
    assert spy.lrs[0] == pytest.approx([5e-6, 5e-5, 5e-4]) and spy.lrs[9] == pytest.approx(peaks)
    assert spy.moms[0] == pytest.approx([0.9] * 3) and spy.moms[9] == pytest.approx([0.8] * 3)
    assert learn.recorder.lrs == pytest.approx([lrs[-1] for lrs in spy.lrs])


def test_combined_cos_meets_its_end_points():
    f = combined_cos(0.3, 1.0, 5.0, 0.5)
    assert f(0) == pytest.approx(1.0) and f(0.3) == pytest.approx(5.0) and f(1.0) == pytest.approx(0.5)


def test_fine_tune_trains_frozen_then_unfrozen_with_discriminative_rates():
    learn = Learner(blobs_dls(), mlp(), CrossEntropyLossFlat(), splitter=two_group_splitter, quiet=True)
    seen = []

    class Spy(Callback):
        def before_fit(self):
            seen.append((self.learn.model[0].weight.requires_grad, self.learn.n_epoch))

    learn.add_cb(Spy())
    learn.fine_tune(2, base_lr=2e-3)
    assert seen == [(False, 1), (True, 2)]
    # the unfrozen cycle ends at lr / div_final; the two groups keep their 1:100 ratio
    lrs = get_hyper(learn.opt, "lr")
    assert lrs[1] / lrs[0] == pytest.approx(100)


def test_rmsprop_takes_the_step_of_the_formula_without_momentum_by_default():
    w = nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = RMSProp([w], lr=0.1)
    w.grad = torch.tensor([0.5, 4.0])
    opt.step()
    sq = (1 - 0.99) * torch.tensor([0.5, 4.0]) ** 2  # the squared-gradient average after one step
    want = torch.tensor([1.0, -2.0]) - 0.1 * torch.tensor([0.5, 4.0]) / (sq.sqrt() + 1e-8)
    torch.testing.assert_close(w.detach(), want)
    assert opt.param_groups[0]["momentum"] == 0.0 and opt.param_groups[0]["weight_decay"] == 0.0
