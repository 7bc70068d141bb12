"""ember.callbacks: the loop's events and the callbacks that ship with ember."""

from ember.callbacks.channels_last import ChannelsLast
from ember.callbacks.core import (
    EVENTS,
    Callback,
    CancelBatchException,
    CancelEpochException,
    CancelException,
    CancelFitException,
    CancelTrainException,
    CancelValidException,
)
from ember.callbacks.logger import CSVLogger
from ember.callbacks.lr_finder import LRFinder, LRFindResult, SuggestedLRs, minimum, slide, steep, valley
from ember.callbacks.mixed_precision import MixedPrecision
from ember.callbacks.progress import ProgressCallback
from ember.callbacks.recorder import Recorder
from ember.callbacks.schedule import ParamScheduler, combined_cos, sched_cos, sched_lin
from ember.callbacks.tracker import (
    EarlyStoppingCallback,
    ReduceLROnPlateau,
    SaveModelCallback,
    TrackerCallback,
)
from ember.callbacks.training import GradientAccumulation, GradientClip, TerminateOnNaN

__all__ = [
    "EVENTS",
    "CSVLogger",
    "ChannelsLast",
    "Callback",
    "CancelBatchException",
    "CancelEpochException",
    "CancelException",
    "CancelFitException",
    "CancelTrainException",
    "CancelValidException",
    "EarlyStoppingCallback",
    "GradientAccumulation",
    "GradientClip",
    "LRFindResult",
    "LRFinder",
    "MixedPrecision",
    "ParamScheduler",
    "ProgressCallback",
    "Recorder",
    "ReduceLROnPlateau",
    "SaveModelCallback",
    "SuggestedLRs",
    "TerminateOnNaN",
    "TrackerCallback",
    "combined_cos",
    "minimum",
    "sched_cos",
    "sched_lin",
    "slide",
    "steep",
    "valley",
]
