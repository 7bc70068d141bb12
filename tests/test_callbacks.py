"""The callbacks that ship with ember: trackers, logger, clipping, accumulation, NaN, precision."""

from __future__ import annotations

import csv

import pytest
import torch
from conftest import blobs_dls, linear_dls, mlp
from torch import nn

from ember.basics import (
    SGD,
    Callback,
    CrossEntropyLossFlat,
    CSVLogger,
    EarlyStoppingCallback,
    GradientAccumulation,
    GradientClip,
    Learner,
    MSELossFlat,
    ReduceLROnPlateau,
    SaveModelCallback,
    accuracy,
)
from ember.core.optimizer import get_hyper


class ScriptedValues(Callback):
    """Replaces the recorded valid loss with a scripted sequence, to drive trackers."""

    order = 55

    def __init__(self, values):
        self.values = values

    def after_epoch(self):
        v = self.values[self.learn.epoch]
        self.learn.recorder.values[-1][1] = v
        self.learn.recorder.log[2] = v


def test_early_stopping_stops_after_patience_epochs_without_improvement(capsys):
    learn = Learner(linear_dls(n=40), nn.Linear(1, 1), MSELossFlat(), quiet=True)
    cbs = [ScriptedValues([1.0, 0.5, 0.6, 0.7, 0.4, 0.3]), EarlyStoppingCallback(patience=2)]
    learn.fit(6, cbs=cbs)
    assert len(learn.recorder.values) == 4
    assert "early stopping" in capsys.readouterr().out


def test_early_stopping_on_an_unknown_column_names_the_columns():
    learn = Learner(linear_dls(n=40), nn.Linear(1, 1), MSELossFlat(), metrics=accuracy, quiet=True)
    with pytest.raises(ValueError, match=r"'f1'.*accuracy"):
        learn.fit(1, cbs=EarlyStoppingCallback(monitor="f1"))


def test_metric_trackers_treat_higher_as_better_unless_the_name_says_loss_or_error():
    assert EarlyStoppingCallback(monitor="accuracy").comp(0.9, 0.8)
    assert EarlyStoppingCallback(monitor="error_rate").comp(0.1, 0.2)


def test_save_model_keeps_the_best_epoch_and_loads_it_at_the_end(tmp_path):
    learn = Learner(linear_dls(n=40), nn.Linear(1, 1), MSELossFlat(), path=tmp_path, quiet=True)
    weights = {}

    class Snap(Callback):
        order = 80

        def after_epoch(self):
            weights[self.learn.epoch] = self.learn.model.weight.detach().clone()

    learn.fit(4, lr=0.05, cbs=[ScriptedValues([3.0, 1.0, 2.0, 5.0]), SaveModelCallback(), Snap()])
    assert (tmp_path / "models" / "model.safetensors").exists()
    assert torch.equal(learn.model.weight, weights[1])


def test_save_model_every_epoch_writes_one_file_per_epoch_with_its_epoch(tmp_path):
    learn = Learner(linear_dls(n=40), nn.Linear(1, 1), MSELossFlat(), path=tmp_path, quiet=True)
    learn.fit(3, cbs=SaveModelCallback(every_epoch=True, with_opt=True))
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "model_0.safetensors", "model_1.safetensors", "model_2.safetensors",
    ]  # fmt: skip
    assert learn.load("model_1").epoch == 1


def test_reduce_lr_on_plateau_divides_the_lr_after_patience(capsys):
    learn = Learner(linear_dls(n=40), nn.Linear(1, 1), MSELossFlat(), quiet=True)
    learn.fit(
        4, lr=1e-2, cbs=[ScriptedValues([1.0, 1.0, 1.0, 1.0]), ReduceLROnPlateau(patience=1, factor=10)]
    )
    assert get_hyper(learn.opt, "lr") == pytest.approx([1e-5])


