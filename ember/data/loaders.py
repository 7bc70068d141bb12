"""Loaders that feed the Learner: batches moved to the device, with batch transforms run there.

`DataLoader` batches an indexable dataset (tensor datasets are sliced, not collated item by item);
`DeviceLoader` wraps any re-iterable of ready-made batches; `DataLoaders` holds train and valid.

A batch's first `n_inp` tensors are the model's inputs and the rest its targets. `has_targets=False`
says the batches hold inputs only (an autoencoder, a VAE): the Learner then calls the loss
`loss_func(pred, *xb)`. A loader with targets whose batches lack them (a test set) gets no loss.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils.data import DataLoader as TorchDataLoader
from torch.utils.data import TensorDataset

from ember.core.utils import default_device, to_device

__all__ = ["DataLoader", "DataLoaders", "DeviceLoader"]

BatchTfm = Callable[[Any], Any]


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with `n` torch threads, then restore the setting (the model's step keeps it)."""
    before = torch.get_num_threads()
    if n is None or n == before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class DeviceLoader:
    """Iterate `batches`, moving each to `device` and applying `batch_tfms` there.

    >>> dl = DeviceLoader([(torch.zeros(4, 2), torch.ones(4))], device="cpu")
    """

    def __init__(
        self,
        batches: Iterable,
        device: torch.device | str | None = None,
        batch_tfms: Sequence[BatchTfm] = (),
        n_inp: int = 1,
        has_targets: bool = True,
    ) -> None:
        self.batches = batches
        self.device = torch.device(device) if device is not None else default_device()
        self.batch_tfms = list(batch_tfms)
        self.n_inp, self.has_targets = n_inp, has_targets

    def raw_batches(self) -> Iterable:
        """The batches before they are moved and transformed."""
        return self.batches

    def _batch_threads(self) -> int | None:
        """torch threads for the batch transforms; None keeps torch's setting."""
        return None

    def __iter__(self) -> Iterator:
        threads = self._batch_threads()
        for b in self.raw_batches():
            yield self._ready(b, threads)

    def _ready(self, b: Any, threads: int | None = None) -> Any:
        """One raw batch moved to the device, with the batch transforms applied."""
        b = to_device(b, self.device, non_blocking=self.device.type == "cuda")
        if not self.batch_tfms:  # the common case of pre-made batches: nothing more per batch
            return b
        with _torch_threads(threads):
            for tfm in self.batch_tfms:
                b = tfm(b)
        return b

    def __len__(self) -> int:
        return len(self.batches)  # type: ignore[arg-type]

    def one_batch(self) -> Any:
        """The first batch, on the device, transformed."""
        for b in self:
            return b
        raise ValueError(f"{type(self).__name__} is empty: it yields no batch (check the dataset's length)")

    def to(self, device: torch.device | str) -> DeviceLoader:
        self.device = torch.device(device)
        return self


