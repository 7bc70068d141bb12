"""CSVLogger: the epoch table, one row per epoch, in a CSV file."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ember.callbacks.core import Callback
from ember.core.utils import atomic_write

__all__ = ["CSVLogger"]


class CSVLogger(Callback):
    """Write the epoch table to `learn.path / fname` after each epoch.

    The file is rewritten atomically each epoch, so a crash never leaves a half-written row; with
    `append=True` the rows of an earlier run in the same file are kept.
    """

    order = 65  # after the Recorder has logged the epoch

    def __init__(self, fname: str = "history.csv", append: bool = False) -> None:
        self.fname, self.append = fname, append

    @property
    def path(self) -> Path:
        return self.learn.path / self.fname

    def before_fit(self) -> None:
        header = self.learn.recorder.metric_names
        if self.append and self.path.exists():
            with open(self.path, newline="") as f:
                self.rows = list(csv.reader(f))
        else:
            self.rows = [header]

    def after_epoch(self) -> None:
        self.rows.append(["" if v is None else v for v in self.learn.recorder.log])
        buf = io.StringIO()
        csv.writer(buf).writerows(self.rows)
        with atomic_write(self.path, "w") as f:
            f.write(buf.getvalue())

    def read_log(self):
        """The file as a pandas DataFrame."""
        import pandas as pd

        return pd.read_csv(self.path)
