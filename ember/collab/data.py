"""`CollabDataLoaders`: a ratings table as tensors of (user, item) indices and float ratings.

Every row is encoded once, up front, into an `(n, 2)` int64 tensor and an `(n, 1)` float tensor, so
a batch is a slice of those tensors: no per-row Python work while training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from ember.collab.vocab import CollabVocab
from ember.core.utils import plain
from ember.data.loaders import DataLoader, DataLoaders
from ember.data.missing import refuse_missing, warn_missing

__all__ = ["CollabDataLoaders"]


class CollabDataLoaders(DataLoaders):
    """Training and validation loaders over a ratings table, with the user and item vocabularies.

    Index 0 of each vocabulary is reserved, '#na#': missing users or items (with one warning per
    column), those seen only in the validation split, and those unknown at prediction time map to it
    (`ember.collab.learner` says what such rows predict). A missing rating is an error.

    >>> ratings = pd.DataFrame({"user": [1, 1, 2, 2, 3], "movie": list("abcab"), "rating": [5, 3, 4, 1, 2]})
    >>> dls = CollabDataLoaders.from_df(ratings, valid_pct=0.2, seed=0, bs=2, device="cpu")
    >>> dls.classes["movie"]
    ['#na#', 'a', 'b', 'c']
    """

    def __init__(
        self,
        *loaders: Any,
        users: CollabVocab,
        items: CollabVocab,
        rating_name: str,
        rating_range: tuple[float, float],
        rated: pd.DataFrame,
        device: torch.device | str | None = None,
        path: Any = ".",
    ) -> None:
        super().__init__(*loaders, device=device, path=path)
        self.users, self.items, self.rating_name = users, items, rating_name
        self.rating_range = rating_range  # (lowest, highest) rating in the whole table
        self.rated = rated  # the (user, item) columns of the whole table, for `rated_by`

    @property
    def user_name(self) -> str:
        return self.users.column

    @property
    def item_name(self) -> str:
        return self.items.column

    @property
    def classes(self) -> dict[str, list]:
        """`{user_name: [...], item_name: [...]}`: each vocabulary in index order, '#na#' first."""
        return {self.user_name: self.users.items, self.item_name: self.items.items}

    @classmethod
    def from_df(
        cls,
        ratings: pd.DataFrame,
        valid_pct: float = 0.2,
        user_name: str | None = None,
        item_name: str | None = None,
        rating_name: str | None = None,
        seed: int | None = None,
        path: str | Path = ".",
        bs: int = 64,
        val_bs: int | None = None,
        shuffle: bool = True,
        device: torch.device | str | None = None,
    ) -> CollabDataLoaders:
        """Loaders from a ratings table; the columns default to the first three (user, item, rating).

        A random `valid_pct` of the rows (reproducible with `seed`) is held out; the vocabularies come
        from the training rows only. `val_bs` defaults to `bs`.

        >>> dls = CollabDataLoaders.from_df(ratings, item_name="title", bs=64, seed=42)  # doctest: +SKIP
        """
        user_name, item_name, rating_name = _columns(ratings, user_name, item_name, rating_name)
        _check_ratings(ratings, user_name, item_name, rating_name)
        if not 0 <= valid_pct < 1:
            raise ValueError(f"valid_pct must be in [0, 1), got {valid_pct}")
        train_idx, valid_idx = _split(len(ratings), valid_pct, seed)
        train_df = ratings.iloc[train_idx.numpy()]
        users = CollabVocab(train_df[user_name], user_name)
        items = CollabVocab(train_df[item_name], item_name)
        x = torch.stack([users.encode(ratings[user_name]), items.encode(ratings[item_name])], dim=1)
        y = _ratings_tensor(ratings, rating_name)  # (n, 1)
        train_ds, valid_ds = (
            TensorDataset(x[train_idx], y[train_idx]),
            TensorDataset(x[valid_idx], y[valid_idx]),
        )
        loaders = [DataLoader(train_ds, bs, shuffle=shuffle, drop_last=shuffle, device=device)]
        if len(valid_ds):  # valid_pct=0: train on everything, no validation loader
            loaders.append(DataLoader(valid_ds, val_bs or bs, device=device))
        return cls(
            *loaders,
            users=users,
            items=items,
            rating_name=rating_name,
            rating_range=(float(y.min()), float(y.max())),
            rated=ratings[[user_name, item_name]],
            device=device,
            path=path,
        )

    @classmethod
    def from_csv(cls, csv: str | Path, sep: str = ",", header: int | None | str = "infer", **kwargs: Any):
        """Loaders from a CSV file of ratings: `pd.read_csv` then `from_df(**kwargs)`.

        >>> dls = CollabDataLoaders.from_csv("ratings.csv", bs=64)  # doctest: +SKIP
        """
        return cls.from_df(pd.read_csv(csv, sep=sep, header=header), **kwargs)

    def encode(self, pairs: pd.DataFrame) -> Tensor:
        """`(n, 2)` int64 (user index, item index) for a table with the user and item columns."""
        _require(pairs, [self.user_name, self.item_name], "pairs")
        return torch.stack(
            [self.users.encode(pairs[self.user_name]), self.items.encode(pairs[self.item_name])], 1
        )

    def decode(self, x: Tensor, y: Tensor | None = None) -> pd.DataFrame:
        """A table of names for `(n, 2)` indices `x` (and ratings `y`, `(n, 1)` or `(n,)`)."""
        x = x.cpu()
        df = pd.DataFrame(
            {self.user_name: self.users.decode(x[:, 0]), self.item_name: self.items.decode(x[:, 1])}
        )
        if y is not None:
            df[self.rating_name] = y.detach().cpu().reshape(-1).tolist()
        return df

    def test_dl(self, pairs: pd.DataFrame, bs: int | None = None) -> DataLoader:
        """A loader over (user, item) pairs given by name; it yields ratings too when the table has them.

        >>> preds, _ = learn.get_preds(dl=dls.test_dl(pairs))  # doctest: +SKIP
        """
        x = self.encode(pairs)
        tensors = [x]
        if self.rating_name in pairs:
            _check_numeric(pairs, self.rating_name)
            tensors.append(_ratings_tensor(pairs, self.rating_name))
        return DataLoader(TensorDataset(*tensors), bs or self.train.bs, device=self.device)

    def rated_by(self, user: Any) -> list:
        """The items `user` rated anywhere in the table (training and validation rows), by name."""
        return self.rated.loc[self.rated[self.user_name] == user, self.item_name].tolist()

    def most_rated(self, n: int = 1000) -> list:
        """The `n` items with the most ratings in the training split, most-rated first."""
        counts = torch.bincount(self.train_ds.tensors[0][:, 1], minlength=len(self.items))  # (n_items,)
        counts[0] = -1  # never the reserved row
        return self.items.decode(counts.topk(min(n, len(self.items) - 1)).indices)

    def show_batch(self, n: int = 10) -> None:
        """Print `n` rows of the first training batch with user and item names."""
        x, y = self.one_batch()
        print(self.decode(x[:n], y[:n]).to_string())


def _columns(
    df: pd.DataFrame, user: str | None, item: str | None, rating: str | None
) -> tuple[str, str, str]:
    """The user, item and rating column names, defaulting to the first three columns."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"ratings must be a pandas DataFrame, got {type(df).__name__}")
    missing = [d for d, given in (("user", user), ("item", item), ("rating", rating)) if given is None]
    if missing and len(df.columns) < 3:
        raise ValueError(
            f"the ratings table has {len(df.columns)} column(s) {list(df.columns)}; with no "
            f"{'/'.join(f'{m}_name' for m in missing)} the first three columns are used (user, item, "
            "rating): pass the names or add the columns"
        )
    cols = list(df.columns)
    names = (user or cols[0], item or cols[1], rating or cols[2])
    _require(df, list(names), "ratings")
    return names  # type: ignore[return-value]


