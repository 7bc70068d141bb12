"""The training loop: events, cancellation, callback errors, and a learner that really trains."""

from __future__ import annotations

import pytest
import torch
from conftest import blobs_dls, linear_dls, mlp
from torch import nn

from ember.basics import (
    EVENTS,
    Callback,
    CancelBatchException,
    CancelEpochException,
    CancelFitException,
    CancelValidException,
    CrossEntropyLossFlat,
    Learner,
    MSELossFlat,
    accuracy,
)


class EventLog(Callback):
    """Records every event it sees, before any other callback can cancel it."""

    order = -1000

    def __init__(self) -> None:
        self.seen: list[str] = []


for _e in EVENTS:
    setattr(EventLog, _e, lambda self, e=_e: self.seen.append(e))


def test_a_linear_regression_learner_learns_the_line():
    torch.manual_seed(0)  # the init and the shuffling; other tests in the worker move the global RNG
    learn = Learner(linear_dls(), nn.Linear(1, 1), loss_func=MSELossFlat(), quiet=True)
    learn.fit_one_cycle(10, 0.3, wd=0)  # weight decay would pull w below 3
    w, b = learn.model.weight.item(), learn.model.bias.item()
    assert w == pytest.approx(3, abs=0.05) and b == pytest.approx(-2, abs=0.05)
    assert learn.recorder.values[-1][1] < 0.01  # valid loss


def test_a_classifier_reaches_high_accuracy_and_records_it_per_epoch():
    learn = Learner(blobs_dls(), mlp(), loss_func=CrossEntropyLossFlat(), metrics=accuracy, quiet=True)
    learn.fit_one_cycle(3, 1e-2)
    assert len(learn.recorder.values) == 3
    assert learn.recorder.value("accuracy") > 0.95
    assert learn.recorder.metric_names == ["epoch", "train_loss", "valid_loss", "accuracy", "time"]


def test_events_come_in_the_documented_order_for_one_batch():
    log = EventLog()
    dls = linear_dls(n=40, bs=32)  # 1 train batch (32 of 32), 1 valid batch (8)
    learn = Learner(dls, nn.Linear(1, 1), loss_func=MSELossFlat(), cbs=log, quiet=True)
    learn.fit(1)
    batch = ["before_batch", "after_pred", "after_loss"]
    train_batch = [*batch, "before_backward", "after_backward", "after_step", "after_batch"]
    expected = ["before_fit", "before_epoch", "before_train", *train_batch, "after_train", "before_validate"]
    expected += [*batch, "after_batch", "after_validate", "after_epoch", "after_fit", "cleanup"]
    assert log.seen == expected


def test_a_cancelled_batch_still_runs_after_cancel_batch_and_after_batch():
    class CancelAfterPred(Callback):
        def after_pred(self):
            if self.learn.training:
                raise CancelBatchException()

    log = EventLog()
    learn = Learner(
        linear_dls(n=40), nn.Linear(1, 1), MSELossFlat(), cbs=[CancelAfterPred(), log], quiet=True
    )
    before = learn.model.weight.detach().clone()
    learn.fit(1)
    i = log.seen.index("after_pred")
    assert log.seen[i + 1 : i + 3] == ["after_cancel_batch", "after_batch"]
    assert "before_backward" not in log.seen
    assert torch.equal(before, learn.model.weight)  # no step was taken


def test_cancel_fit_runs_after_cancel_fit_and_after_fit_and_stops():
    class StopAtEpoch1(Callback):
        def before_epoch(self):
            if self.learn.epoch == 1:
                raise CancelFitException()

    log = EventLog()
    learn = Learner(linear_dls(n=40), nn.Linear(1, 1), MSELossFlat(), cbs=[StopAtEpoch1(), log], quiet=True)
    learn.fit(5)
    assert log.seen.count("before_epoch") == 2
    assert log.seen[-3:] == ["after_cancel_fit", "after_fit", "cleanup"]
    assert len(learn.recorder.values) == 1


def test_cancel_validate_skips_validation_but_the_epoch_goes_on():
    class NoValid(Callback):
        def before_validate(self):
            raise CancelValidException()

    log = EventLog()
    learn = Learner(linear_dls(n=40), nn.Linear(1, 1), MSELossFlat(), cbs=[NoValid(), log], quiet=True)
    learn.fit(2)
    assert log.seen.count("after_cancel_validate") == 2
    assert log.seen.count("after_epoch") == 2
    assert learn.recorder.values[-1][1] is None


