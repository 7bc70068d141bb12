"""The Learner's switches: mixed precision, memory layout, and hiding the progress output.

`Learner` is a `Switches`: `to_fp16` / `to_bf16` / `to_fp32`, `to_channelslast` / `to_contiguous` and the
`no_bar` / `no_logging` blocks come from here. Each adds, removes or adjusts one callback.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Self

import torch

from ember.callbacks.channels_last import ChannelsLast
from ember.callbacks.mixed_precision import MixedPrecision

if TYPE_CHECKING:
    from ember.callbacks.core import Callback
    from ember.callbacks.progress import ProgressCallback

__all__ = ["Switches"]


class Switches:
    """Precision, layout and output switches of a Learner; each returns the learner, so they chain.

    >>> learn.to_fp16().fit_one_cycle(1)  # doctest: +SKIP
    """

    cbs: list[Callback]
    model: torch.nn.Module
    progress: ProgressCallback

    def to_fp16(self, force: bool = False) -> Self:
        """Mixed precision: float16 with a gradient scaler on CUDA. On a CPU, bfloat16 where the CPU has
        bfloat16 instructions; on one without (emulated bfloat16 is several times slower) training stays in
        float32 and a warning says so. `force=True` trains in bfloat16 anyway.

        >>> learn.to_fp16().fit_one_cycle(1)  # doctest: +SKIP
        """
        return self._set_precision(torch.float16, force)

    def to_bf16(self) -> Self:
        """Mixed precision in bfloat16 (CPU and CUDA), no gradient scaler needed, whatever the CPU."""
        return self._set_precision(torch.bfloat16)

    def to_fp32(self) -> Self:
        """Back to full precision."""
        return self._set_precision(None)

    def _set_precision(self, dtype: torch.dtype | None, force: bool = False) -> Self:
        self.remove_cbs([cb for cb in self.cbs if isinstance(cb, MixedPrecision)])
        if dtype is not None:
            self.add_cb(MixedPrecision(dtype, force))
        return self

    def to_channelslast(self) -> Self:
        """Channels-last layout for the model and its image batches (faster convolutions)."""
        self.to_contiguous()
        return self.add_cb(ChannelsLast())

    def to_contiguous(self) -> Self:
        """Back to the default layout."""
        self.remove_cbs([cb for cb in self.cbs if isinstance(cb, ChannelsLast)])
        self.model.to(memory_format=torch.contiguous_format)
        return self

    @contextlib.contextmanager
    def no_bar(self) -> Iterator[Self]:
        """Hide the progress bar inside a `with` block (the epoch table still prints)."""
        old, self.progress.show_bar = self.progress.show_bar, False
        try:
            yield self
        finally:
            self.progress.show_bar = old

    @contextlib.contextmanager
    def no_logging(self) -> Iterator[Self]:
        """Hide the epoch table inside a `with` block."""
        old, self.progress.show_table = self.progress.show_table, False
        try:
            yield self
        finally:
            self.progress.show_table = old
