"""What `ember info` prints: versions, the device, and where data sets, weights and outputs are kept.

>>> for name, value in environment():  # doctest: +SKIP
...     print(f"{name}: {value}")
ember: 0.1.0
...
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

import ember

# torch and the rest are imported inside the functions: the command line imports this module for its
# defaults, and `ember --help` should not wait for torch.

__all__ = ["DEMO_DIR", "TRAIN_DIR", "builtin_names", "environment", "weights_on_this_machine"]

TRAIN_DIR = Path("models")  # `ember train` writes export.pkl and report.html here unless --out says otherwise
DEMO_DIR = Path("ember-demo")  # `ember demo` writes its model and report here unless --out says otherwise


def environment(data: str | os.PathLike | None = None) -> list[tuple[str, str]]:
    """(name, value) rows: versions, device, folders, which built-in data sets and weights are here."""
    from importlib.metadata import version  # not `import torchvision`, which loads its model zoo for seconds

    import torch

    from ember.data._store import archive_dir, data_dir
    from ember.models.weights import hub_checkpoints_dir

    found, missing = weights_on_this_machine()
    root = data_dir(data)
    return [
        ("ember", ember.__version__),
        ("torch", torch.__version__),
        ("torchvision", version("torchvision")),
        ("python", f"{platform.python_version()} ({sys.executable})"),
        ("platform", platform.platform()),
        ("device", _device()),
        ("threads", f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs"),
        ("data folder", f"{root}{'' if root.is_dir() else ' (not created yet)'}"),
        ("built-in data", _builtin_status(root)),
        ("other data sets", ", ".join(_other_data(root)) or "none"),
        ("archives", str(archive_dir(None))),
        ("pretrained weights", f"looked for in {hub_checkpoints_dir()} and in pip packages"),
        ("weights found", ", ".join(found) or "none"),
        ("weights missing", ", ".join(missing) or "none"),
        ("ember train writes", f"{TRAIN_DIR}/export.pkl, {TRAIN_DIR}/report.html (relative; --out DIR)"),
        ("ember demo writes", f"{DEMO_DIR}/ (relative; --out DIR)"),
    ]


def _device() -> str:
    import torch

    from ember.core.utils import default_device

    device = default_device()
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)}, {torch.cuda.device_count()} GPU(s))"
    return "cpu (no CUDA GPU found)"


def builtin_names() -> list[str]:
    """The built-in data sets' names, from `URLs` ('mnist5k', 'lfw_faces', 'movielens')."""
    from ember.data.builtin import BUILTIN_SCHEME
    from ember.data.external import URLs

    urls = [v for k, v in vars(URLs).items() if k.isupper() and isinstance(v, str)]
    return [u.removeprefix(BUILTIN_SCHEME) for u in urls if u.startswith(BUILTIN_SCHEME)]


def _builtin_status(root: Path) -> str:
    return ", ".join(f"{n} ({'written' if (root / n).is_dir() else 'not yet'})" for n in builtin_names())


def _other_data(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    names = set(builtin_names())
    return sorted(
        p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in names
    )


def weights_on_this_machine() -> tuple[list[str], list[str]]:
    """(architectures whose pretrained weights are on this machine, those whose weights are not)."""
    from ember.models.registry import list_models, model_spec
    from ember.models.weights import WeightsNotFoundError, find_weights

    found, missing = [], []
    for name in list_models():
        try:
            find_weights(name, model_spec(name).weights)
            found.append(name)
        except WeightsNotFoundError:
            missing.append(name)
    return found, missing
