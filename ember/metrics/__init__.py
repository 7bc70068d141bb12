"""Metrics for the epoch table: `metrics=[accuracy, F1Score()]`, `metrics=rmse`.

A metric is a plain function of `(pred, *yb)` averaged over batches, or a `Metric` that accumulates
over the validation pass (`AvgMetric`, `AccumMetric`, and the ready-made ones here, segmentation's
`Dice`, `DiceMulti`, `JaccardCoeff`, `JaccardCoeffMulti` and `foreground_acc` among them).
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
from ember.metrics.segmentation import (
    Dice,
    DiceMulti,
    ForegroundAcc,
    JaccardCoeff,
    JaccardCoeffMulti,
    foreground_acc,
    pixel_confusion,
)

__all__ = [
    "AccumMetric",
    "AvgMetric",
    "Dice",
    "DiceMulti",
    "F1Score",
    "ForegroundAcc",
    "JaccardCoeff",
    "JaccardCoeffMulti",
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
    "foreground_acc",
    "mae",
    "mse",
    "msle",
    "pixel_confusion",
    "rmse",
    "sweep_thresholds",
    "to_metric",
]