def _require(df: pd.DataFrame, names: list[str], what: str) -> None:
    absent = [n for n in names if n not in df.columns]
    if absent:
        raise KeyError(f"{what} table has no column {absent[0]!r}; its columns are {list(df.columns)}")


def _check_ratings(df: pd.DataFrame, user: str, item: str, rating: str) -> None:
    if len(df) == 0:
        raise ValueError(
            f"the ratings table is empty (columns {list(df.columns)}): there is nothing to learn"
        )
    for col in (user, item):  # a missing id is a category of its own, '#na#' (index 0)
        warn_missing(col, df[col].isna().to_numpy(), df.index)
    _check_numeric(df, rating)


def _check_numeric(df: pd.DataFrame, col: str) -> None:
    missing, values = df[col].isna(), pd.to_numeric(df[col], errors="coerce")
    fix = f"a rating has no category to fall back on; drop those rows, e.g. df.dropna(subset=[{col!r}])"
    refuse_missing(col, missing.to_numpy(), df.index, fix)
    bad = values.isna()
    if bad.any():
        raise ValueError(
            f"rating column {col!r} must be numeric: {int(bad.sum())} value(s) are not, the first is "
            f"{plain(df[col][bad].iloc[0])} (at row {df.index[bad][0]})"
        )


def _ratings_tensor(df: pd.DataFrame, col: str) -> Tensor:
    """The ratings as `(n, 1)` float32 (numbers stored as strings are converted)."""
    return torch.as_tensor(pd.to_numeric(df[col]).to_numpy(dtype="float32")).unsqueeze(1)


def _split(n: int, valid_pct: float, seed: int | None) -> tuple[Tensor, Tensor]:
    """Random (train, valid) row indices; `seed` makes the split reproducible."""
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    perm = torch.randperm(n, generator=g)
    cut = int(n * valid_pct)  # truncated, as the course's random splitter does
    return perm[cut:], perm[:cut]
