"""A training run with every source of randomness (shuffling, item and batch augmentation, dropout) that
writes a resumable checkpoint every epoch and every 3 batches; used by test_resume.py, which kills it and
resumes it.

usage: resumable_train.py PATH N_EPOCH [--resume] [--stop-after EPOCH BATCH]
`--stop-after` prints "trained EPOCH BATCH" once that training batch is done, then waits to be killed.
At the end it saves the model as PATH/models/final.safetensors and prints one JSON line: the epochs it
trained, the Recorder's per-batch losses and per-epoch values.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from ember.basics import (
    Callback,
    CheckpointCallback,
    CrossEntropyLossFlat,
    DataLoader,
    DataLoaders,
    Learner,
    set_seed,
)

EVERY = 3  # batches between checkpoints: 8 batches an epoch, so checkpoints at batches 3 and 6


class Augmented(Dataset):
    """Items scaled by Python's `random` and jittered by NumPy's: both generators feed the items."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        jitter = torch.from_numpy(np.random.normal(0.0, 0.05, self.x.shape[1])).float()
        return self.x[i] * random.uniform(0.9, 1.1) + jitter, self.y[i]


def noise(b: tuple) -> tuple:
    """A batch transform drawing from torch's generator."""
    return (b[0] + 0.05 * torch.randn_like(b[0]), *b[1:])


def make_learner(path: str, cbs: list | None = None, **kwargs: Any) -> Learner:
    """The data and learner (`kwargs` go to `Learner`); test_resume.py trains it in-process too."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(320, 10, generator=g)
    y = (x @ torch.randn(10, 3, generator=g)).argmax(1)
    train = DataLoader(Augmented(x[:256], y[:256]), bs=32, shuffle=True, drop_last=True, device="cpu",
                       batch_tfms=[noise])  # fmt: skip
    valid = DataLoader(TensorDataset(x[256:], y[256:]), bs=32, device="cpu")
    model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 3))
    return Learner(DataLoaders(train, valid, device="cpu"), model, CrossEntropyLossFlat(), path=path,
                   cbs=cbs, quiet=True, **kwargs)  # fmt: skip


class StopAfter(Callback):
    """Says on stdout when training batch `batch` of epoch `epoch` is done, then waits to be killed."""

    order = 99  # after the CheckpointCallback has written whatever it writes for this batch

    def __init__(self, epoch: int, batch: int) -> None:
        self.epoch, self.batch = epoch, batch

    def after_batch(self) -> None:
        if self.learn.training and (self.learn.epoch, self.learn.iter) == (self.epoch, self.batch):
            print(f"trained {self.epoch} {self.batch}", flush=True)
            time.sleep(600)


class Epochs(Callback):
    def __init__(self) -> None:
        self.seen: list[int] = []

    def before_epoch(self) -> None:
        self.seen.append(self.learn.epoch)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("path")
    p.add_argument("n_epoch", type=int)
    p.add_argument("--resume", action="store_true")
    p.add_argument("--stop-after", type=int, nargs=2, metavar=("EPOCH", "BATCH"))
    args = p.parse_args()
    torch.set_num_threads(1)  # runs beside the other test worker on two cores
    set_seed(1 if args.resume else 0)  # a resumed run owes nothing to its own seed
    epochs = Epochs()
    cbs = [epochs, *([StopAfter(*args.stop_after)] if args.stop_after else [])]
    learn = make_learner(args.path, cbs)
    save = CheckpointCallback(every_n_batches=EVERY)
    learn.fit_one_cycle(args.n_epoch, 1e-2, cbs=save, resume="checkpoint" if args.resume else None)
    learn.save("final")
    rec = learn.recorder
    print(json.dumps({"epochs": epochs.seen, "losses": rec.losses, "values": rec.values}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
