"""The loop after things go wrong: exceptions and Ctrl-C, cancels, what the recorder keeps, device syncs."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from conftest import blobs_dls, linear_dls, mlp
from PIL import Image
from torch import nn

from ember.basics import (
    Callback,
    CancelEpochException,
    CancelFitException,
    CrossEntropyLossFlat,
    EarlyStoppingCallback,
    Learner,
    MSELossFlat,
    SaveModelCallback,
    TerminateOnNaN,
    accuracy,
)


class Boom(Exception):
    pass


class RaisingLearner(Learner):
    """Raises `exc` in `forward` at training batch `at` (counted over the learner's life) while `armed`."""

    def __init__(self, *args, exc: BaseException | None = None, at: int = 2, **kwargs):
        super().__init__(*args, **kwargs)
        self.exc = exc if exc is not None else Boom("forward failed")
        self.at, self.armed, self.n_forward = at, True, 0

    def forward(self):
        self.n_forward += 1
        if self.armed and self.n_forward == self.at + 1:
            raise self.exc
        return super().forward()


class Spy(Callback):
    """A callback added for one call: it must be gone after the call, however the call ended."""


def assert_usable(learn: Learner, n_cbs: int) -> None:
    """After an exception: autocast off, no bar, no leftover callbacks, flags sane, and it trains again."""
    assert not torch.is_autocast_enabled("cpu")
    assert learn.progress.bar is None
    assert len(learn.cbs) == n_cbs and not any(isinstance(cb, Spy) for cb in learn.cbs)
    assert learn.training is False and learn.model.training is False
    learn.fit(1)
    assert np.isfinite(learn.recorder.values[-1][0]) and np.isfinite(learn.recorder.values[-1][1])


def bf16_learner(cls=Learner, **kwargs) -> Learner:
    torch.manual_seed(0)
    dls = linear_dls(n=256)
    # show_bar: the bar object exists even where tqdm draws nothing (not a terminal)
    learn = cls(dls, nn.Linear(1, 1), MSELossFlat(), **kwargs)
    learn.progress.show_table = False
    return learn.to_bf16()


@pytest.mark.parametrize("exc", [Boom("forward failed"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
def test_an_exception_in_forward_leaves_the_learner_usable(exc):
    learn = bf16_learner(RaisingLearner, exc=exc)
    n = len(learn.cbs)
    with pytest.raises(type(exc)):
        learn.fit(2, cbs=Spy())
    learn.armed = False
    assert_usable(learn, n)


@pytest.mark.parametrize("exc", [Boom("callback failed"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
def test_an_exception_in_a_callback_leaves_the_learner_usable_and_names_the_callback(exc):
    class Broken(Callback):
        def after_pred(self):
            if self.learn.training and self.learn.iter == 1:
                raise exc

    learn = bf16_learner()
    n = len(learn.cbs)
    with pytest.raises(type(exc)) as info:
        learn.fit(2, cbs=[Broken(), Spy()])
    if isinstance(exc, Exception):
        assert "callback Broken, event after_pred" in "\n".join(info.value.__notes__)
    assert_usable(learn, n)


def test_an_interrupted_lr_find_restores_the_model_and_optimizer():
    learn = RaisingLearner(
        linear_dls(n=512), nn.Linear(1, 1), MSELossFlat(), exc=KeyboardInterrupt(), at=1000
    )
    learn.fit(1, lr=1e-2)  # 12 batches: the optimizer has state
    learn.at = learn.n_forward + 8  # the 9th batch of lr_find, at an lr far above the start
    model_before = {k: v.clone() for k, v in learn.model.state_dict().items()}
    opt_before = {i: {k: v.clone() for k, v in s.items()} for i, s in learn.opt.state_dict()["state"].items()}
    n = len(learn.cbs)
    with pytest.raises(KeyboardInterrupt):
        learn.lr_find(start_lr=1e-2, end_lr=1e3, num_it=20, show_plot=False)
    for k, v in learn.model.state_dict().items():
        assert torch.equal(v, model_before[k]), k
    for i, s in learn.opt.state_dict()["state"].items():
        for k, v in s.items():
            assert torch.equal(v, opt_before[i][k]), (i, k)
    assert learn.epochs_trained == 1
    learn.armed = False
    assert_usable(learn, n)


def test_an_exception_in_get_preds_or_validate_leaves_the_learner_usable():
    learn = bf16_learner(RaisingLearner, at=0)
    n = len(learn.cbs)
    with pytest.raises(Boom):
        learn.get_preds(cbs=Spy())
    assert not torch.is_autocast_enabled("cpu")
    assert learn.recorder in learn.cbs  # get_preds leaves the Recorder out, then puts it back
    learn.at = learn.n_forward
    with pytest.raises(Boom):
        learn.validate(cbs=Spy())
    learn.armed = False
    assert_usable(learn, n)
    preds, targs = learn.get_preds()
    assert preds.shape == targs.shape == (52, 1)


# ---- cancels -------------------------------------------------------------------------------------------
def never_better(a, b):
    return False


@pytest.mark.parametrize("stop_first", [True, False])
def test_early_stopping_does_not_keep_the_checkpoint_of_the_stopping_epoch_from_being_written(
    tmp_path, stop_first
):
    stop = EarlyStoppingCallback(comp=never_better, patience=2)  # stops at the end of epoch 1
    save = SaveModelCallback(every_epoch=True, fname="ckpt")  # same order (70)
    seen = []

    class Later(Callback):
        order = 90

        def after_epoch(self):
            seen.append(self.learn.epoch)

    learn = Learner(linear_dls(n=64), nn.Linear(1, 1), MSELossFlat(), path=tmp_path, quiet=True)
    learn.fit(5, cbs=[stop, save, Later()] if stop_first else [save, stop, Later()])
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "ckpt_0.safetensors",
        "ckpt_1.safetensors",
    ]
    assert seen == [0, 1]


def test_when_hooks_of_one_event_cancel_differently_the_widest_cancel_wins_in_either_order():
    class EndEpoch(Callback):
        def after_train(self):
            raise CancelEpochException()

    class EndFit(Callback):
        def after_train(self):
            raise CancelFitException()

    for cbs in ([EndEpoch(), EndFit()], [EndFit(), EndEpoch()]):
        learn = Learner(linear_dls(n=64), nn.Linear(1, 1), MSELossFlat(), quiet=True)
        learn.fit(3, cbs=cbs)
        assert learn.epoch == 0 and learn.recorder.values == []


def test_a_callback_at_the_default_order_sees_the_finished_epochs_log():
    logs = []

    class PrintEpoch(Callback):  # the README's example
        def after_epoch(self):
            logs.append(list(self.learn.recorder.log))

    learn = Learner(linear_dls(n=64), nn.Linear(1, 1), MSELossFlat(), quiet=True)
    learn.fit(3, cbs=PrintEpoch())
    assert [log[0] for log in logs] == [0, 1, 2]
    assert [log[1:-1] for log in logs] == learn.recorder.values


# ---- what the recorder keeps ---------------------------------------------------------------------------
def test_final_metrics_are_those_of_the_last_validation_of_the_validation_set():
    learn = Learner(blobs_dls(), mlp(), CrossEntropyLossFlat(), metrics=accuracy, quiet=True)
    learn.fit(2, 1e-2)
    final = dict(learn.recorder.final_metrics)
    assert list(final) == ["valid_loss", "accuracy"]
    assert final["valid_loss"] == pytest.approx(learn.recorder.values[-1][1])
    learn.get_preds(ds_idx=0)
    learn.get_preds(dl=learn.dls.train)
    assert learn.recorder.final_metrics == final
    train_values = learn.validate(ds_idx=0)  # scores the training set, returned but not final
    assert train_values[0] != pytest.approx(final["valid_loss"])
    assert learn.recorder.final_metrics == final
    assert learn.validate() == pytest.approx([final["valid_loss"], final["accuracy"]])


def test_epochs_trained_counts_every_fit_and_both_stages_of_fine_tune_but_not_lr_find():
    learn = Learner(linear_dls(n=64), nn.Linear(1, 1), MSELossFlat(), quiet=True)
    learn.fine_tune(2, freeze_epochs=1)
    assert learn.epochs_trained == 3
    learn.lr_find(num_it=5, show_plot=False)
    assert learn.epochs_trained == 3
    learn.fit(1)
    assert learn.epochs_trained == 4
    resumed = Learner(linear_dls(n=64), nn.Linear(1, 1), MSELossFlat(), quiet=True)
    resumed.fit(5, start_epoch=3)  # a killed run resumed after its epoch 2
    assert resumed.epochs_trained == 5


def test_an_export_after_predict_keeps_the_validation_metrics_and_counts_every_epoch(tmp_path):
    from ember.vision.all import ImageDataLoaders, Resize, get_image_files, read_export_info, vision_learner

    for i in range(16):
        a = np.random.default_rng(i).integers(0, 255, (12, 12, 3), dtype=np.uint8)
        a[..., 0] = 250 if i % 2 else 5
        Image.fromarray(a).save(tmp_path / f"{'Cat' if i % 2 else 'dog'}_{i}.png")
    files = get_image_files(tmp_path)
    dls = ImageDataLoaders.from_name_func(
        tmp_path, files, lambda x: x[0].isupper(), item_tfms=Resize(16), bs=4, num_workers=0, seed=0
    )
    learn = vision_learner(dls, "resnet18", pretrained=False, metrics=accuracy, quiet=True)
    learn.fine_tune(1, freeze_epochs=1)
    final = dict(zip(["valid_loss", "accuracy"], learn.recorder.values[-1][1:]))
    learn.predict(files[0])
    learn.get_preds(dl=dls.test_dl(files[:4]))
    info = read_export_info(learn.export())
    assert info["metrics"] == pytest.approx(final) and set(info["metrics"]) == {"valid_loss", "accuracy"}
    assert info["epochs_trained"] == 2


# ---- device syncs --------------------------------------------------------------------------------------
def test_training_does_not_sync_the_device_every_batch(monkeypatch):
    syncs = []
    for name in ("item", "tolist", "__bool__", "__float__"):
        real = getattr(torch.Tensor, name)

        def counting(self, *args, _real=real, **kwargs):
            # ember's reads only: torch's own Adam reads its step count, a tensor kept on the CPU
            if "/ember/" in sys._getframe(1).f_code.co_filename:
                syncs.append(1)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    learn = Learner(linear_dls(n=2000, bs=10), nn.Linear(1, 1), MSELossFlat(), quiet=True)
    # What TerminateOnNaN does on an accelerator (on a CPU it reads each loss: no sync to save there).
    learn.remove_cbs([cb for cb in learn.cbs if isinstance(cb, TerminateOnNaN)]).add_cb(TerminateOnNaN(16))
    learn.fit(1)  # 160 training batches, 40 validation batches
    assert len(learn.recorder.losses) == 160
    assert len(syncs) <= 160 / 16 + 5  # TerminateOnNaN every 16 batches, the losses at the epoch's end


def test_terminate_on_nan_reads_every_loss_on_a_cpu_and_every_16th_on_an_accelerator():
    learn = Learner(linear_dls(), nn.Linear(1, 1), MSELossFlat(), quiet=True)
    nan = next(cb for cb in learn.cbs if isinstance(cb, TerminateOnNaN))
    nan.before_fit()
    assert nan._every == 1
    learn.dls.device = torch.device("cuda")  # only read by before_fit here; nothing runs on it
    nan.before_fit()
    assert nan._every == 16


class Poison(Callback):
    order = -50

    def __init__(self, at: int):
        self.at = at

    def after_loss(self):
        if self.learn.training and self.learn.iter == self.at:
            self.learn.loss_grad = self.learn.loss_grad * float("nan")  # NaN gradients too
            self.learn.loss = self.learn.loss_grad.detach()


def test_terminate_on_nan_checking_every_batch_stops_before_the_nan_reaches_the_weights():
    steps = []

    class CountSteps(Callback):
        def after_step(self):
            steps.append(self.learn.iter)

    learn = Learner(linear_dls(n=512), nn.Linear(1, 1), MSELossFlat(), quiet=True)
    learn.remove_cbs([cb for cb in learn.cbs if isinstance(cb, TerminateOnNaN)])
    nan = TerminateOnNaN(every=1)
    with pytest.warns(RuntimeWarning, match=r"epoch 0, batch 5"):
        learn.fit(2, cbs=[nan, Poison(at=5), CountSteps()])
    assert nan.stopped_at == (0, 5) and steps == [0, 1, 2, 3, 4]
    assert all(torch.isfinite(p).all() for p in learn.model.parameters())


def test_terminate_on_nan_checking_lazily_names_the_batch_that_went_nan():
    steps = []

    class CountSteps(Callback):
        def after_step(self):
            steps.append(self.learn.iter)

    learn = Learner(linear_dls(n=512), nn.Linear(1, 1), MSELossFlat(), quiet=True)
    learn.remove_cbs([cb for cb in learn.cbs if isinstance(cb, TerminateOnNaN)])
    nan = TerminateOnNaN(every=4)  # checks at batches 3, 7, ...
    with pytest.warns(RuntimeWarning, match=r"epoch 0, batch 5"):
        learn.fit(2, cbs=[nan, Poison(at=5), CountSteps()])
    # As documented: the check at batch 7 stops before its step; batches 5 and 6 stepped on NaN.
    assert nan.stopped_at == (0, 5) and steps == [0, 1, 2, 3, 4, 5, 6]
    assert not torch.isfinite(learn.model.weight).all()
