"""Shared fixtures: tiny synthetic data sets that train in well under a second."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # plots in tests never need a screen

import pytest
import torch
from browser import browser  # noqa: F401 - the shared headless-Chromium fixture, for every test file
from torch import nn
from torch.utils.data import TensorDataset

from ember.data import DataLoaders

# The suite runs as two pytest-xdist workers on two cores: a second torch thread per worker would make
# the workers' OpenMP threads fight over the cores, and tiny ops then take tens of milliseconds.
torch.set_num_threads(1)


def linear_dls(n: int = 512, bs: int = 32, seed: int = 0) -> DataLoaders:
    """y = 3x - 2 (+ noise), x in R^1."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, generator=g)
    y = 3 * x - 2 + 0.01 * torch.randn(n, 1, generator=g)
    cut = int(n * 0.8)
    train, valid = TensorDataset(x[:cut], y[:cut]), TensorDataset(x[cut:], y[cut:])
    return DataLoaders.from_dsets(train, valid, bs=bs, device="cpu")


def blobs_dls(n: int = 1000, n_classes: int = 3, bs: int = 32, seed: int = 0) -> DataLoaders:
    """Gaussian blobs in 2-d, one per class, well separated."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[0.0, 4.0], [4.0, -2.0], [-4.0, -2.0], [0.0, -6.0]])[:n_classes]
    y = torch.randint(0, n_classes, (n,), generator=g)
    x = centers[y] + torch.randn(n, 2, generator=g)
    cut = int(n * 0.8)
    train, valid = TensorDataset(x[:cut], y[:cut]), TensorDataset(x[cut:], y[cut:])
    return DataLoaders.from_dsets(train, valid, bs=bs, device="cpu")


def mlp(n_in: int = 2, n_out: int = 3, bn: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Linear(n_in, 16)]
    if bn:
        layers.append(nn.BatchNorm1d(16))
    layers += [nn.ReLU(), nn.Linear(16, n_out)]
    return nn.Sequential(*layers)


@pytest.fixture(autouse=True)
def tmp_cwd(tmp_path, monkeypatch):
    """Every test runs in its own empty folder: a learner writes exports, reports and checkpoints to the
    working folder by default, and none of that may land in the checkout."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