def test_csv_logger_writes_a_row_per_epoch_and_can_append(tmp_path):
    learn = Learner(blobs_dls(), mlp(), CrossEntropyLossFlat(), metrics=accuracy, path=tmp_path, quiet=True)
    learn.fit(2, cbs=CSVLogger())
    rows = list(csv.reader((tmp_path / "history.csv").read_text().splitlines()))
    assert rows[0] == ["epoch", "train_loss", "valid_loss", "accuracy", "time"]
    assert [r[0] for r in rows[1:]] == ["0", "1"]
    learn.fit(1, cbs=CSVLogger(append=True))
    assert len((tmp_path / "history.csv").read_text().splitlines()) == 4
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def grad_norm(model: nn.Module) -> float:
    return torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])).item()


class NormSpy(Callback):
    """Records the gradients' global norm at its `order` in after_backward."""

    def __init__(self, order: int):
        self.order, self.norms = order, []

    def after_backward(self):
        self.norms.append(grad_norm(self.learn.model))


def test_gradient_clip_brings_a_larger_gradient_norm_down_to_the_clip():
    before, after = NormSpy(order=15), NormSpy(order=30)  # GradientClip runs at order 20
    learn = Learner(
        linear_dls(n=64), nn.Linear(1, 1), MSELossFlat(), cbs=[GradientClip(0.1), before, after], quiet=True
    )
    learn.fit(1, lr=1e-3)
    assert min(before.norms) > 1.0  # the control: unclipped, every norm is well over the clip
    assert after.norms == pytest.approx([0.1] * len(before.norms), rel=1e-5)


def test_gradient_accumulation_over_two_batches_equals_one_batch_twice_as_big():
    x, y = torch.randn(64, 3), torch.randn(64, 1)
    from torch.utils.data import TensorDataset

    from ember.basics import SGD, DataLoaders

    def run(bs: int, cbs):
        torch.manual_seed(0)
        model = nn.Linear(3, 1)
        dls = DataLoaders.from_dsets(
            TensorDataset(x, y), TensorDataset(x, y), bs=bs, shuffle=False, device="cpu"
        )
        learn = Learner(dls, model, MSELossFlat(), opt_func=SGD, lr=0.1, cbs=cbs, quiet=True)
        learn.fit(1)
        return model.weight.detach()

    assert torch.allclose(
        run(32, GradientAccumulation(n_acc=32)), run(16, GradientAccumulation(n_acc=32)), atol=1e-6
    )
    assert not torch.allclose(run(32, []), run(16, []), atol=1e-6)


def test_a_nan_loss_stops_training_and_says_which_batch():
    class Poison(Callback):
        order = -50

        def after_loss(self):
            if self.learn.training and self.learn.iter == 2:
                self.learn.loss = self.learn.loss * float("nan")

    learn = Learner(linear_dls(n=256), nn.Linear(1, 1), MSELossFlat(), cbs=Poison(), quiet=True)
    with pytest.warns(RuntimeWarning, match=r"epoch 0, batch 2.*lower learning rate"):
        learn.fit(3)
    assert learn.recorder.values == []  # stopped inside the first epoch


# ---- the gradient scaler, on the CPU ---------------------------------------------------------------
# float16 autocast needs CUDA, but a GradScaler's logic (scale the loss, unscale the gradients, skip a
# step whose gradients overflowed, halve the scale) runs on the CPU. `CPUScaler` installs one after
# MixedPrecision's own setup (order 10), so the loop's scaler path runs here with bfloat16 autocast.


class CountingScaler(torch.amp.GradScaler):
    """A GradScaler that counts its unscale_ and step calls."""

    def __init__(self, **kwargs):
        super().__init__("cpu", **kwargs)
        self.calls = {"unscale_": 0, "step": 0}

    def unscale_(self, optimizer):
        self.calls["unscale_"] += 1
        return super().unscale_(optimizer)

    def step(self, optimizer, *args, **kwargs):
        self.calls["step"] += 1
        return super().step(optimizer, *args, **kwargs)


class CPUScaler(Callback):
    order = 11

    def __init__(self, init_scale: float = 2.0**10):
        # growth_interval: the scale never grows during these short fits
        self.scaler = CountingScaler(init_scale=init_scale, growth_interval=10_000)

    def before_fit(self):
        self.learn.grad_scaler = self.scaler


