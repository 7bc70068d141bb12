"""What the Learner needs from its data: the contracts a `dls` (and each of its loaders) must meet.

Every Learner needs `LoadersLike`: training and validation loaders, a device, `len` and indexing.
`ember.data.DataLoaders` meets it, and so does any small class with those five members, so an
application can bring its own loaders. The other protocols are extras that only some methods need;
each says which. A method whose extra is missing fails with `MissingContract`, naming the protocol,
the method and what to add.

A loader (`dls.train`, `dls[i]`) is an iterable of batches with a length: `LoaderLike`. Three attributes
are read when a loader has them, with these defaults:
- `n_inp` (1): the first `n_inp` tensors of a batch go to the model, the rest are its targets;
- `has_targets` (True): False says the loader's batches hold inputs only (an autoencoder, a VAE, a GAN's
  noise), and the loss is called `loss_func(pred, *xb)`: the inputs stand in as the targets, for the
  loss, the metrics and `get_preds`. A loader that has targets but yields batches without them (a test
  set) gives no loss at all;
- `first_batch` (0): the index of the first batch it yields (a pass resumed mid-epoch).

>>> class TwoLoaders:  # doctest: +SKIP
...     device = torch.device("cpu")
...     def __init__(self, train, valid): self.train, self.valid = train, valid
...     def __len__(self): return 2
...     def __getitem__(self, i): return (self.train, self.valid)[i]
>>> Learner(TwoLoaders(train, valid), model, loss_func=nn.MSELoss()).fit(1)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import torch

__all__ = [
    "CanAugment",
    "CanDecodePreds",
    "CanMakeTestLoader",
    "CanShowResults",
    "HasBlocks",
    "HasLossFunc",
    "LoaderLike",
    "LoadersLike",
    "MissingContract",
    "check_loaders",
    "require",
]


class LoaderLike(Protocol):
    """A re-iterable of batches (tuples of tensors) with a length; see the module for `n_inp`,
    `has_targets` and `first_batch`, read when present."""

    def __iter__(self) -> Iterator[Any]: ...
    def __len__(self) -> int: ...


class LoadersLike(Protocol):
    """What every Learner needs: `train` (fit), `valid` (validation after each epoch, when `len(dls) > 1`),
    `device` (where the model goes), `len(dls)` and `dls[i]` (`get_preds(ds_idx=i)`, `validate`)."""

    device: torch.device

    @property
    def train(self) -> LoaderLike: ...
    @property
    def valid(self) -> LoaderLike: ...
    def __len__(self) -> int: ...
    def __getitem__(self, i: int) -> LoaderLike: ...


@runtime_checkable
class HasLossFunc(Protocol):
    """Loaders that know the loss for their targets: `Learner(dls, model)` uses it when no `loss_func`
    is given (a DataBlock's loaders pick one from the target block)."""

    loss_func: Any


@runtime_checkable
class CanMakeTestLoader(Protocol):
    """Loaders that turn new raw items into a loader with the validation transforms: needed by
    `learn.predict` (and serving). `DataLoaders` built by a DataBlock have it."""

    def test_dl(self, items: Sequence[Any], with_getters: bool = True) -> LoaderLike: ...


@runtime_checkable
class HasBlocks(Protocol):
    """Loaders that know their blocks, `datasets.blocks` and `datasets.n_inp`: needed by `learn.predict`
    (decoding), `show_results`, `export` and `report`."""

    datasets: Any


@runtime_checkable
class CanAugment(Protocol):
    """Loaders that can give split `i` again with the training augmentations: needed by `learn.tta`."""

    def tta_dl(self, ds_idx: int) -> LoaderLike: ...


@runtime_checkable
class CanDecodePreds(Protocol):
    """Loaders that undo their batch transforms on predictions, as on targets (an image target
    denormalised): needed by `learn.predict`. `DataLoaders` built by a DataBlock have it."""

    def decode_preds(self, inputs: Any, preds: Any) -> Any: ...


@runtime_checkable
class CanShowResults(Protocol):
    """Loaders that can draw a batch beside the model's decoded predictions: needed by `show_results`."""

    def show_results(self, batch: Any, preds: Any, max_n: int, **kwargs: Any) -> Any: ...


class MissingContract(TypeError):
    """A Learner method needs something of its `dls` that they do not have."""


_HINT = "DataLoaders built by a DataBlock (or a factory such as ImageDataLoaders) have it"


def require(dls: Any, protocol: type, method: str, hint: str = _HINT) -> None:
    """Fail with `MissingContract` unless `dls` meets `protocol`, which `method` needs."""
    if isinstance(dls, protocol):
        return
    members = [m for m in _members(protocol) if not hasattr(dls, m)]
    raise MissingContract(
        f"{method} needs loaders that are {protocol.__name__} ({(protocol.__doc__ or '').split(':')[0]}): "
        f"{type(dls).__name__} has no {', '.join(sorted(members))}. {hint}"
    )


def _members(protocol: type) -> list[str]:
    own = [*vars(protocol).get("__annotations__", {}), *vars(protocol)]
    return sorted({m for m in own if not m.startswith("_")})


def check_loaders(dls: Any) -> None:
    """Fail at `Learner(...)` unless `dls` has what every Learner needs (`LoadersLike`)."""
    # Not isinstance: `valid` is allowed to be missing (or to raise) when there is no validation set.
    missing = [m for m in ("train", "device", "__len__", "__getitem__") if not hasattr(dls, m)]
    if missing:
        raise MissingContract(
            f"Learner needs loaders that are LoadersLike (train, valid, device, len, dls[i]): "
            f"{type(dls).__name__} has no {', '.join(missing)}. Wrap your loaders in "
            "DataLoaders(train_dl, valid_dl), or add the missing members (see ember.learner.contracts)"
        )
