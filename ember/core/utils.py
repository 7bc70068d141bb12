"""Devices, seeds, eval mode for a block, nested tensor structures and atomic file writes."""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "atomic_write",
    "default_device",
    "eval_mode",
    "find_bs",
    "listify",
    "set_seed",
    "to_cpu",
    "to_detach",
    "to_device",
]


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """`model` in eval mode (no dropout; BatchNorm uses its running statistics and leaves them alone)
    for the `with` block. Each module's own mode is restored after, not just the top one's: a frozen
    model may keep some BatchNorm layers in eval mode while the rest trains.

    >>> m = torch.nn.Sequential(torch.nn.Dropout())
    >>> with eval_mode(m):
    ...     m.training
    False
    >>> m.training
    True
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def default_device() -> torch.device:
    """The first CUDA GPU when there is one, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def set_seed(s: int, reproducible: bool = False) -> None:
    """Seed Python, NumPy and torch (every device); `reproducible` also makes cuDNN deterministic.

    >>> set_seed(42)
    """
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)
    if reproducible:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def listify(o: Any) -> list:
    """`None` -> [], a list/tuple -> list, anything else -> [o]."""
    if o is None:
        return []
    if isinstance(o, list | tuple):
        return list(o)
    return [o]


def plain(o: Any) -> str:
    """`o` as an error message shows it: paths and NumPy numbers as they print, anything else as its repr.

    >>> plain(Path("empty_dir")), plain(np.int64(11737)), plain("cat"), plain((Path("a.png"), 3))
    ('empty_dir', '11737', "'cat'", '(a.png, 3)')
    """
    if isinstance(o, os.PathLike | np.generic):  # not PosixPath('empty_dir'), np.int64(11737)
        return str(o)
    if isinstance(o, list | tuple) and len(o) <= 20:
        inner = ", ".join(plain(v) for v in o) + ("," if isinstance(o, tuple) and len(o) == 1 else "")
        return f"[{inner}]" if isinstance(o, list) else f"({inner})"
    return repr(o)


def _apply(f: Callable[[torch.Tensor], Any], o: Any) -> Any:
    """Apply `f` to every tensor in a nest of tuples, lists and dicts."""
    if isinstance(o, torch.Tensor):
        return f(o)
    if isinstance(o, dict):
        return {k: _apply(f, v) for k, v in o.items()}
    if isinstance(o, list | tuple):
        return type(o)(_apply(f, v) for v in o)
    return o


def to_device(o: Any, device: torch.device | str, non_blocking: bool = True) -> Any:
    """Move every tensor in `o` to `device` (a no-op for tensors already there)."""
    if isinstance(o, tuple) and all(type(t) is torch.Tensor for t in o):  # a plain batch, once per step
        return tuple(t.to(device, non_blocking=non_blocking) for t in o)
    return _apply(lambda t: t.to(device, non_blocking=non_blocking), o)


def to_detach(o: Any, cpu: bool = False) -> Any:
    """Detach every tensor in `o`, moving it to the CPU when `cpu`."""
    return _apply(lambda t: t.detach().cpu() if cpu else t.detach(), o)


def to_cpu(o: Any) -> Any:
    """Move every tensor in `o` to the CPU."""
    return _apply(lambda t: t.cpu(), o)


def find_bs(o: Any) -> int:
    """The batch size of a batch: the length of the first tensor found in it."""
    if isinstance(o, torch.Tensor):
        return o.shape[0] if o.ndim else 1
    if isinstance(o, dict):
        o = list(o.values())
    for v in o:
        return find_bs(v)
    raise ValueError("find_bs: the batch holds no tensor, so its size cannot be found")


def new_file_mode() -> int:
    """The mode `open(path, "w")` gives a new file, 0o666 less the umask: what a file written under a
    temporary name (`tempfile.mkstemp` makes it 0o600) is given before it is renamed into place."""
    mask = os.umask(0o022)  # reading the umask means setting it, so it is set straight back (as pip does)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[Any]:
    """Write a file under a temporary name in the same folder, then rename it into place.

    A crash mid-write leaves the previous file untouched and no partial file behind. The file gets the
    mode a plain `open(path, "w")` would give it (0o666 less the umask), not the temporary file's 0o600.

    >>> with atomic_write("model.safetensors") as f:  # doctest: +SKIP
    ...     f.write(data)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(fd, new_file_mode())
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
