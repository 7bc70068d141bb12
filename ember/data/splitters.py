"""Splitters: functions from the list of items to `(train_idxs, valid_idxs)`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ember.data.errors import DataError

__all__ = [
    "ColSplitter",
    "FuncSplitter",
    "GrandparentSplitter",
    "IndexSplitter",
    "RandomSplitter",
    "TrainTestSplitter",
]

Splits = tuple[list[int], list[int]]


def RandomSplitter(valid_pct: float = 0.2, seed: int | None = None) -> Callable[[Sequence], Splits]:
    """A random `valid_pct` of the items for validation; the same `seed` gives the same split.

    >>> RandomSplitter(0.25, seed=0)(range(8))  # doctest: +SKIP
    """
    if not 0 <= valid_pct < 1:
        raise DataError(f"RandomSplitter: valid_pct must be in [0, 1), got {valid_pct}")

    def split(items: Sequence) -> Splits:
        idx = np.random.default_rng(seed).permutation(len(items))
        cut = int(valid_pct * len(items))
        return sorted(idx[cut:].tolist()), sorted(idx[:cut].tolist())

    return split


def IndexSplitter(valid_idx: Sequence[int]) -> Callable[[Sequence], Splits]:
    """The items at `valid_idx` for validation, the rest for training."""

    def split(items: Sequence) -> Splits:
        valid = sorted(set(int(i) for i in valid_idx))
        if valid and (valid[0] < 0 or valid[-1] >= len(items)):
            raise DataError(f"IndexSplitter: index {valid[-1]} is out of range for {len(items)} items")
        chosen = set(valid)
        return [i for i in range(len(items)) if i not in chosen], valid

    return split


def FuncSplitter(func: Callable[[Any], bool]) -> Callable[[Sequence], Splits]:
    """Items for which `func(item)` is true go to validation."""

    def split(items: Sequence) -> Splits:
        mask = [bool(func(o)) for o in items]
        return [i for i, m in enumerate(mask) if not m], [i for i, m in enumerate(mask) if m]

    return split


def GrandparentSplitter(train_name: str = "train", valid_name: str = "valid") -> Callable[[Sequence], Splits]:
    """Split by the grandparent folder: `train/cat/1.jpg` is training, `valid/cat/2.jpg` validation."""

    def split(items: Sequence) -> Splits:
        names = [Path(o).parent.parent.name for o in items]
        train = [i for i, n in enumerate(names) if n == train_name]
        valid = [i for i, n in enumerate(names) if n == valid_name]
        if not train or not valid:
            raise DataError(
                f"GrandparentSplitter: found {len(train)} items under a {train_name!r} folder and "
                f"{len(valid)} under {valid_name!r}; lay files out as {train_name}/<label>/<file> and "
                f"{valid_name}/<label>/<file>, or pass train_name/valid_name"
            )
        return train, valid

    return split


def ColSplitter(col: int | str = "is_valid") -> Callable[[Sequence], Splits]:
    """Split table rows by a boolean column: true means validation."""

    def split(items: Any) -> Splits:
        try:
            mask = items[col] if not isinstance(col, int) else items.iloc[:, col]
        except (KeyError, IndexError) as e:
            raise DataError(f"ColSplitter: no column {col!r}; the columns are {list(items.columns)}") from e
        mask = np.asarray(mask).astype(bool)
        return np.flatnonzero(~mask).tolist(), np.flatnonzero(mask).tolist()

    return split


def TrainTestSplitter(
    test_size: float = 0.2,
    random_state: int | None = None,
    stratify: Sequence | None = None,
    train_size: float | None = None,
    shuffle: bool = True,
) -> Callable[[Sequence], Splits]:
    """scikit-learn's `train_test_split` of the item indices (stratified when `stratify` is given)."""
    from sklearn.model_selection import train_test_split

    def split(items: Sequence) -> Splits:
        idx = np.arange(len(items))
        tr, va = train_test_split(
            idx,
            test_size=test_size,
            random_state=random_state,
            stratify=stratify,
            train_size=train_size,
            shuffle=shuffle,
        )
        return sorted(tr.tolist()), sorted(va.tolist())

    return split