class Overflow(Callback):
    """Puts an inf into one gradient at training batch `at`: before GradientAccumulation (order 5) can
    cancel the batch and before MixedPrecision (10) unscales."""

    order = 4

    def __init__(self, at: int):
        self.at = at

    def after_backward(self):
        if self.learn.train_iter == self.at:
            self.learn.model.weight.grad[0, 0] = float("inf")


class StepSpy(Callback):
    """Per training batch that reached the step: did the weights move, the step's size, the scale after."""

    order = 90

    def __init__(self):
        self.moved, self.step_norms, self.scales = [], [], []

    def before_batch(self):
        self.before = [p.detach().clone() for p in self.learn.model.parameters()]

    def after_step(self):
        deltas = [p.detach() - b for p, b in zip(self.learn.model.parameters(), self.before, strict=True)]
        self.moved.append(any(bool(d.ne(0).any()) for d in deltas))
        self.step_norms.append(torch.linalg.vector_norm(torch.stack([d.norm() for d in deltas])).item())
        scaler = self.learn.grad_scaler
        self.scales.append(scaler.get_scale() if scaler is not None else None)


def scaled_learner(n: int, cbs, **kwargs) -> Learner:
    torch.manual_seed(0)
    dls = linear_dls(n=n, bs=32)  # 0.8 * n / 32 training batches
    return Learner(dls, nn.Linear(1, 1), MSELossFlat(), opt_func=SGD, cbs=cbs, quiet=True, **kwargs).to_bf16()


def test_a_gradient_overflow_skips_the_step_and_halves_the_loss_scale():
    spy = StepSpy()
    learn = scaled_learner(160, [CPUScaler(), Overflow(at=1), spy], lr=0.1)  # 4 batches
    learn.fit(1)
    assert spy.moved == [True, False, True, True]
    assert spy.scales == [1024.0, 512.0, 512.0, 512.0]
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())


def test_the_gradients_are_unscaled_before_clipping():
    true_norms = []

    class TrueNorm(Callback):
        """The float32 gradient norm of this batch, computed apart from the loop, before the clip."""

        order = 15

        def after_backward(self):
            ref = nn.Linear(1, 1)
            ref.load_state_dict(self.learn.model.state_dict())
            nn.functional.mse_loss(ref(*self.learn.xb), *self.learn.yb).backward()
            true_norms.append((grad_norm(ref), grad_norm(self.learn.model)))

    spy = StepSpy()
    learn = scaled_learner(160, [CPUScaler(), TrueNorm(), GradientClip(0.1), spy], lr=1.0)
    learn.fit(1)
    for ref, seen in true_norms:  # what the clip sees is the true norm (bfloat16 forward: 2% apart)
        assert seen == pytest.approx(ref, rel=0.02) and ref > 1.0  # and the clip has something to do
    # SGD at lr 1 moves the weights by the clipped gradient: its norm is the clip, not clip / scale
    assert spy.step_norms == pytest.approx([0.1] * 4, rel=1e-4)


def test_the_scaler_steps_and_unscales_once_per_accumulation_and_catches_an_earlier_overflow():
    def run(cbs):
        spy = StepSpy()
        learn = scaled_learner(320, [GradientAccumulation(n_acc=64), *cbs, spy], lr=0.1)  # 8 batches
        learn.fit(1)
        return learn.model.weight.detach().clone(), spy

    plain, _ = run([])
    scaler = CPUScaler()
    scaled, spy = run([scaler])
    assert scaler.scaler.calls == {"unscale_": 4, "step": 4}  # 8 batches of 32, one step per 64 samples
    # scaling by a power of two is exact: unscaled once, the sum is the unscaled run's to the bit
    assert torch.equal(scaled, plain)
    # an inf in the first batch of a pair reaches the pair's step, which is skipped
    overflow = CPUScaler()
    _, spy = run([overflow, Overflow(at=2)])
    assert spy.moved == [True, False, True, True]
    assert spy.scales == [1024.0, 512.0, 512.0, 512.0]
