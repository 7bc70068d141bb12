"""The callbacks that ship with ember: trackers, logger, clipping, accumulation, NaN, precision."""

from __future__ import annotations

import csv
import warnings

import pytest
import torch
from conftest import blobs_dls, linear_dls, mlp
from torch import nn

from ember.basics import (
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


def test_gradient_clip_bounds_the_gradient_norm_seen_by_the_optimizer():
    norms = []

    class Norm(Callback):
        order = 30

        def after_backward(self):
            grads = [p.grad for p in self.learn.model.parameters()]
            norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())

    dls = linear_dls(n=64)
    learn = Learner(dls, nn.Linear(1, 1), MSELossFlat(), cbs=[GradientClip(0.1), Norm()], quiet=True)
    learn.fit(1, lr=1e-3)
    assert max(norms) <= 0.1 + 1e-6


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


def test_to_fp16_on_a_cpu_trains_in_bfloat16_and_says_so():
    learn = Learner(blobs_dls(), mlp(), CrossEntropyLossFlat(), metrics=accuracy, quiet=True).to_fp16()
    dtypes = []

    class Spy(Callback):
        def after_pred(self):
            dtypes.append(self.learn.pred.dtype)

    with pytest.warns(UserWarning, match="bfloat16"):
        learn.fit_one_cycle(2, 1e-2, cbs=Spy())
    assert set(dtypes) == {torch.bfloat16}
    assert learn.recorder.value("accuracy") > 0.9
    assert learn.grad_scaler is None
    learn.to_fp32()
    dtypes.clear()
    learn.fit(1, cbs=Spy())
    assert set(dtypes) == {torch.float32}


def test_to_bf16_trains_without_warnings():
    learn = Learner(blobs_dls(), mlp(), CrossEntropyLossFlat(), metrics=accuracy, quiet=True).to_bf16()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        learn.fit_one_cycle(2, 1e-2)
    assert learn.recorder.value("accuracy") > 0.9


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_to_fp16_on_cuda_uses_float16_and_a_grad_scaler():
    from ember.basics import DataLoaders

    dls = blobs_dls()
    dls = DataLoaders(dls.train, dls.valid, device="cuda")
    learn = Learner(dls, mlp(), CrossEntropyLossFlat(), metrics=accuracy, quiet=True).to_fp16()
    seen = []

    class Spy(Callback):
        def after_pred(self):
            seen.append((self.learn.pred.dtype, self.learn.grad_scaler is not None))

    learn.fit_one_cycle(2, 1e-2, cbs=Spy())
    assert (torch.float16, True) in seen
    assert learn.recorder.value("accuracy") > 0.9
