"""The public surface: every module's __all__ is real, and no name means two things."""

from __future__ import annotations

import importlib
import pkgutil

import ember

COURSE_NAMES = """
Learner DataLoaders DataLoader Callback Recorder accuracy error_rate accuracy_multi mse rmse mae exp_rmspe
R2Score F1Score Precision Recall RocAuc CrossEntropyLossFlat BCEWithLogitsLossFlat MSELossFlat L1LossFlat
LabelSmoothingCrossEntropy Adam SGD Module Embedding sigmoid_range SigmoidRange set_seed EarlyStoppingCallback
SaveModelCallback ReduceLROnPlateau CSVLogger GradientClip GradientAccumulation TerminateOnNaN
CancelBatchException CancelEpochException CancelFitException CancelTrainException CancelValidException
valley steep minimum slide
""".split()


def all_modules():
    for info in pkgutil.walk_packages(ember.__path__, "ember."):
        if info.name != "ember.demo":
            yield importlib.import_module(info.name)


def test_every_name_in_every_all_exists():
    for mod in all_modules():
        for name in getattr(mod, "__all__", []):
            assert hasattr(mod, name), f"{mod.__name__}.__all__ lists {name!r}, which it does not define"


def test_no_two_modules_export_the_same_name_with_different_meanings():
    owners: dict[str, tuple[str, object]] = {}
    for mod in all_modules():
        for name in getattr(mod, "__all__", []):
            obj = getattr(mod, name)
            if name in owners:
                first_mod, first_obj = owners[name]
                assert obj is first_obj, f"{name!r} means different things in {first_mod} and {mod.__name__}"
            else:
                owners[name] = (mod.__name__, obj)


def test_one_import_line_gives_the_course_names():
    namespace: dict = {}
    exec("from ember.basics import *", namespace)
    missing = [n for n in COURSE_NAMES if n not in namespace]
    assert not missing, f"ember.basics does not export {missing}"
