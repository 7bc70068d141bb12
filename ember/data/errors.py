"""The errors ember's data pipeline raises: each names the item, what was expected and what to do."""

from __future__ import annotations

__all__ = ["DataError"]


class DataError(ValueError):
    """Base of every data error ember raises (a missing column, a failing label function, an image
    that cannot be read, a target that does not fit its block). Catch this one to catch them all."""
