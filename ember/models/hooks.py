"""Forward hooks as a user-facing tool (feature losses, visualisation, sizing a network), always used
inside a `with` block that removes them, also when the block raises.

>>> with hook_output(model[0]) as h:  # doctest: +SKIP
...     model(xb)
>>> h.stored.shape  # doctest: +SKIP

ember's own models never depend on hooks: a U-Net's encoder returns its skip features.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ember.core.utils import eval_mode
from ember.models.surgery import first_conv

__all__ = ["Hook", "Hooks", "dummy_eval", "hook_output", "hook_outputs", "model_sizes", "num_features_model"]


def _detached(o: Any, detach: bool) -> Any:
    if not detach:
        return o
    if isinstance(o, Tensor):
        return o.detach()
    if isinstance(o, (tuple, list)):
        return type(o)(_detached(t, detach) for t in o)
    return o


class Hook:
    """Stores in `.stored` what `module` puts out on each forward (with `grad`, the gradient of its
    output on each backward). A context manager: leaving the `with` block removes the hook.

    >>> lin = nn.Linear(2, 3)
    >>> with Hook(lin) as h: _ = lin(torch.ones(1, 2))
    >>> h.stored.shape, len(lin._forward_hooks)
    (torch.Size([1, 3]), 0)
    """

    def __init__(self, module: nn.Module, detach: bool = True, grad: bool = False) -> None:
        self.module, self.detach, self.grad = module, detach, grad
        self.stored: Any = None
        if grad:
            self._handle = module.register_full_backward_hook(self._on_backward)
        else:
            self._handle = module.register_forward_hook(self._on_forward)

    def _on_forward(self, module: nn.Module, inputs: tuple, output: Any) -> None:
        self.stored = _detached(output, self.detach)

    def _on_backward(self, module: nn.Module, grad_in: tuple, grad_out: tuple) -> None:
        self.stored = _detached(grad_out[0] if len(grad_out) == 1 else grad_out, self.detach)

    def remove(self) -> None:
        """Unregister the hook; `.stored` keeps the last value. Removing twice is harmless."""
        self._handle.remove()

    def __enter__(self) -> Hook:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


class Hooks:
    """One `Hook` per module, `.stored` their values in order; a context manager removing them all.

    >>> m = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 4))
    >>> with Hooks(m) as hs: _ = m(torch.ones(1, 2))
    >>> [s.shape[1] for s in hs.stored]
    [3, 4]
    """

    def __init__(self, modules: Iterable[nn.Module], detach: bool = True, grad: bool = False) -> None:
        self.hooks: list[Hook] = []
        try:
            for m in modules:
                self.hooks.append(Hook(m, detach, grad))
        except BaseException:
            self.remove()
            raise

    @property
    def stored(self) -> list[Any]:
        return [h.stored for h in self.hooks]

    def __len__(self) -> int:
        return len(self.hooks)

    def __getitem__(self, i: int) -> Hook:
        return self.hooks[i]

    def remove(self) -> None:
        for h in self.hooks:
            h.remove()

    def __enter__(self) -> Hooks:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


def hook_output(module: nn.Module, detach: bool = True, grad: bool = False) -> Hook:
    """A `Hook` storing `module`'s output (or its gradient, with `grad`); use it in a `with` block."""
    return Hook(module, detach, grad)


def hook_outputs(modules: Iterable[nn.Module], detach: bool = True, grad: bool = False) -> Hooks:
    """`Hooks` storing each module's output (or its gradient); use it in a `with` block."""
    return Hooks(modules, detach, grad)


def dummy_eval(m: nn.Module, size: Sequence[int] = (64, 64)) -> Any:
    """`m`'s output for one image of zeros of `size` (channels from its first conv), in eval mode and
    without gradients; `m`'s training mode is restored after.

    >>> dummy_eval(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1)), (5, 7)).shape
    torch.Size([1, 8, 5, 7])
    """
    p = next(m.parameters())
    x = torch.zeros(1, first_conv(m).in_channels, *size, device=p.device, dtype=p.dtype)
    # eval: BatchNorm over one image would be degenerate and would update its running statistics
    with eval_mode(m), torch.no_grad():
        return m(x)


def model_sizes(m: nn.Module, size: Sequence[int] = (64, 64)) -> list[torch.Size]:
    """The output shape of each child of `m` for one `size` image of zeros.

    >>> model_sizes(nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU()), (8, 8))
    [torch.Size([1, 8, 4, 4]), torch.Size([1, 8, 4, 4])]
    """
    with hook_outputs(m.children()) as hooks:
        dummy_eval(m, size)
    return [s.shape for s in hooks.stored]


def num_features_model(m: nn.Module, size: Sequence[int] = (64, 64)) -> int:
    """Channels `m` puts out for a `size` image (its last child's output).

    >>> num_features_model(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 5, 1)))
    5
    """
    return model_sizes(m, size)[-1][1]
