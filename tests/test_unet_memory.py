"""Training a U-Net keeps the process's memory flat from epoch to epoch (fastai's grows: its issue #2946),
and the check that says so does catch a leak.

The resident set size (RSS) is read after every epoch, after `gc.collect()` and glibc's `malloc_trim(0)`.
The trim matters: without it, freed blocks stay in the allocator's heap and the RSS of a leak-free run
jumps by +-6.5 MiB between epochs (measured), far above the leak we want to see. With it, a leak-free run
of 8 epochs moved by under 0.05 MiB, and keeping the predictions of each training batch (4 batches of
8 x 2 x 32 x 32 float32 = 64 KiB each) grew by 0.26 MiB an epoch, exactly their size.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import platform

import pytest
import torch
from torch import Tensor, nn

from ember.callbacks.core import Callback
from ember.data.loaders import DataLoaders
from ember.learner.learner import Learner
from ember.losses import CrossEntropyLossFlat
from ember.vision.all import DiceMulti, DynamicUnet, foreground_acc, set_seed

EPOCHS, SIZE, BS, N_TRAIN, N_VALID = 8, 32, 8, 32, 8
# Growth allowed from the end of epoch 2 to the end of the last (6 epochs): 20x the measured noise of a
# leak-free run, a third of what keeping each training batch's predictions leaks (1.5 MiB).
MAX_GROWTH_MIB = 0.5

_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if platform.system() == "Linux" else None
pytestmark = pytest.mark.skipif(
    _LIBC is None or not hasattr(_LIBC, "malloc_trim") or not os.path.exists("/proc/self/statm"),
    reason="reads the RSS from /proc and returns freed memory with glibc's malloc_trim (Linux only)",
)


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])  # resident pages
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class RSSPerEpoch(Callback):
    """The process's RSS in MiB after each epoch, once the garbage is collected and freed memory returned."""

    order = 100  # after every other callback's after_epoch

    def __init__(self) -> None:
        self.mib: list[float] = []

    def after_epoch(self) -> None:
        gc.collect()
        _LIBC.malloc_trim(0)
        self.mib.append(_rss_mib())


class KeepPredictions(Callback):
    """The leak: a reference to every training batch's predictions (detached, so only their own bytes)."""

    def __init__(self) -> None:
        self.kept: list[Tensor] = []

    def after_batch(self) -> None:
        if self.learn.training:
            self.kept.append(self.learn.pred.detach())


def _masks(n: int, seed: int) -> list[tuple[Tensor, Tensor]]:
    """Random images; the mask is 1 where the red channel is above one half."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, SIZE, SIZE, generator=g)  # (n, 3, SIZE, SIZE)
    return list(zip(x, (x[:, 0] > 0.5).long()))


def _tiny_body() -> nn.Sequential:
    def stage(ni: int, nf: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(ni, nf, 3, 2, 1), nn.BatchNorm2d(nf), nn.ReLU())

    return nn.Sequential(stage(3, 8), stage(8, 16), stage(16, 32), stage(32, 32))


def rss_growth_mib(*extra: Callback) -> float:
    """Train a U-Net (a 4-stage body, skips, pixel-shuffle decoder) with segmentation metrics for EPOCHS
    epochs; the RSS growth from the end of epoch 2 (every buffer and optimizer state exists) to the end."""
    set_seed(0)
    dls = DataLoaders.from_dsets(_masks(N_TRAIN, 0), _masks(N_VALID, 1), bs=BS)
    rss = RSSPerEpoch()
    learn = Learner(dls, DynamicUnet(_tiny_body(), n_out=2, img_size=SIZE), CrossEntropyLossFlat(axis=1),
                    metrics=[foreground_acc, DiceMulti()], cbs=[rss, *extra], quiet=True)  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two OpenMP threads on a busy 2-core machine slow down many-fold
    try:
        learn.fit(EPOCHS, 1e-3)
    finally:
        torch.set_num_threads(threads)
    assert len(rss.mib) == EPOCHS
    return rss.mib[-1] - rss.mib[1]


def test_training_a_unet_for_eight_epochs_keeps_the_process_memory_flat():
    growth = rss_growth_mib()
    assert growth < MAX_GROWTH_MIB, f"RSS grew by {growth:.2f} MiB from epoch 2 to {EPOCHS}"


def test_the_memory_check_reports_a_callback_that_keeps_every_batchs_predictions():
    keep = KeepPredictions()
    growth = rss_growth_mib(keep)
    batches_per_epoch = N_TRAIN // BS
    assert len(keep.kept) == EPOCHS * batches_per_epoch
    kept = keep.kept[2 * batches_per_epoch :]  # those kept after the end of epoch 2
    leaked = sum(t.numel() * t.element_size() for t in kept) / 2**20  # 6 x 4 x 64 KiB = 1.5 MiB
    assert growth > MAX_GROWTH_MIB, f"a leak of {leaked:.2f} MiB went unseen (RSS grew {growth:.2f} MiB)"
    # The growth is what was kept: the check measures the leak, not noise.
    assert growth == pytest.approx(leaked, rel=0.3)