def test_cancel_epoch_moves_on_to_the_next_epoch():
    class SkipTrain(Callback):
        def before_train(self):
            raise CancelEpochException()

    log = EventLog()
    learn = Learner(linear_dls(n=40), nn.Linear(1, 1), MSELossFlat(), cbs=[SkipTrain(), log], quiet=True)
    learn.fit(3)
    assert log.seen.count("after_cancel_epoch") == 3 and "before_validate" not in log.seen


def test_a_misspelt_hook_fails_when_the_callback_class_is_defined():
    with pytest.raises(TypeError, match="after_bacth"):

        class Typo(Callback):
            def after_bacth(self):
                pass


def test_emitting_an_unknown_event_is_an_error():
    learn = Learner(linear_dls(n=40), nn.Linear(1, 1), MSELossFlat(), quiet=True)
    with pytest.raises(ValueError, match="unknown event 'after_everything'"):
        learn("after_everything")


def test_an_error_inside_a_callback_names_the_callback_and_the_event():
    class Broken(Callback):
        def after_loss(self):
            raise KeyError("boom")

    learn = Learner(linear_dls(n=40), nn.Linear(1, 1), MSELossFlat(), cbs=Broken(), quiet=True)
    with pytest.raises(KeyError) as info:
        learn.fit(1)
    assert "callback Broken, event after_loss" in "\n".join(info.value.__notes__)


def test_passing_a_callback_class_instead_of_an_instance_says_so():
    with pytest.raises(TypeError, match=r"pass EventLog\(\)"):
        Learner(linear_dls(n=40), nn.Linear(1, 1), MSELossFlat(), cbs=EventLog)


def test_show_loop_lists_each_event_with_its_callbacks(capsys):
    learn = Learner(linear_dls(n=40), nn.Linear(1, 1), MSELossFlat(), quiet=True)
    learn.show_loop()
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(EVENTS)
    after_batch = next(line for line in lines if line.startswith("after_batch"))
    assert "Recorder" in after_batch and "ProgressCallback" in after_batch


def test_callbacks_run_in_order_of_their_order_attribute():
    calls = []

    class Late(Callback):
        order = 100

        def before_fit(self):
            calls.append("late")

    class Early(Callback):
        order = -100

        def before_fit(self):
            calls.append("early")

    learn = Learner(linear_dls(n=40), nn.Linear(1, 1), MSELossFlat(), cbs=[Late(), Early()], quiet=True)
    learn.fit(1)
    assert calls == ["early", "late"]


def test_fit_callbacks_are_removed_afterwards():
    learn = Learner(linear_dls(n=40), nn.Linear(1, 1), MSELossFlat(), quiet=True)
    n = len(learn.cbs)
    learn.fit(1, cbs=EventLog())
    assert len(learn.cbs) == n


def test_a_learner_without_a_loss_function_says_how_to_give_one():
    with pytest.raises(ValueError, match="loss_func="):
        Learner(linear_dls(n=40), nn.Linear(1, 1))


def test_the_epoch_table_prints_one_row_per_epoch_and_quiet_prints_nothing(capsys):
    learn = Learner(linear_dls(n=64), nn.Linear(1, 1), MSELossFlat(), metrics=accuracy)
    learn.fit(2)
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["epoch", "train_loss", "valid_loss", "accuracy", "time"]
    assert [line.split()[0] for line in out[1:]] == ["0", "1"]
    quiet = Learner(linear_dls(n=64), nn.Linear(1, 1), MSELossFlat(), quiet=True)
    quiet.fit(2)
    assert capsys.readouterr().out == ""
    with learn.no_logging():
        learn.fit(1)
    assert capsys.readouterr().out == ""


def test_overriding_a_step_method_in_a_subclass_changes_training():
    class NoStep(Learner):
        def step(self):
            pass

    learn = NoStep(linear_dls(n=40), nn.Linear(1, 1), MSELossFlat(), quiet=True)
    before = learn.model.weight.detach().clone()
    learn.fit(2)
    assert torch.equal(before, learn.model.weight)
