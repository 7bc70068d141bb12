"""Datasets: items split into training and validation, each item turned into one value per block."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ember.core.utils import plain
from ember.data.blocks import TransformBlock
from ember.data.errors import DataError
from ember.data.getters import ColReader
from ember.data.missing import warn_missing
from ember.data.transforms import Pipeline

__all__ = ["Datasets", "DatasetSplit", "TfmdDataset"]

Getter = Callable[[Any], Any]


def _identity(o: Any) -> Any:
    return o


def _call(what: str, f: Callable, o: Any, i: int) -> Any:
    """`f(o)`, or a DataError naming the item, its index and the step that failed."""
    try:
        return f(o)
    except DataError as e:
        e.add_note(f"(while {what} item {i}: {plain(o)})")
        raise
    except Exception as e:
        name = getattr(f, "__name__", type(f).__name__)
        raise DataError(f"{what} item {i} ({plain(o)}) failed in {name}: {type(e).__name__}: {e}") from e


class Datasets:
    """The items, their split, and per block a getter and the block's encoding.

    `dsets.train[0]` is one training item as a tuple of values: the input decoded (a PIL image), the
    target encoded (a label's index, a one-hot vector).

    >>> dsets = dblock.datasets(path)  # doctest: +SKIP
    >>> dsets.vocab, len(dsets.train), dsets.train[0]  # doctest: +SKIP
    """

    def __init__(
        self,
        items: Sequence[Any],
        blocks: Sequence[TransformBlock],
        getters: Sequence[Getter | None],
        splits: tuple[Sequence[int], Sequence[int]],
        n_inp: int,
        setup: bool = True,
    ) -> None:
        self.items, self.blocks, self.n_inp = items, list(blocks), n_inp
        self.getters = [g if g is not None else _identity for g in getters]
        self.splits = [list(s) for s in splits]
        self.cache: dict[int, tuple] | None = None
        if setup:  # blocks learn (vocabularies) from the training items; new items for inference do not
            self._setup_blocks()

    def _setup_blocks(self) -> None:
        for block, getter in zip(self.blocks, self.getters):
            if type(block).setup is not TransformBlock.setup:  # only blocks that learn need the raw values
                values = [_call("getting", getter, self.items[i], i) for i in self.splits[0]]
                rows = [_row_name(self.items[i], i) for i in self.splits[0]]
                among = f" among the {len(values)} training items"
                warn_missing(_column_name(getter), [block.has_missing(v) for v in values], rows, among)
                try:
                    block.setup(values)
                except DataError as e:
                    e.add_note(f"(while setting up {block!r} from the {len(values)} training items)")
                    raise

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(b.kind for b in self.blocks)

    def raw(self, i: int) -> tuple:
        """Item `i` through the getters only."""
        o = self.items[i]
        return tuple(_call("getting", g, o, i) for g in self.getters)

    def encoded(self, i: int) -> tuple:
        """Item `i` as one value per block (from the cache when filled)."""
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        return tuple(_call("encoding", b.encode, r, i) for b, r in zip(self.blocks, self.raw(i)))

    def fill_cache(self, idxs: Sequence[int], n_threads: int = 1) -> None:
        """Decode `idxs` once and keep the values, so later epochs skip reading and decoding.

        With `n_threads > 1` the items are decoded by that many threads: image decoders release the GIL,
        so photos decode in parallel (see `ember.data.block.cache_threads` for when that pays).
        """
        self.cache = self.cache or {}
        todo = [i for i in idxs if i not in self.cache]
        if n_threads <= 1 or len(todo) < 2:
            for i in todo:
                self.cache[i] = self.encoded(i)
            return
        pool = ThreadPoolExecutor(n_threads, thread_name_prefix="ember-cache")
        try:  # map raises the first failing item's DataError here, in item order
            self.cache.update(zip(todo, pool.map(self.encoded, todo)))
        finally:
            pool.shutdown(cancel_futures=True)  # after a failure, decode no more

    @property
    def train(self) -> DatasetSplit:
        return DatasetSplit(self, self.splits[0])

    @property
    def valid(self) -> DatasetSplit:
        return DatasetSplit(self, self.splits[1])

    def __getitem__(self, i: int) -> DatasetSplit:
        return DatasetSplit(self, self.splits[i])

    def __len__(self) -> int:
        return len(self.items)

    @property
    def vocab(self) -> list | None:
        """The vocabulary of the last block that has one (the target's)."""
        for b in reversed(self.blocks):
            if getattr(b, "vocab", None):
                return b.vocab
        return None

    def __repr__(self) -> str:
        return f"Datasets(train={len(self.splits[0])}, valid={len(self.splits[1])}, blocks={self.blocks})"


def _column_name(getter: Getter) -> str:
    """What a getter reads, for messages: a `ColReader`'s column(s), else the function's name."""
    if isinstance(getter, ColReader):
        return str(getter.cols[0]) if len(getter.cols) == 1 else str(getter.cols)
    if getter is _identity:
        return "the items themselves"
    return getattr(getter, "__name__", type(getter).__name__)


def _row_name(item: Any, i: int) -> Any:
    """A table row's index label (items from a DataFrame are its rows), else the item's position."""
    return item.name if hasattr(item, "iloc") and hasattr(item, "name") else i


class DatasetSplit:
    """One split of a `Datasets`: indexing gives the item's values, one per block."""

    def __init__(self, dsets: Datasets, idxs: Sequence[int]) -> None:
        self.dsets, self.idxs = dsets, list(idxs)

    def __getitem__(self, i: int) -> tuple:
        return self.dsets.encoded(self.idxs[i])

    def __len__(self) -> int:
        return len(self.idxs)

    @property
    def items(self) -> list:
        return [self.dsets.items[i] for i in self.idxs]

    def __repr__(self) -> str:
        return f"DatasetSplit({len(self)} items)"


class TfmdDataset:
    """A split with its item transforms applied: what the DataLoader batches."""

    def __init__(self, split: DatasetSplit, pipeline: Pipeline) -> None:
        self.split, self.pipeline = split, pipeline

    def __getitem__(self, i: int) -> tuple:
        try:
            return self.pipeline(self.split[i])
        except DataError:
            raise
        except Exception as e:
            item = self.split.dsets.items[self.split.idxs[i]]
            raise DataError(f"item transforms failed on item {plain(item)}: {type(e).__name__}: {e}") from e

    def __len__(self) -> int:
        return len(self.split)
