"""The errors ember's data pipeline raises: each names the item, what was expected and what to do."""

from __future__ import annotations

__all__ = ["DataError", "DownloadError"]


class DataError(ValueError):
    """Base of every data error ember raises (a missing column, a failing label function, an image
    that cannot be read, a target that does not fit its block). Catch this one to catch them all."""


class DownloadError(DataError, OSError):
    """A data set could not be fetched (offline, refused, cut short, wrong checksum). The message names
    the address and the path where the file can be placed by hand. It is also an `OSError`, so code that
    already catches network errors catches this one."""
