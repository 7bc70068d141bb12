"""Layers the course writes by hand: `Module`, `Embedding`, `SigmoidRange`."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Embedding", "Module", "SigmoidRange", "sigmoid_range"]


class Module(nn.Module):
    """An `nn.Module` whose subclasses' `__init__` need not call `super().__init__()`.

    >>> class DotProduct(Module):
    ...     def __init__(self, n_users, n_movies, n_factors):
    ...         self.user_factors = Embedding(n_users, n_factors)
    ...         self.movie_factors = Embedding(n_movies, n_factors)
    """

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        # Registers the parameter and sub-module dicts before the subclass's __init__ assigns layers.
        nn.Module.__init__(obj)
        return obj

    def __init__(self) -> None:
        # A subclass that does call super().__init__() must not wipe what __new__ set up.
        pass


class Embedding(nn.Embedding):
    """`nn.Embedding` initialised from a normal distribution with `std` (0.01), truncated at 2 std."""

    def __init__(self, ni: int, nf: int, std: float = 0.01) -> None:
        super().__init__(ni, nf)
        nn.init.trunc_normal_(self.weight, std=std, a=-2 * std, b=2 * std)


def sigmoid_range(x: Tensor, lo: float, hi: float) -> Tensor:
    """Squash `x` into `(lo, hi)` with a sigmoid: `sigmoid(x) * (hi - lo) + lo`."""
    return torch.sigmoid(x) * (hi - lo) + lo


class SigmoidRange(nn.Module):
    """A layer applying `sigmoid_range(x, lo, hi)`."""

    def __init__(self, lo: float, hi: float) -> None:
        super().__init__()
        self.lo, self.hi = lo, hi

    def forward(self, x: Tensor) -> Tensor:
        return sigmoid_range(x, self.lo, self.hi)

    def extra_repr(self) -> str:
        return f"lo={self.lo}, hi={self.hi}"
