"""The DataBlock API: say what the inputs and targets are, how to get and split them, and how to
transform them; get `Datasets` and `DataLoaders` back.

>>> dblock = DataBlock(blocks=(ImageBlock, CategoryBlock), get_items=get_image_files,
...                    get_y=parent_label, splitter=RandomSplitter(seed=42), item_tfms=Resize(128))
>>> dls = dblock.dataloaders(path, bs=64)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ember.core.utils import plain
from ember.data.blocks import TransformBlock
from ember.data.datasets import Datasets, TfmdDataset
from ember.data.errors import DataError
from ember.data.loaders import DataLoader, DataLoaders
from ember.data.splitters import RandomSplitter
from ember.data.transforms import Pipeline, Transform

__all__ = ["DataBlock", "TfmdDataLoaders"]

BlockLike = TransformBlock | type[TransformBlock]
# Decoded values of up to this many bytes in all are kept in memory after the first read.
AUTO_CACHE_BYTES = 2 * 1024**3


def _listify_tfms(t: Transform | Sequence[Transform] | None) -> list[Transform]:
    if t is None:
        return []
    return list(t) if isinstance(t, list | tuple) else [t]


def usable_cpus() -> int:
    """The cores this process may run on: its CPU affinity (which `taskset`, containers and job
    schedulers restrict) where the system has one, else every core of the machine."""
    if hasattr(os, "sched_getaffinity"):  # Linux; macOS and Windows have no affinity call
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_num_workers() -> int:
    """One loader process per usable core on Linux (fork start, so lambdas need no pickling), at most 8;
    0 elsewhere."""
    return min(usable_cpus(), 8) if sys.platform.startswith("linux") else 0


class DataBlock:
    """A recipe for datasets: blocks, a way to get items, getters per block, a splitter and transforms.

    Blocks may be given as classes (`CategoryBlock`) or instances (`CategoryBlock(add_na=True)`). All
    blocks but the last `len(blocks) - n_inp` are inputs; by default only the last block is a target.
    `get_x` / `get_y` (or `getters`, one per block) turn an item into each block's raw value.
    """

    def __init__(
        self,
        blocks: Sequence[BlockLike] = (TransformBlock, TransformBlock),
        get_items: Callable[[Any], Sequence[Any]] | None = None,
        get_x: Callable[[Any], Any] | None = None,
        get_y: Callable[[Any], Any] | None = None,
        splitter: Callable[[Sequence[Any]], tuple[Sequence[int], Sequence[int]]] | None = None,
        item_tfms: Transform | Sequence[Transform] | None = None,
        batch_tfms: Transform | Sequence[Transform] | None = None,
        n_inp: int | None = None,
        getters: Sequence[Callable[[Any], Any] | None] | None = None,
    ) -> None:
        self.block_specs = list(blocks)
        self.n_inp = n_inp if n_inp is not None else max(len(self.block_specs) - 1, 1)
        self.get_items, self.get_x, self.get_y = get_items, get_x, get_y
        self.splitter = splitter if splitter is not None else RandomSplitter()
        self.item_tfms, self.batch_tfms = _listify_tfms(item_tfms), _listify_tfms(batch_tfms)
        if getters is not None and len(getters) != len(self.block_specs):
            raise DataError(
                f"DataBlock: {len(getters)} getters for {len(self.block_specs)} blocks; give one each"
            )
        self.getters = getters

    def _new_blocks(self) -> list[TransformBlock]:
        # A fresh instance per datasets() call: blocks learn vocabularies from the data they see.
        blocks = [b() if isinstance(b, type) else b for b in self.block_specs]
        for b in blocks:
            if not isinstance(b, TransformBlock):
                raise DataError(f"DataBlock: {b!r} is not a block; use e.g. ImageBlock, CategoryBlock")
        return blocks

    def _getters(self, n: int) -> list[Callable[[Any], Any] | None]:
        if self.getters is not None:
            return list(self.getters)
        xs = [self.get_x] * self.n_inp
        return xs + [self.get_y] * (n - self.n_inp)

    def _items(self, source: Any) -> Sequence[Any]:
        items = self.get_items(source) if self.get_items is not None else source
        if hasattr(items, "iloc"):  # a DataFrame: one item per row
            items = [row for _, row in items.iterrows()]
        items = list(items)
        if not items:
            raise DataError(
                f"no items found in {plain(source)}"
                + (f" by {getattr(self.get_items, '__name__', self.get_items)}" if self.get_items else "")
                + ": check the path and that it holds files of the expected type"
            )
        return items

    def datasets(self, source: Any) -> Datasets:
        """The items of `source`, split, with one value per block.

        >>> dsets = dblock.datasets(path)  # doctest: +SKIP
        """
        items = self._items(source)
        blocks = self._new_blocks()
        split_src = source if self.get_items is None and hasattr(source, "iloc") else items
        splits = self.splitter(split_src)
        if not len(splits[0]):
            raise DataError(f"the splitter left no training items out of {len(items)}; check it")
        return Datasets(items, blocks, self._getters(len(blocks)), splits, self.n_inp)

    def dataloaders(
        self,
        source: Any,
        bs: int = 64,
        val_bs: int | None = None,
        shuffle: bool = True,
        num_workers: int | None = None,
        device: torch.device | str | None = None,
        cache: bool | None = None,
        path: Any = ".",
    ) -> TfmdDataLoaders:
        """DataLoaders for `source`. `cache=None` keeps decoded items in memory when they fit
        (under 2 GiB, estimated from the first item); `num_workers=None` is one process per core on Linux.
        """
        dsets = self.datasets(source)
        return TfmdDataLoaders.from_datasets(
            dsets,
            self,
            bs=bs,
            val_bs=val_bs,
            shuffle=shuffle,
            num_workers=num_workers,
            device=device,
            cache=cache,
            path=source if isinstance(source, str | os.PathLike) else path,
        )

    def summary(self, source: Any, bs: int = 4, show_batch: bool = False) -> Any:
        """Walk one item through every step, printing the value and type after each; a step that
        fails is named with its error before the error is raised. `show_batch=True` then draws a
        batch of `bs` items as the model sees them and returns the figure.

        >>> fig = dblock.summary(path, show_batch=True)  # doctest: +SKIP
        """
        from ember.data.summary import summarize

        return summarize(self, source, bs, show_batch)

    def item_pipeline(self, blocks: Sequence[TransformBlock], split_idx: int) -> Pipeline:
        tfms = _one_per_type([t for b in blocks for t in b.item_tfms]) + self.item_tfms
        return Pipeline(tfms, [b.kind for b in blocks], split_idx)

    def batch_pipeline(self, blocks: Sequence[TransformBlock], split_idx: int) -> Pipeline:
        tfms = _one_per_type([t for b in blocks for t in b.batch_tfms]) + self.batch_tfms
        return Pipeline(tfms, [b.kind for b in blocks], split_idx)


def _one_per_type(tfms: list[Transform]) -> list[Transform]:
    """Blocks bring their own copies of shared transforms (an ImageBlock and a MaskBlock each bring a
    ToTensor, which converts every kind at once): keep the first of each type."""
    seen: set[type] = set()
    out = []
    for t in tfms:
        if type(t) not in seen:
            seen.add(type(t))
            out.append(t)
    return out


class TfmdDataLoaders(DataLoaders):
    """DataLoaders built from a DataBlock: they know their blocks, vocabulary, loss and how to show
    and decode batches, and make loaders for new items (`test_dl`)."""

    datasets: Datasets
    dblock: DataBlock
    loss_func: Any  # the target block's loss, built once so that settings on it stick

    @classmethod
    def from_datasets(
        cls,
        dsets: Datasets,
        dblock: DataBlock,
        bs: int = 64,
        val_bs: int | None = None,
        shuffle: bool = True,
        num_workers: int | None = None,
        device: torch.device | str | None = None,
        cache: bool | None = None,
        path: Any = ".",
    ) -> TfmdDataLoaders:
        if cache is None:
            cache = _fits_in_memory(dsets)
        if cache:
            dsets.fill_cache(range(len(dsets.items)), n_threads=cache_threads(dsets))
        nw = default_num_workers() if num_workers is None else num_workers
        loaders = [
            cls._loader(
                dsets, dblock, split, bs if split == 0 else (val_bs or bs), shuffle and split == 0, nw, device
            )
            for split in (0, 1)
        ]
        dls = cls(*loaders, device=device, path=path)
        dls.datasets, dls.dblock = dsets, dblock
        # Built once, so settings made on it stick: `dls.loss_func.thresh = 0.3`.
        dls.loss_func = dsets.blocks[-1].default_loss()
        return dls

    @staticmethod
    def _loader(dsets, dblock, split, bs, shuffle, num_workers, device, idxs=None, blocks=None) -> DataLoader:
        blocks = blocks if blocks is not None else dsets.blocks
        ds = TfmdDataset(dsets[split], dblock.item_pipeline(blocks, split))
        return DataLoader(
            ds,
            bs,
            shuffle=shuffle,
            drop_last=shuffle,
            num_workers=num_workers if len(ds) > bs else 0,
            device=device,
            batch_tfms=[dblock.batch_pipeline(blocks, split)],
            n_inp=dsets.n_inp,
        )

    def add_batch_tfms(self, tfms: Sequence[Transform]) -> None:
        """Add batch transforms to every loader (as if given to the DataBlock), e.g. a Normalize."""
        self.dblock.batch_tfms = [*self.dblock.batch_tfms, *tfms]
        for split, dl in enumerate(self.loaders[:2]):
            dl.batch_tfms = [self.dblock.batch_pipeline(self.datasets.blocks, split)]

    # ---- what the course's code reads off dls ----------------------------------------------------
    @property
    def vocab(self) -> list | None:
        return self.datasets.vocab

    @property
    def c(self) -> int | None:
        """The number of model outputs the target needs (classes for a classifier)."""
        return self.datasets.blocks[-1].n_out

    @property
    def train_ds(self):
        return self.datasets.train

    @property
    def valid_ds(self):
        return self.datasets.valid

    def decode_batch(self, batch: Sequence[Any], max_n: int = 9, split_idx: int = 1) -> list[tuple]:
        """A batch as people read it: one tuple per item of decoded values (labels, not indices)."""
        from ember.data.show import decode_batch

        return decode_batch(self, batch, max_n, split_idx)

    def decode_preds(self, inputs: Any, preds: Any) -> Any:
        """Predictions decoded by the batch pipeline in the target's slot (an image target denormalised);
        `learn.predict` and `show_results` call this."""
        from ember.data.show import decode_preds

        return decode_preds(self, inputs, preds)

    def show_batch(
        self,
        max_n: int = 9,
        unique: bool = False,
        nrows: int | None = None,
        ncols: int | None = None,
        figsize: tuple[float, float] | None = None,
    ) -> Any:
        """A grid of the first training batch's items, with their decoded labels (augmented as trained)."""
        from ember.data.show import show_batch

        return show_batch(self, max_n, unique, nrows, ncols, figsize)

    def show_results(
        self,
        batch: Sequence[Any],
        preds: torch.Tensor,
        max_n: int = 9,
        nrows: int | None = None,
        ncols: int | None = None,
        figsize: tuple[float, float] | None = None,
    ) -> Any:
        """A batch's inputs, targets and decoded predictions (`learn.show_results` calls this)."""
        from ember.data.show import show_results

        return show_results(self, batch, preds, max_n, nrows, ncols, figsize)

    def tta_dl(self, ds_idx: int = 1) -> DataLoader:
        """Split `ds_idx` in order, with the training augmentations (for `learn.tta`)."""
        from ember.data.show import tta_dl

        return tta_dl(self, ds_idx)

    def test_dl(
        self,
        items: Sequence[Any],
        with_labels: bool = False,
        with_getters: bool = True,
        bs: int | None = None,
    ) -> DataLoader:
        """A loader for new items, transformed as the validation set is. `with_getters=False` takes each
        item as the input itself (a file, an image) rather than as an item like the training ones."""
        from ember.data.show import test_dl

        return test_dl(self, items, with_labels, with_getters, bs)


# Items that decode in less than this are cached serially: handing each to a thread costs more.
PARALLEL_DECODE_SECONDS = 1e-3


def cache_threads(dsets: Datasets) -> int:
    """Threads to fill the cache with, from the time one item takes to read and decode.

    Image decoders release the GIL, so photos decode in parallel (300 JPEGs of 500x375 on 2 busy
    cores: 0.61 s serially, 0.48 s in 2 threads); tiny items spend their time in Python and are slower
    in threads (mnist5k's 5,000 28x28 PNGs: 0.71 s serially, 0.90 s in 2 threads), so they stay serial.
    """
    seconds = []
    for i in dsets.splits[0][:2]:  # the faster of two: the first read may pay for imports and a cold disk
        start = time.perf_counter()
        dsets.encoded(i)
        seconds.append(time.perf_counter() - start)
    return min(usable_cpus(), 8) if min(seconds) >= PARALLEL_DECODE_SECONDS else 1


def _fits_in_memory(dsets: Datasets) -> bool:
    n = len(dsets.items)
    first = dsets.encoded(dsets.splits[0][0])
    return sum(b.nbytes(v) for b, v in zip(dsets.blocks, first)) * n <= AUTO_CACHE_BYTES
