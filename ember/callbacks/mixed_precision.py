"""Mixed precision: autocast the forward pass and loss; float16 on CUDA also scales the loss."""

from __future__ import annotations

import contextlib
import warnings

import torch

from ember.callbacks.core import Callback

__all__ = ["MixedPrecision", "cpu_has_native_bf16"]

# /proc/cpuinfo flags of CPUs that compute bfloat16 in hardware: x86 AVX512-BF16 (Cooper Lake, Zen 4)
# and AMX (Sapphire Rapids), Arm's BF16 extension (Graviton 3, Neoverse V1).
_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU has bfloat16 instructions, read from the kernel's CPU flags (False where the file
    is missing, e.g. macOS or Windows: use `to_bf16()` there if you know it has them).

    >>> cpu_has_native_bf16()  # doctest: +SKIP
    False
    """
    try:
        with open(cpuinfo) as f:
            lines = [line for line in f if line.startswith(("flags", "Features"))]
    except OSError:
        return False
    return any(_BF16_FLAGS & set(line.partition(":")[2].split()) for line in lines)


class MixedPrecision(Callback):
    """Run the model and loss under `torch.autocast(dtype)`.

    float16 on CUDA uses a `GradScaler`: the loss is scaled before backward, the gradients unscaled
    after it (so clipping sees true norms) and steps whose gradients overflowed are skipped.
    float16 asked for on a CPU becomes bfloat16 (no scaler needed) where the CPU computes bfloat16 in
    hardware. Elsewhere bfloat16 is emulated, several to tens of times slower than float32 (a ResNet-18
    step on an AVX2 CPU), so training stays in float32 and a warning says so once; `force=True` uses
    bfloat16 anyway.
    """

    order = 10

    def __init__(self, dtype: torch.dtype = torch.float16, force: bool = False) -> None:
        self.dtype, self.force = dtype, force
        # Holds the batch's autocast; closed after the loss, after the batch, and at cleanup.
        self._autocast = contextlib.ExitStack()
        self._warned = False

    def _setup(self) -> None:
        device = self.learn.dls.device
        # active_dtype None: no autocast, the model trains in float32
        self.device_type, self.active_dtype = device.type, self._choose_dtype(device.type)
        use_scaler = self.active_dtype == torch.float16
        self.learn.grad_scaler = torch.amp.GradScaler(device.type) if use_scaler else None

    def _choose_dtype(self, device_type: str) -> torch.dtype | None:
        if device_type == "cuda" or self.dtype != torch.float16:
            return self.dtype
        if device_type == "cpu" and not (self.force or cpu_has_native_bf16()):
            self._warn_once(
                "to_fp16(): this CPU has no bfloat16 instructions (AVX512-BF16, AMX or Arm BF16), so "
                "bfloat16 would be emulated and several times slower than float32; training stays in "
                "float32. Use to_fp16(force=True) or to_bf16() to train in bfloat16 anyway."
            )
            return None
        self._warn_once(f"to_fp16(): float16 autocast needs CUDA; using bfloat16 on this {device_type}")
        return torch.bfloat16

    def _warn_once(self, message: str) -> None:
        if not self._warned:  # _setup runs at every fit
            warnings.warn(message, stacklevel=4)
            self._warned = True

    def before_fit(self) -> None:
        self._setup()

    def before_validate(self) -> None:
        if not hasattr(self, "active_dtype"):  # get_preds / validate before any fit
            self._setup()

    def before_batch(self) -> None:
        if self.active_dtype is None:
            return
        self._autocast.enter_context(torch.autocast(self.device_type, dtype=self.active_dtype))

    def after_loss(self) -> None:
        self._autocast.close()

    def after_backward(self) -> None:
        if self.learn.grad_scaler is not None:
            for opt in self.learn.opts:  # an optimizer that does not step this batch is unscaled for nothing
                self.learn.grad_scaler.unscale_(opt)

    def after_batch(self) -> None:
        self._autocast.close()  # a batch cancelled before its loss must not leave autocast on

    def after_fit(self) -> None:
        self.learn.grad_scaler = None

    def cleanup(self) -> None:
        self._autocast.close()  # an error or Ctrl-C inside forward must not leave autocast on
