"""Missing values where categories are read: one rule for every block, table and application.

A missing category (None, NaN, pandas' NA) becomes a category of its own, '#na#', with one
`MissingValuesWarning` per column naming the column, how many values are missing and the first row.
A missing value that has no category to become (a rating, a regression target) is a `DataError`
naming the same, and what to do.

>>> labels = ["cat", None, "dog"]
>>> mask = [is_missing(v) for v in labels]
>>> warn_missing("label", mask, rows=range(3))  # doctest: +SKIP
MissingValuesWarning: column 'label': 1 missing value(s) (the first at row 1) become the category '#na#'...
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ember.data.errors import DataError

__all__ = ["NA", "MissingValuesWarning", "is_missing", "refuse_missing", "warn_missing"]

NA = "#na#"
"""The category that missing values (and, where a block reserves it, unseen ones) become."""


class MissingValuesWarning(UserWarning):
    """Missing categories became '#na#'. Once you have checked them, silence it with
    `warnings.simplefilter("ignore", MissingValuesWarning)`."""


def is_missing(v: Any) -> bool:
    """Whether `v` is a missing value: None, a float NaN (Python's or numpy's), pandas' NA or NaT.

    >>> is_missing(None), is_missing(float("nan")), is_missing("nan"), is_missing(0)
    (True, True, False, False)
    """
    if v is None or (isinstance(v, float | np.floating) and v != v):
        return True
    pd = sys.modules.get("pandas")  # pandas' markers, without importing pandas for data that has none
    return pd is not None and (v is pd.NA or v is pd.NaT)


def _where(column: str, mask: Sequence[bool], rows: Sequence[Any], among: str) -> tuple[int, str]:
    first = next(k for k, m in enumerate(mask) if m)
    n = int(sum(bool(m) for m in mask))
    return n, f"column {column!r}: {n} missing value(s){among} (the first at row {rows[first]})"


def warn_missing(column: str, mask: Sequence[bool], rows: Sequence[Any], among: str = "") -> int:
    """One warning when `mask` marks any missing value: they become the category '#na#'.
    `rows[k]` names the row of value `k` (a table's index label, an item's position). Returns the count."""
    if not any(mask):
        return 0
    n, where = _where(column, mask, rows, among)
    warnings.warn(
        f"{where} become the category {NA!r}; fill or drop them if they mean something else "
        f"(e.g. df[{column!r}].fillna(...))",
        MissingValuesWarning,
        stacklevel=3,
    )
    return n


def refuse_missing(column: str, mask: Sequence[bool], rows: Sequence[Any], fix: str) -> None:
    """A `DataError` when `mask` marks any missing value that cannot be represented; `fix` says what to do."""
    if any(mask):
        raise DataError(f"{_where(column, mask, rows, '')[1]} cannot be represented: {fix}")