class DataLoader(DeviceLoader):
    """Batch an indexable `dataset`; shuffle and `drop_last` are for the training set.

    A `TensorDataset` is batched by slicing its tensors (no per-item Python work); anything else goes
    through `torch.utils.data.DataLoader` with `num_workers` processes and pinned memory on CUDA. The
    worker processes are started once, on the first pass, and serve every later pass; they see the
    dataset as it was then, so a loader over a changed dataset should be made anew.

    >>> ds = TensorDataset(torch.randn(100, 3), torch.randn(100))
    >>> xb, yb = DataLoader(ds, bs=32, shuffle=True, device="cpu").one_batch()
    """

    def __init__(
        self,
        dataset: Any,
        bs: int = 64,
        shuffle: bool = False,
        drop_last: bool = False,
        num_workers: int = 0,
        collate_fn: Callable | None = None,
        device: torch.device | str | None = None,
        batch_tfms: Sequence[BatchTfm] = (),
        n_inp: int = 1,
        has_targets: bool = True,
    ) -> None:
        if bs < 1:
            raise ValueError(f"DataLoader: bs must be a positive batch size, got {bs}")
        super().__init__(None, device, batch_tfms, n_inp, has_targets)  # type: ignore[arg-type]
        self.dataset, self.bs, self.shuffle = dataset, bs, shuffle
        # Dropping the last partial batch must never leave a small training set with no batch at all.
        self.drop_last = drop_last and len(dataset) > bs
        self.num_workers, self.collate_fn = num_workers, collate_fn
        self._torch_dl: TorchDataLoader | None = None
        self._torch_settings: tuple = ()
        self._passes = 0  # passes started over the kept torch loader; the latest one owns its workers

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.bs if self.drop_last else -(-n // self.bs)

    def _sliced(self) -> bool:
        return isinstance(self.dataset, TensorDataset) and self.collate_fn is None

    def _batch_threads(self) -> int | None:
        # The workers fill cores of their own; batch transforms on the CPU get the rest (at least one)
        # rather than oversubscribing them: with 2 cores, 2 workers and 2 torch threads the batch
        # transforms' threads wait on each other and the workers for most of each pass.
        if self.device.type != "cpu" or self.num_workers == 0 or self._sliced():
            return None
        return max(1, torch.get_num_threads() - self.num_workers)

    def raw_batches(self) -> Iterable:
        if self._sliced():
            return self._tensor_batches(self.dataset.tensors)
        return self._torch_batches()

    def _torch_batches(self) -> Iterator:
        # torch's loader is kept between passes so that its workers persist: starting them again each
        # epoch costs more than a whole pass of a small data set. Each new pass takes the workers over,
        # also from a pass that never finished: a notebook's traceback or a debugger can keep that
        # pass's generator alive for good, and waiting for it would start new workers every pass after.
        settings = (self.bs, self.shuffle, self.drop_last, self.num_workers, self.collate_fn, self._pin)
        dl = self._torch_dl
        if dl is None or dl.dataset is not self.dataset or self._torch_settings != settings:
            self._torch_dl, self._torch_settings = self._new_torch_loader(persistent=True), settings
        self._passes += 1
        this_pass = self._passes
        for b in self._torch_dl:
            yield b
            if self._passes != this_pass:  # the workers now serve the newer pass: never mix its batches in
                raise RuntimeError(
                    "another pass over this loader started before this one finished and took its workers; "
                    "finish or drop a pass before starting the next (one_batch() is always safe)"
                )

    def one_batch(self) -> Any:
        """The first batch, on the device, transformed. It is read in this process: one batch needs no
        workers, and a pass in progress (`one_batch()` during training) keeps its own."""
        if self._sliced():
            return super().one_batch()
        for b in self._new_torch_loader(persistent=False, num_workers=0):
            return self._ready(b)
        raise ValueError(f"{type(self).__name__} is empty: it yields no batch (check the dataset's length)")

    @property
    def _pin(self) -> bool:
        return self.device.type == "cuda"

    def _new_torch_loader(self, persistent: bool, num_workers: int | None = None) -> TorchDataLoader:
        nw = self.num_workers if num_workers is None else num_workers
        # fork (Linux) gives the workers the dataset, lambdas included, without pickling it
        ctx = "fork" if nw > 0 and sys.platform.startswith("linux") else None
        return TorchDataLoader(
            self.dataset,
            batch_size=self.bs,
            shuffle=self.shuffle,
            drop_last=self.drop_last,
            num_workers=nw,
            collate_fn=self.collate_fn,
            pin_memory=self._pin,
            persistent_workers=persistent and nw > 0,
            multiprocessing_context=ctx,
        )

    def _tensor_batches(self, tensors: tuple[torch.Tensor, ...]) -> Iterator[tuple[torch.Tensor, ...]]:
        n = len(tensors[0])
        idx = torch.randperm(n) if self.shuffle else None
        pin = self.device.type == "cuda"
        for i in range(len(self)):
            sl = slice(i * self.bs, (i + 1) * self.bs)
            b = tuple(t[sl] if idx is None else t[idx[sl]] for t in tensors)
            yield tuple(t.pin_memory() for t in b) if pin else b


class DataLoaders:
    """The training and validation loaders (plus any others), all on one device.

    Any re-iterable of batches with a length works as a loader (a list of `(x, y)` tuples, a
    `torch.utils.data.DataLoader`); it is wrapped so its batches are moved to the device.

    >>> dls = DataLoaders.from_dsets(train_ds, valid_ds, bs=64)  # doctest: +SKIP
    >>> xb, yb = dls.one_batch()  # doctest: +SKIP
    """

    def __init__(self, *loaders: Iterable, device: torch.device | str | None = None, path: Any = ".") -> None:
        if len(loaders) < 1:
            raise ValueError("DataLoaders needs at least a training loader: DataLoaders(train_dl, valid_dl)")
        self.device = torch.device(device) if device is not None else default_device()
        self.loaders = [self._wrap(dl) for dl in loaders]
        self.path = path

    def _wrap(self, dl: Iterable) -> DeviceLoader:
        if not isinstance(dl, DeviceLoader):
            dl = DeviceLoader(dl, self.device)
        dl.to(self.device)
        return dl

    @classmethod
    def from_dsets(
        cls,
        train_ds: Any,
        valid_ds: Any,
        bs: int = 64,
        val_bs: int | None = None,
        shuffle: bool = True,
        device: torch.device | str | None = None,
        num_workers: int = 0,
        collate_fn: Callable | None = None,
        batch_tfms: Sequence[BatchTfm] = (),
        n_inp: int = 1,
        path: Any = ".",
        has_targets: bool = True,
    ) -> DataLoaders:
        """Loaders over two indexable datasets: the training one shuffled and without a last partial batch.
        `has_targets=False`: the items are inputs only (an autoencoder's), see the module."""
        common = dict(num_workers=num_workers, collate_fn=collate_fn, device=device, n_inp=n_inp)
        common |= dict(has_targets=has_targets)
        train = DataLoader(train_ds, bs, shuffle=shuffle, drop_last=shuffle, batch_tfms=batch_tfms, **common)
        valid = DataLoader(valid_ds, val_bs or bs, batch_tfms=batch_tfms, **common)
        return cls(train, valid, device=device, path=path)

    def __getitem__(self, i: int) -> DeviceLoader:
        return self.loaders[i]

    def __len__(self) -> int:
        return len(self.loaders)

    @property
    def train(self) -> DeviceLoader:
        return self.loaders[0]

    @property
    def valid(self) -> DeviceLoader:
        if len(self.loaders) < 2:
            raise AttributeError(
                "these DataLoaders have no validation loader: pass DataLoaders(train, valid)"
            )
        return self.loaders[1]

    @property
    def train_ds(self) -> Any:
        return getattr(self.train, "dataset", None)

    @property
    def valid_ds(self) -> Any:
        return getattr(self.valid, "dataset", None)

    @property
    def n_inp(self) -> int:
        return self.train.n_inp

    def one_batch(self) -> Any:
        """The first training batch, on the device."""
        return self.train.one_batch()

    def to(self, device: torch.device | str) -> DataLoaders:
        self.device = torch.device(device)
        for dl in self.loaders:
            dl.to(self.device)
        return self

    def cuda(self) -> DataLoaders:
        return self.to("cuda")

    def cpu(self) -> DataLoaders:
        return self.to("cpu")
