"""The vocabulary of one id column (users or items): names in index order, index 0 reserved."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from ember.data.missing import NA

__all__ = ["CollabVocab"]

UNKNOWN = NA
"""The name of the reserved index 0: missing users or items, and those not seen in the training split."""


class CollabVocab:
    """The names of one id column in index order; index 0 is reserved for missing values and names not
    seen in training.

    Names are sorted (or kept in order of first appearance when they cannot be compared), so
    `vocab.items[i]` is the name of embedding row `i`.

    >>> v = CollabVocab(["b", "a", "b"], column="user")
    >>> v.items, v.encode(["a", "zzz"]).tolist()
    (['#na#', 'a', 'b'], [1, 0])
    """

    def __init__(self, values: Iterable, column: str) -> None:
        self.column = column
        series = values if isinstance(values, pd.Series) else pd.Series(list(values))
        uniq = pd.unique(series.dropna())  # missing values are no name: they get index 0
        try:
            uniq = sorted(uniq)
        except TypeError:  # mixed types (ints and strings): keep the order of first appearance
            uniq = list(uniq)
        self._index = pd.Index(uniq)
        self.items: list[Any] = [UNKNOWN, *(_plain(v) for v in uniq)]

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return f"CollabVocab({self.column!r}, {len(self) - 1} names + {UNKNOWN})"

    def encode(self, values: Iterable | pd.Series) -> Tensor:
        """Indices of `values`, `(n,)` int64; a missing value or a name not in the vocabulary gets the
        reserved index 0."""
        values = values if isinstance(values, pd.Series) else pd.Series(list(values), dtype=object)
        # get_indexer gives -1 for an unseen name, so +1 sends it to the reserved row 0
        idx = self._index.get_indexer(values) + 1
        return torch.from_numpy(idx.astype("int64"))

    def encode_known(self, names: Sequence) -> Tensor:
        """Indices of `names`, raising a `KeyError` that lists any name not in the vocabulary."""
        idx = self.encode(names)
        unknown = [n for n, i in zip(names, idx.tolist()) if i == 0]
        if unknown:
            raise KeyError(f"not in the {self.column!r} vocabulary: {unknown[:5]} ({len(unknown)} in all)")
        return idx

    def decode(self, idx: Tensor | Sequence[int]) -> list[Any]:
        """The names of indices `idx` (index 0 decodes to '#na#')."""
        idx = idx.tolist() if isinstance(idx, Tensor) else idx
        return [self.items[i] for i in idx]


def _plain(v: Any) -> Any:
    # numpy scalars (np.int64 user ids) print and compare as plain Python values
    return v.item() if hasattr(v, "item") else v
