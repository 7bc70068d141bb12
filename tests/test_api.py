"""The public surface: every module's __all__ is real, and no name means two things."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

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


# ---- import time: what a script pays before its first line -----------------------------------------
HEAVY = ["sklearn", "torchvision", "matplotlib.pyplot", "fastapi", "uvicorn"]


def _loaded_after(code: str) -> list[str]:
    """Which of the HEAVY packages a fresh interpreter has imported after running `code`."""
    check = f"import sys; {code}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    return subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, check=True
    ).stdout.split()


def test_importing_vision_all_loads_no_sklearn_torchvision_plotting_or_server():
    assert _loaded_after("from ember.vision.all import *") == []


def test_importing_the_command_line_loads_no_torch():
    assert _loaded_after("import ember.cli; assert 'torch' not in sys.modules") == []


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"])
def test_the_resnet_weight_files_ember_looks_for_are_torchvisions(arch):
    tvm = pytest.importorskip("torchvision.models")
    from ember.models import model_spec
    from ember.models.resnet import torchvision_weights

    enum = getattr(tvm, f"ResNet{arch.removeprefix('resnet')}_Weights")
    choices = (
        [enum.IMAGENET1K_V1] if arch in ("resnet18", "resnet34") else [enum.IMAGENET1K_V2, enum.IMAGENET1K_V1]
    )
    assert model_spec(arch).weights == torchvision_weights(*choices)


# ---- error messages show paths and numbers as a person writes them ----------------------------------
def test_an_empty_folder_is_named_by_its_path_not_its_repr(tmp_path):
    from ember.data import DataBlock, DataError
    from ember.vision.core import get_image_files

    with pytest.raises(DataError) as e:
        DataBlock(get_items=get_image_files).datasets(tmp_path)
    assert f"no items found in {tmp_path} by get_image_files" in str(e.value)
    assert "PosixPath" not in str(e.value)


def test_a_labeller_that_fails_names_the_file_by_its_path(tmp_path):
    from ember.data import DataError, RegexLabeller

    with pytest.raises(DataError, match=r"\(from /data/cat\.png\)") as e:
        RegexLabeller(r"^(\d+)\.png$")(Path("/data/cat.png"))
    assert "PosixPath" not in str(e.value)


def test_a_bad_rating_is_shown_with_its_row_number_not_a_numpy_repr():
    import pandas as pd

    from ember.collab import CollabDataLoaders

    ratings = pd.DataFrame(
        {"user": [1, 2, 3], "item": [4, 5, 6], "rating": [1.0, "five", 2.0]}, index=[11735, 11736, 11737]
    )  # rows of a bigger table: an index of numpy integers, not a RangeIndex
    with pytest.raises(ValueError) as e:
        CollabDataLoaders.from_df(ratings)
    assert "the first is 'five' (at row 11736)" in str(e.value) and "np." not in str(e.value)


def test_plain_prints_paths_and_numpy_numbers_as_they_print():
    import numpy as np

    from ember.core.utils import plain

    assert plain(Path("empty_dir")) == "empty_dir" and plain(np.int64(11737)) == "11737"
    assert plain([Path("a.png"), "cat", np.float32(0.5)]) == "[a.png, 'cat', 0.5]"
