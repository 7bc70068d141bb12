"""A training run that checkpoints every epoch; used by test_resume.py, which kills and resumes it.

usage: resumable_train.py PATH N_EPOCH [--resume NAME] [--sleep SECONDS]
Prints one JSON line at the end: the epochs it trained and the final validation loss.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn
from torch.utils.data import TensorDataset

from ember.basics import Callback, CrossEntropyLossFlat, DataLoaders, Learner, SaveModelCallback, set_seed


class Slow(Callback):
    """Sleeps after each epoch, so the test has time to kill the process mid-run."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def after_epoch(self) -> None:
        time.sleep(self.seconds)


class Epochs(Callback):
    def __init__(self) -> None:
        self.seen: list[int] = []

    def before_epoch(self) -> None:
        self.seen.append(self.learn.epoch)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("path")
    p.add_argument("n_epoch", type=int)
    p.add_argument("--resume")
    p.add_argument("--sleep", type=float, default=0.0)
    args = p.parse_args()
    torch.set_num_threads(1)  # runs beside the other test worker on two cores
    set_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2000, 20, generator=g)
    w = torch.randn(20, 4, generator=g)
    y = (x @ w + 0.5 * torch.randn(2000, 4, generator=g)).argmax(1)
    dls = DataLoaders.from_dsets(TensorDataset(x[:1600], y[:1600]), TensorDataset(x[1600:], y[1600:]), bs=64)
    model = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 4))
    epochs = Epochs()
    learn = Learner(
        dls, model, CrossEntropyLossFlat(), path=args.path, cbs=[Slow(args.sleep), epochs], quiet=True
    )
    start = 0
    if args.resume:
        start = learn.load(args.resume).epoch + 1
    save = SaveModelCallback(every_epoch=True, with_opt=True)
    learn.fit_one_cycle(args.n_epoch, 1e-2, start_epoch=start, cbs=save)
    print(json.dumps({"epochs": epochs.seen, "valid_loss": learn.recorder.values[-1][1]}))


if __name__ == "__main__":
    main()
