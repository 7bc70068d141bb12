"""How far the learning-rate finder has got, in a few lines on stderr (`ember train --lr auto`, `lr-find`).

`lr_find` hides the epoch table and runs for a minute or more on a CPU; a progress bar shows only on a
terminal, so in a log or a pipe nothing would show that it is working.

>>> with learn.added_cbs(FinderProgress(num_it=100)):  # doctest: +SKIP
...     learn.lr_find(num_it=100)
lr_find: 25/100 batches, lr 5.6e-06, loss 0.6914, 3 s
...
"""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm

from ember.callbacks.core import Callback

__all__ = ["FinderProgress"]


class FinderProgress(Callback):
    """Print a line after each quarter of the finder's `num_it` batches, and one when it stops."""

    order = 60  # after LRFinder (55), which may stop the fit at this batch

    def __init__(self, num_it: int, every: float = 0.25) -> None:
        self.num_it, self.step = num_it, max(1, round(num_it * every))

    def before_fit(self) -> None:
        self.start, self.done = time.perf_counter(), 0
        self._print(f"lr_find: up to {self.num_it} batches at growing learning rates")

    def after_batch(self) -> None:
        if not self.learn.training:
            return
        self.done += 1
        if self.done % self.step == 0 and self.done < self.num_it:
            self._print(self._line())

    def after_fit(self) -> None:
        stopped = " (the loss diverged)" if self.done < self.num_it else ""
        self._print(self._line() + stopped)

    def _line(self) -> str:
        lr = self.learn.opt.param_groups[0]["lr"]
        loss = self.learn.recorder.smooth_loss
        elapsed = time.perf_counter() - self.start
        return f"lr_find: {self.done}/{self.num_it} batches, lr {lr:.1e}, loss {loss:.4f}, {elapsed:.0f} s"

    def _print(self, line: str) -> None:
        tqdm.write(line, file=sys.stderr)  # tqdm.write: above a progress bar when one is showing
