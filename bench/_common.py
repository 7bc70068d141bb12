"""What every half of the loop-overhead benchmark shares: the data, the model, the plain loop, the timer.

No ember and no fastai imports here: `_fastai_loop.py` imports this module inside fastai's side venv.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

Batches = list[tuple[Tensor, Tensor]]

SEED = 42
LR = 1e-3
# ember's and fastai's `Adam`: AdamW with these, and no weight decay on biases and BatchNorm.
BETAS, EPS, WD = (0.9, 0.99), 1e-5, 0.01


@dataclass
class Config:
    runs: int = 5
    epochs: int = 2
    n_train: int = 60  # batches
    n_valid: int = 15  # batches
    bs: int = 64


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", type=int, default=Config.runs, help="timed runs of each loop")
    parser.add_argument("--epochs", type=int, default=Config.epochs, help="epochs per run")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke test")
    # torch's default is one thread per core; on a machine shared with other jobs, 1 thread avoids the
    # many-fold slow-downs of oversubscribed OpenMP threads that drown the overhead being measured.
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")


def config_from(args: argparse.Namespace) -> Config:
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.quick:
        return Config(runs=2, epochs=1, n_train=4, n_valid=2, bs=16)
    return Config(runs=args.runs, epochs=args.epochs)


def make_batches(cfg: Config, seed: int = SEED) -> tuple[Batches, Batches]:
    """MNIST-shaped synthetic data, pre-made once: each class is a fixed random image plus noise."""
    g = torch.Generator().manual_seed(seed)
    protos = torch.randn(10, 1, 28, 28, generator=g)

    def batch() -> tuple[Tensor, Tensor]:
        y = torch.randint(0, 10, (cfg.bs,), generator=g)
        x = protos[y] + 2.0 * torch.randn(cfg.bs, 1, 28, 28, generator=g)  # (bs, 1, 28, 28)
        return x, y

    return [batch() for _ in range(cfg.n_train)], [batch() for _ in range(cfg.n_valid)]


def make_model(seed: int = SEED) -> nn.Module:
    """A small CNN: 28x28 -> 14x14 -> 7x7 -> 10 logits."""
    torch.manual_seed(seed)

    def block(ni: int, nf: int) -> list[nn.Module]:
        return [nn.Conv2d(ni, nf, 3, padding=1), nn.BatchNorm2d(nf), nn.ReLU(), nn.MaxPool2d(2)]

    return nn.Sequential(*block(1, 16), *block(16, 32), nn.Flatten(), nn.Linear(32 * 7 * 7, 10))


def adamw(model: nn.Module, lr: float = LR) -> torch.optim.Optimizer:
    """What `opt_func=Adam` builds in ember and fastai: decay on weights only (not biases, not BatchNorm)."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=BETAS, eps=EPS, weight_decay=WD)


def plain_fit(model: nn.Module, train: Batches, valid: Batches, n_epoch: int, lr: float = LR) -> float:
    """The reference: a plain PyTorch loop doing the Learner's work. Returns the last valid loss."""
    opt, loss_func = adamw(model, lr), nn.CrossEntropyLoss()
    print("epoch  " + "  ".join(f"{n:<10}" for n in ("train_loss", "valid_loss", "accuracy")) + "time")
    for epoch in range(n_epoch):
        start = time.perf_counter()
        model.train()
        train_loss = 0.0
        for xb, yb in train:
            loss = loss_func(model(xb), yb)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            train_loss += loss.item()
        model.eval()
        valid_loss, correct, n = 0.0, 0, 0
        with torch.no_grad():
            for xb, yb in valid:
                pred = model(xb)
                valid_loss += loss_func(pred, yb).item() * len(yb)
                correct += (pred.argmax(dim=1) == yb).sum().item()
                n += len(yb)
        secs = time.perf_counter() - start
        cells = [train_loss / len(train), valid_loss / n, correct / n]
        print(f"{epoch:<5}  " + "  ".join(f"{c:<10.6f}" for c in cells) + f"{secs:.2f}s")
    return valid_loss / n


def make_mlp(seed: int = SEED) -> nn.Module:
    """A tiny MLP on the same 28x28 batches: so little compute per batch that the loop's own cost shows."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 128), nn.ReLU(), nn.Linear(128, 10))


def interleaved_times(
    fits: dict[str, Callable[[nn.Module], float]], runs: int, make: Callable[[], nn.Module] = make_model
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """One untimed warm-up of each fit, then `runs` timed rounds alternating them; each call gets a
    fresh model with the same seed, built outside the timed region. Returns the times and each fit's
    last result (its final valid loss, which should agree across loops doing the same work)."""
    last = {name: fit(make()) for name, fit in fits.items()}
    times: dict[str, list[float]] = {name: [] for name in fits}
    for _ in range(runs):
        for name, fit in fits.items():
            model = make()
            start = time.perf_counter()
            last[name] = fit(model)
            times[name].append(time.perf_counter() - start)
    return times, last


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def fmt_runs(xs: list[float]) -> str:
    return " ".join(f"{x:.3f}" for x in xs)


def warn_if_busy() -> None:
    """Say so when other work already loads the CPUs: on 2 cores it skews any timing far more than
    the differences being measured."""
    load = os.getloadavg()[0]
    if load > 0.5 * (os.cpu_count() or 1):
        msg = f"load average {load:.2f} on {os.cpu_count()} CPUs before the runs: other work is running"
        print(f"WARNING: {msg}; these timings are unreliable")
