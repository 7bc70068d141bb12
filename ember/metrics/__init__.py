"""Metrics for the epoch table: `metrics=[accuracy, F1Score()]`, `metrics=rmse`.

A metric is a plain function of `(pred, *yb)` averaged over batches, or a `Metric` that accumulates
over the validation pass (`AvgMetric`, `AccumMetric`, and the ready-made ones here).
"""

from ember.metrics.classification import (
    F1Score,
    Precision,
    Recall,
    RocAuc,
    RocAucBinary,
    ThresholdSweep,
    accuracy,
    accuracy_multi,
    error_rate,
    sweep_thresholds,
)
from ember.metrics.core import AccumMetric, AvgMetric, Metric, check_metrics, flatten_check, to_metric
from ember.metrics.regression import R2Score, RootMeanMetric, exp_rmspe, mae, mse, msle, rmse

__all__ = [
    "AccumMetric",
    "AvgMetric",
    "F1Score",
    "Metric",
    "Precision",
    "R2Score",
    "Recall",
    "RocAuc",
    "RocAucBinary",
    "RootMeanMetric",
    "ThresholdSweep",
    "accuracy",
    "accuracy_multi",
    "check_metrics",
    "error_rate",
    "exp_rmspe",
    "flatten_check",
    "mae",
    "mse",
    "msle",
    "rmse",
    "sweep_thresholds",
    "to_metric",
]
