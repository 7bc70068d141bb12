"""Mixed precision: autocast the forward pass and loss; float16 on CUDA also scales the loss."""

from __future__ import annotations

import warnings

import torch

from ember.callbacks.core import Callback

__all__ = ["MixedPrecision"]


class MixedPrecision(Callback):
    """Run the model and loss under `torch.autocast(dtype)`.

    float16 on CUDA uses a `GradScaler`: the loss is scaled before backward, the gradients unscaled
    after it (so clipping sees true norms) and steps whose gradients overflowed are skipped.
    float16 asked for on a CPU becomes bfloat16, which CPUs support and which needs no scaler.
    """

    order = 10

    def __init__(self, dtype: torch.dtype = torch.float16) -> None:
        self.dtype = dtype
        self._autocast: torch.autocast | None = None

    def _setup(self) -> None:
        device = self.learn.dls.device
        dtype = self.dtype
        if device.type != "cuda" and dtype == torch.float16:
            warnings.warn("to_fp16(): float16 autocast needs CUDA; using bfloat16 on this CPU", stacklevel=3)
            dtype = torch.bfloat16
        self.device_type, self.active_dtype = device.type, dtype
        use_scaler = dtype == torch.float16
        self.learn.grad_scaler = torch.amp.GradScaler(device.type) if use_scaler else None

    def before_fit(self) -> None:
        self._setup()

    def before_validate(self) -> None:
        if not hasattr(self, "active_dtype"):  # get_preds / validate before any fit
            self._setup()

    def before_batch(self) -> None:
        self._autocast = torch.autocast(self.device_type, dtype=self.active_dtype)
        self._autocast.__enter__()

    def after_loss(self) -> None:
        self._exit()

    def after_backward(self) -> None:
        if self.learn.grad_scaler is not None:
            self.learn.grad_scaler.unscale_(self.learn.opt)

    def after_batch(self) -> None:
        self._exit()  # a batch cancelled before its loss must not leave autocast on

    def after_fit(self) -> None:
        self.learn.grad_scaler = None

    def _exit(self) -> None:
        if self._autocast is not None:
            self._autocast.__exit__(None, None, None)
            self._autocast = None
