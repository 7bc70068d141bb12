"""Progress output: the epoch table (printed) and a batch progress bar (tqdm)."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm

from ember.callbacks.core import Callback

__all__ = ["ProgressCallback"]


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6f}"
    return str(v)


def _fmt_time(t: float) -> str:
    m, s = divmod(int(round(t)), 60)
    return f"{m:02d}:{s:02d}"


class ProgressCallback(Callback):
    """Print a row per epoch (`show_table`) and show a bar over the batches (`show_bar`).

    The bar is tqdm's, which turns itself off when the output is not a terminal (CI logs, pipes).
    """

    order = 60

    def __init__(self, show_table: bool = True, show_bar: bool = True) -> None:
        self.show_table, self.show_bar = show_table, show_bar
        self.bar: tqdm | None = None

    def before_fit(self) -> None:
        names = self.learn.recorder.metric_names
        self._widths = [max(len(n), 9) for n in names]
        if self.show_table:
            self._print(names)

    def _print(self, cells: list) -> None:
        line = "  ".join(_fmt(c).ljust(w) for c, w in zip(cells, self._widths)).rstrip()
        tqdm.write(line, file=sys.stdout)

    def _open_bar(self) -> None:
        if self.show_bar:
            total = len(self.learn.dl) if hasattr(self.learn.dl, "__len__") else None
            self.bar = tqdm(total=total, leave=False, disable=None, dynamic_ncols=True)

    def before_train(self) -> None:
        self._open_bar()

    def before_validate(self) -> None:
        self._open_bar()

    def after_batch(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def after_train(self) -> None:
        self._close_bar()

    def after_validate(self) -> None:
        self._close_bar()

    def after_epoch(self) -> None:
        if self.show_table:
            log = self.learn.recorder.log
            self._print([*log[:-1], _fmt_time(log[-1])])

    def cleanup(self) -> None:
        self._close_bar()  # after an error or Ctrl-C too, so no half-drawn bar is left behind
