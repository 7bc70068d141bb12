"""Metrics: batch means, whole-epoch values, scikit-learn scores, and the Metric protocol."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import sklearn.metrics as skm
import torch
from torch import Tensor

import ember.metrics
from ember.metrics import (
    AccumMetric,
    AvgMetric,
    F1Score,
    Metric,
    Precision,
    R2Score,
    Recall,
    RocAuc,
    RocAucBinary,
    accuracy,
    accuracy_multi,
    error_rate,
    exp_rmspe,
    mae,
    mse,
    msle,
    rmse,
    to_metric,
)


def run_epoch(metric: Metric | object, pred: Tensor, targ: Tensor, sizes: list[int]) -> float | None:
    """Feed `pred`/`targ` to a fresh copy of `metric` in batches of the given sizes, as the Recorder does."""
    m = to_metric(metric)
    m.reset()
    for p, t in zip(pred.split(sizes), targ.split(sizes)):
        with torch.no_grad():
            m.accumulate(p, t)
    return m.value


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- batch-mean functions ------------------------------------------------------------------------
def test_accuracy_counts_argmax_hits_by_hand():
    pred = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    targ = torch.tensor([1, 0, 0, 2])  # argmaxes 1, 0, 2, 0: two hits out of four
    assert accuracy(pred, targ).item() == pytest.approx(0.5)
    assert error_rate(pred, targ).item() == pytest.approx(0.5)
    assert accuracy(pred.T, targ, axis=0).item() == pytest.approx(0.5)


def test_error_rate_is_one_minus_accuracy():
    pred, targ = torch.randn(50, 4, generator=seeded()), torch.randint(0, 4, (50,), generator=seeded(1))
    acc = accuracy(pred, targ).item()
    assert acc not in (0.0, 1.0)
    assert error_rate(pred, targ).item() == pytest.approx(1 - acc)


def test_accuracy_accepts_a_column_of_targets_without_broadcasting():
    pred = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    targ = torch.tensor([[1], [1], [1]])  # (bs, 1): broadcasting would compare 3x3 pairs
    assert accuracy(pred, targ).item() == pytest.approx(2 / 3)


def test_accuracy_with_mismatched_item_counts_says_so():
    with pytest.raises(ValueError, match="different numbers of items"):
        accuracy(torch.randn(4, 3), torch.zeros(5, dtype=torch.long))


def test_accuracy_multi_thresholds_sigmoid_outputs_elementwise():
    logits = torch.tensor([[2.0, -1.0, 0.0], [-3.0, 0.5, 1.0]])  # sigmoid ~ .88 .27 .5 / .05 .62 .73
    targ = torch.tensor([[1, 0, 1], [0, 0, 1]])
    # > 0.5: [1 0 0], [0 1 1] -> hits 1 1 0 1 0 1 = 4/6
    assert accuracy_multi(logits, targ).item() == pytest.approx(4 / 6)
    # > 0.2: [1 1 1], [0 1 1] -> hits 1 0 1 1 0 1 = 4/6; > 0.7: [1 0 0], [0 0 1] -> 1 1 0 1 1 1 = 5/6
    assert accuracy_multi(logits, targ, thresh=0.7).item() == pytest.approx(5 / 6)
    assert accuracy_multi(logits.sigmoid(), targ, thresh=0.7, sigmoid=False).item() == pytest.approx(5 / 6)


def test_partial_accuracy_multi_keeps_its_name_and_its_threshold():
    logits = torch.tensor([[2.0, -1.0, 0.0], [-3.0, 0.5, 1.0]])
    targ = torch.tensor([[1, 0, 1], [0, 0, 1]])
    m = to_metric(partial(accuracy_multi, thresh=0.7))
    assert m.name == "accuracy_multi"
    m.reset()
    m.accumulate(logits, targ)
    assert m.value == pytest.approx(5 / 6)  # the 0.5 default would give 4/6


def test_mse_mae_msle_match_sklearn():
    g = seeded()
    pred, targ = torch.rand(20, 1, generator=g) * 3, torch.rand(20, generator=g) * 3  # (bs, 1) vs (bs,)
    p, t = pred.view(-1).numpy(), targ.numpy()
    assert mse(pred, targ).item() == pytest.approx(skm.mean_squared_error(t, p), rel=1e-5)
    assert mae(pred, targ).item() == pytest.approx(skm.mean_absolute_error(t, p), rel=1e-5)
    assert msle(pred, targ).item() == pytest.approx(skm.mean_squared_log_error(t, p), rel=1e-5)


# ---- AvgMetric -----------------------------------------------------------------------------------
def test_avg_metric_over_unequal_batches_equals_the_whole_epoch_value():
    g = seeded()
    pred, targ = torch.randn(10, 3, generator=g), torch.randint(0, 3, (10,), generator=g)
    batches = [pred.split([5, 3, 2]), targ.split([5, 3, 2])]
    mean_of_batches = np.mean([accuracy(p, t).item() for p, t in zip(*batches)])
    whole = accuracy(pred, targ).item()
    assert mean_of_batches != pytest.approx(whole)  # so the weighting below is really tested
    assert run_epoch(accuracy, pred, targ, [5, 3, 2]) == pytest.approx(whole)


def test_avg_metric_keeps_its_sum_as_a_tensor_until_value_is_read():
    m = AvgMetric(mae)
    m.accumulate(torch.tensor([1.0, 2.0], requires_grad=True), torch.tensor([0.0, 0.0]))
    assert isinstance(m.total, Tensor) and not m.total.requires_grad  # no .item() sync per batch
    assert m.value == pytest.approx(1.5)


def test_metrics_are_none_before_any_batch_and_reset_forgets_the_last_epoch():
    labels = (torch.tensor([[0.2, 0.8], [0.9, 0.1]]), torch.tensor([1, 0]))
    values = (torch.tensor([[0.2], [0.9]]), torch.tensor([1.0, 0.0]))
    for metric, batch in ((AvgMetric(mse), values), (rmse, values), (F1Score(), labels), (R2Score(), values)):
        m = to_metric(metric)
        assert m.value is None, m.name
        m.accumulate(*batch)
        assert m.value is not None, m.name
        m.reset()
        assert m.value is None, m.name


def test_avg_metric_takes_the_name_of_the_function_or_the_given_one():
    assert AvgMetric(mae).name == "mae"
    assert AvgMetric(partial(partial(accuracy, axis=1))).name == "accuracy"
    assert AvgMetric(mae, name="l1").name == "l1"


# ---- to_metric -----------------------------------------------------------------------------------
def test_to_metric_copies_a_metric_so_two_learners_never_share_state():
    a, b = to_metric(rmse), to_metric(rmse)
    assert a is not rmse and b is not a and a.name == "rmse"
    a.accumulate(torch.tensor([3.0]), torch.tensor([0.0]))
    assert a.value == pytest.approx(3.0)
    assert b.value is None and rmse.value is None
    f1a, f1b = to_metric(F1Score()), to_metric(F1Score())
    f1a.accumulate(torch.tensor([[0.0, 1.0]]), torch.tensor([1]))
    assert f1b.value is None


def test_to_metric_wraps_a_plain_function_in_an_avg_metric():
    m = to_metric(error_rate)
    assert isinstance(m, AvgMetric) and m.name == "error_rate"


def test_to_metric_rejects_something_that_is_not_a_metric():
    with pytest.raises(TypeError, match="Metric or a function"):
        to_metric(0.5)


# ---- whole-epoch regression metrics --------------------------------------------------------------
def test_rmse_is_computed_over_the_whole_epoch_not_averaged_per_batch():
    pred = torch.tensor([0.0, 0.0, 0.0, 0.0])
    targ = torch.tensor([1.0, 1.0, 3.0, 3.0])  # batch rmses 1 and 3, mean 2; global sqrt(5)
    assert run_epoch(rmse, pred, targ, [2, 2]) == pytest.approx(math.sqrt(5))
    assert run_epoch(rmse, pred, targ, [2, 2]) != pytest.approx(2.0)
    assert run_epoch(rmse, pred, targ, [4]) == pytest.approx(
        skm.root_mean_squared_error(targ.numpy(), pred.numpy())
    )


def test_exp_rmspe_matches_its_formula_over_the_whole_epoch():
    g = seeded()
    pred, targ = torch.rand(12, 1, generator=g) * 5, torch.rand(12, generator=g) * 5  # log-scale values
    p, t = np.exp(pred.view(-1).double().numpy()), np.exp(targ.double().numpy())
    expected = np.sqrt(np.mean(((t - p) / t) ** 2))
    assert run_epoch(exp_rmspe, pred, targ, [7, 5]) == pytest.approx(expected, rel=1e-5)
    assert exp_rmspe.name == "exp_rmspe"


def test_r2_score_over_batches_matches_sklearn_on_the_whole_epoch():
    g = seeded()
    targ = torch.randn(30, generator=g)
    pred = (targ + 0.5 * torch.randn(30, generator=g)).unsqueeze(1)  # (bs, 1) model output
    expected = skm.r2_score(targ.numpy(), pred.view(-1).numpy())
    assert run_epoch(R2Score(), pred, targ, [10, 10, 10]) == pytest.approx(expected, rel=1e-5)


# ---- scikit-learn label scores -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("metric", "sk_func"),
    [(F1Score, skm.f1_score), (Precision, skm.precision_score), (Recall, skm.recall_score)],
)
def test_label_scores_match_sklearn_on_binary_and_multiclass_epochs(metric, sk_func):
    g = seeded()
    pred2, targ2 = torch.randn(40, 2, generator=g), torch.randint(0, 2, (40,), generator=g)
    assert run_epoch(metric(), pred2, targ2, [16, 16, 8]) == pytest.approx(
        sk_func(targ2.numpy(), pred2.argmax(1).numpy())
    )
    pred4, targ4 = torch.randn(40, 4, generator=g), torch.randint(0, 4, (40,), generator=g)
    assert run_epoch(metric(average="macro"), pred4, targ4, [16, 24]) == pytest.approx(
        sk_func(targ4.numpy(), pred4.argmax(1).numpy(), average="macro")
    )


def test_f1_score_by_hand():
    # predicted labels 1 1 0 0 vs targets 1 0 1 0: tp=1 fp=1 fn=1 -> precision = recall = f1 = 1/2
    pred = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    targ = torch.tensor([1, 0, 1, 0])
    for m in (F1Score(), Precision(), Recall()):
        assert run_epoch(m, pred, targ, [4]) == pytest.approx(0.5), m.name


def test_sklearn_metrics_carry_the_sklearn_names():
    names = [m.name for m in (F1Score(), Precision(), Recall(), RocAuc(), RocAucBinary(), R2Score())]
    assert names == [
        "f1_score",
        "precision_score",
        "recall_score",
        "roc_auc_score",
        "roc_auc_score",
        "r2_score",
    ]


def test_a_sklearn_error_names_the_metric_and_keeps_the_cause():
    pred, targ = torch.randn(6, 3, generator=seeded()), torch.tensor([0, 1, 2, 0, 1, 2])
    with pytest.raises(ValueError, match="'f1_score'.*average") as info:
        run_epoch(F1Score(), pred, targ, [6])  # average='binary' on three classes
    assert info.value.__cause__ is not None


# ---- ROC AUC -------------------------------------------------------------------------------------
def test_roc_auc_multiclass_scores_softmax_probabilities_like_sklearn():
    g = seeded()
    pred, targ = torch.randn(60, 3, generator=g), torch.randint(0, 3, (60,), generator=g)
    expected = skm.roc_auc_score(targ.numpy(), pred.softmax(1).numpy(), multi_class="ovr")
    assert run_epoch(RocAuc(), pred, targ, [25, 35]) == pytest.approx(expected)


def test_roc_auc_on_two_columns_scores_the_positive_class():
    g = seeded()
    pred, targ = torch.randn(40, 2, generator=g), torch.randint(0, 2, (40,), generator=g)
    expected = skm.roc_auc_score(targ.numpy(), pred.softmax(1)[:, 1].numpy())
    assert expected != pytest.approx(skm.roc_auc_score(targ.numpy(), pred.softmax(1)[:, 0].numpy()))
    assert run_epoch(RocAuc(), pred, targ, [20, 20]) == pytest.approx(expected)
    assert run_epoch(RocAucBinary(), pred, targ, [20, 20]) == pytest.approx(expected)


def test_roc_auc_binary_on_one_logit_per_item_uses_the_sigmoid():
    pred = torch.tensor([[-2.0], [0.5], [1.0], [-0.5], [3.0]])
    targ = torch.tensor([0, 0, 1, 1, 1])
    # positives score 1.0, -0.5, 3.0 against negatives -2.0, 0.5: 5 of 6 pairs ranked right
    assert run_epoch(RocAucBinary(), pred, targ, [2, 3]) == pytest.approx(5 / 6)


def test_roc_auc_with_one_class_in_the_targets_warns_naming_the_metric_and_gives_nan():
    pred, targ = torch.randn(8, 2, generator=seeded()), torch.ones(8, dtype=torch.long)
    with pytest.warns(UserWarning, match="roc_auc_score.*only class"):
        value = run_epoch(RocAucBinary(), pred, targ, [4, 4])
    assert math.isnan(value)
    with pytest.warns(UserWarning, match="roc_auc_score"):
        assert math.isnan(run_epoch(RocAuc(), torch.randn(8, 3), torch.zeros(8, dtype=torch.long), [8]))


# ---- AccumMetric ---------------------------------------------------------------------------------
def test_accum_metric_applies_sigmoid_then_threshold_per_item():
    seen = []

    def record(preds, targs):
        seen.append(preds)
        return (preds == targs.bool()).float().mean()

    m = AccumMetric(record, activation="sigmoid", thresh=0.7)
    logits, targ = torch.tensor([[2.0, 0.5], [-1.0, 0.9]]), torch.tensor([[1, 1], [0, 1]])
    assert run_epoch(m, logits, targ, [1, 1]) == pytest.approx(3 / 4)  # sigmoids .88 .62 .27 .71
    assert seen[0].tolist() == [True, False, False, True]


def test_accum_metric_softmax_and_argmax_use_dim_argmax():
    m = AccumMetric(lambda p, t: (p == t).float().mean(), dim_argmax=1, activation="softmax")
    pred = torch.tensor([[[0.0, 5.0]], [[5.0, 0.0]]]).transpose(1, 2)  # (bs=2, c=2, 1): classes on dim 1
    assert run_epoch(m, pred, torch.tensor([[1], [1]]), [2]) == pytest.approx(0.5)


def test_accum_metric_passes_numpy_in_sklearn_order_when_asked():
    calls = []

    def first_minus_second(a, b):
        calls.append((type(a), type(b)))
        return float((a - b).sum())

    pred, targ = torch.tensor([1.0, 2.0]), torch.tensor([0.0, 0.0])
    assert run_epoch(AccumMetric(first_minus_second), pred, targ, [2]) == pytest.approx(3.0)
    assert run_epoch(AccumMetric(first_minus_second, invert_arg=True, to_np=True), pred, targ, [2]) == -3.0
    assert calls == [(Tensor, Tensor), (np.ndarray, np.ndarray)]


def test_accum_metric_keeps_detached_predictions():
    m = AccumMetric(lambda p, t: p.sum())
    m.accumulate(torch.ones(3, requires_grad=True), torch.zeros(3))
    assert not m.preds[0].requires_grad and m.preds[0].device.type == "cpu"


def test_accum_metric_rejects_an_unknown_activation():
    with pytest.raises(ValueError, match="'softmax'"):
        AccumMetric(mse, activation="relu")


# ---- the package surface and the Learner ---------------------------------------------------------
def test_the_package_exports_the_metric_protocol_and_the_course_names():
    for name in ("Metric", "AvgMetric", "AccumMetric", "to_metric", "accuracy", "rmse", "F1Score", "RocAuc"):
        assert name in ember.metrics.__all__
        assert hasattr(ember.metrics, name)


def test_learner_validate_reports_metrics_computed_over_the_whole_validation_set():
    from conftest import blobs_dls, mlp

    from ember.basics import CrossEntropyLossFlat, Learner

    metrics = [accuracy, F1Score(average="macro")]
    learn = Learner(blobs_dls(n=300, bs=16), mlp(), CrossEntropyLossFlat(), metrics=metrics, quiet=True)
    _, acc, f1 = learn.validate()
    probs, targs = learn.get_preds()
    assert acc == pytest.approx((probs.argmax(1) == targs).float().mean().item(), abs=1e-6)
    assert f1 == pytest.approx(skm.f1_score(targs.numpy(), probs.argmax(1).numpy(), average="macro"))


class _CountBatches:
    """A callback counting the batches the loop ran."""

    order = 0

    def __init__(self) -> None:
        self.n = 0

    def before_batch(self) -> None:
        self.n += 1


def test_a_binary_f1_on_multiclass_data_fails_before_any_batch_saying_which_average_to_pass():
    from conftest import blobs_dls, mlp

    from ember.basics import CrossEntropyLossFlat, Learner

    counter = _CountBatches()
    learn = Learner(
        blobs_dls(n=300, n_classes=3),
        mlp(),
        CrossEntropyLossFlat(),
        metrics=[accuracy, F1Score()],
        quiet=True,
    )
    learn.add_cb(counter)
    with pytest.raises(
        ValueError, match=r"f1_score.*average='binary'.*3 classes.*F1Score\(average='macro'\)"
    ):
        learn.fit(1)
    assert counter.n == 0


def test_binary_data_keeps_the_binary_default_and_a_vocabulary_counts_the_classes(df_binary_and_three):
    from conftest import mlp

    from ember.basics import CrossEntropyLossFlat, Learner

    binary, three = df_binary_and_three
    learn = Learner(binary, mlp(1, 2), CrossEntropyLossFlat(), metrics=[F1Score(), Precision()], quiet=True)
    learn.fit(1)
    assert 0 <= learn.recorder.value("f1_score") <= 1
    learn = Learner(three, mlp(1, 3), CrossEntropyLossFlat(), metrics=Recall(), quiet=True)
    with pytest.raises(ValueError, match=r"recall_score.*Recall\(average='macro'\)"):
        learn.fit(1)


@pytest.fixture
def df_binary_and_three():
    """DataBlock loaders with a vocabulary of two labels, and of three."""
    import pandas as pd

    from ember.basics import CategoryBlock, ColReader, DataBlock, RegressionBlock

    def dls(labels):
        df = pd.DataFrame({"x": [float(i % len(labels)) for i in range(60)]})
        df["y"] = [labels[i % len(labels)] for i in range(60)]
        get_x = lambda row: [row["x"]]  # noqa: E731 - one feature per item, (bs, 1)
        dblock = DataBlock(blocks=(RegressionBlock, CategoryBlock), get_x=get_x, get_y=ColReader("y"))
        return dblock.dataloaders(df, bs=8, num_workers=0, device="cpu")

    return dls(["no", "yes"]), dls(["a", "b", "c"])
