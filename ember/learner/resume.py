"""Exact resume: a checkpoint holding everything a run's future depends on, and `fit(..., resume=name)`,
which continues from it as if the run had never stopped.

`CheckpointCallback` writes a resumable checkpoint after every epoch and, with `every_n_batches=N`,
after every N training batches. It is an ordinary checkpoint (`learn.load` reads its model and
optimizer) plus the random states of Python, NumPy and torch (CPU and CUDA) as byte tensors, and as
JSON: where the run stood (epoch, batches done in it, `train_iter`), the fit's length, the gradient
scaler's state and the Recorder's history (`Recorder.state_dict`), so the loss curves go on as the
uninterrupted run's would. Every optimizer of `learn.opts` is saved and restored.

Where the randomness comes from: the training loader draws its epoch's order from the global torch
generator when its pass starts; augmentations draw from Python's `random` (item transforms) and torch
(batch transforms), dropout from torch. A checkpoint taken mid-epoch therefore also keeps the random
states from the start of its pass: resuming restores those, draws the batches already trained on again
(same order, same draws, no training), restores the states saved after the last trained batch and
trains on. Loader workers (`num_workers > 0`) keep random states of their own that are not saved: with
them, an epoch resumed mid-way sees another order and other item augmentations.

>>> save = CheckpointCallback(every_n_batches=200)  # doctest: +SKIP
>>> learn.fit_one_cycle(8, 1e-2, cbs=save)  # doctest: +SKIP
>>> learn.fit_one_cycle(8, 1e-2, cbs=save, resume="checkpoint")  # after a crash: the same call, resumed
"""

from __future__ import annotations

import json
import math
import random
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ember.callbacks.core import Callback
from ember.callbacks.schedule import ParamScheduler
from ember.core.optimizer import get_hyper
from ember.learner.checkpoint import load_state, read_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from ember.learner.learner import Learner

__all__ = [
    "CheckpointCallback",
    "ResumeCallback",
    "checkpoint_file",
    "read_run",
    "rng_state",
    "set_rng_state",
]


def checkpoint_file(learn: Learner, name: str | Path) -> Path:
    """Where `learn.save(name)` writes: `learn.path / learn.model_dir / f"{name}.safetensors"`."""
    return learn.path / learn.model_dir / f"{name}.safetensors"


# ---- random states ------------------------------------------------------------------------------
def _bytes(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a).view(np.uint8).copy())


def rng_state() -> dict[str, Tensor]:
    """Python's, NumPy's and torch's (CPU, and CUDA once used) random states, as tensors."""
    _, words, gauss = random.getstate()  # 624 Mersenne Twister words and the position (625 in all)
    _, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": _bytes(np.array(words, dtype=np.uint32)),
        "python_gauss": torch.tensor([gauss is not None, gauss or 0.0], dtype=torch.float64),
        "numpy": _bytes(keys.astype(np.uint32)),
        "numpy_extra": torch.tensor([pos, has_gauss, cached], dtype=torch.float64),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_initialized():
        state |= {f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())}
    return state


def set_rng_state(state: dict[str, Tensor]) -> None:
    """Restore what `rng_state` returned (its tensors may be on any device)."""
    words = state["python"].cpu().numpy().view(np.uint32)
    has_gauss, gauss = state["python_gauss"].tolist()
    random.setstate((3, tuple(int(w) for w in words), gauss if has_gauss else None))
    pos, np_has_gauss, cached = state["numpy_extra"].tolist()
    np.random.set_state(
        ("MT19937", state["numpy"].cpu().numpy().view(np.uint32), int(pos), int(np_has_gauss), cached)
    )
    torch.set_rng_state(state["torch"].cpu())
    cuda = [state[f"cuda.{i}"].cpu() for i in range(sum(k.startswith("cuda.") for k in state))]
    if cuda and not torch.cuda.is_available():
        warnings.warn(
            "the checkpoint holds CUDA random states but this machine has no GPU: the resumed run will not "
            "repeat the interrupted one exactly",
            stacklevel=3,
        )
    elif cuda:
        for i, s in enumerate(cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)


def _prefixed(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {f"{prefix}{k}": v for k, v in state.items()}


def _unprefixed(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


# ---- saving ---------------------------------------------------------------------------------------
class CheckpointCallback(Callback):
    """Write a resumable checkpoint to `learn.path/model_dir/{fname}.safetensors` after every epoch and,
    with `every_n_batches=N`, after every N training batches; `fit(..., resume=fname)` continues from
    it exactly. Each write replaces the last one atomically: a crash mid-write leaves the older file.

    >>> learn.fit_one_cycle(8, 1e-2, cbs=CheckpointCallback(every_n_batches=100))  # doctest: +SKIP
    """

    order = 95  # after the Recorder, schedulers (60) and trackers (70) are done with the batch or epoch

    def __init__(self, fname: str | Path = "checkpoint", every_n_batches: int | None = None) -> None:
        if every_n_batches is not None and every_n_batches < 1:
            raise ValueError(
                f"CheckpointCallback: every_n_batches must be a positive number, got {every_n_batches}"
            )
        self.fname, self.every_n_batches = fname, every_n_batches
        self._pass_rng: dict[str, Tensor] = {}

    def _active(self) -> bool:
        # lr_find trains and then undoes it: its fits are no point to resume from.
        return not any(cb.undoes_fit for cb in self.learn.cbs)

    def before_train(self) -> None:
        # The states this pass's order and draws come from (in a resumed pass, ResumeCallback set them).
        if self.every_n_batches:
            self._pass_rng = rng_state()

    def after_batch(self) -> None:
        learn, n = self.learn, self.every_n_batches
        done = learn.iter + 1  # training batches done in this pass
        if learn.training and n and done % n == 0 and done < learn.n_iter and self._active():
            self.save(learn.epoch, done, learn.train_iter + 1)  # the loop counts this batch after its events

    def after_epoch(self) -> None:
        if self._active():
            self.save(self.learn.epoch + 1, 0, self.learn.train_iter)

    def save(self, epoch: int, batch: int, train_iter: int) -> Path:
        """Write the checkpoint for resuming at batch `batch` of epoch `epoch` (`train_iter` batches done)."""
        learn = self.learn
        scaler = learn.grad_scaler
        run = {
            "epoch": epoch, "batch": batch, "train_iter": train_iter, "epochs_trained": learn.epochs_trained,
            "n_epoch": learn.n_epoch, "n_iter": learn.n_iter,
            "frozen": any(not p.requires_grad for p in learn.model.parameters()),  # fine_tune's stage
            "grad_scaler": scaler.state_dict() if scaler is not None else None,
            "recorder": learn.recorder.state_dict(),
        }  # fmt: skip
        tensors = _prefixed(rng_state(), "rng.") | (_prefixed(self._pass_rng, "rng_pass.") if batch else {})
        path = checkpoint_file(learn, self.fname)
        save_checkpoint(path, learn.model, learn.opts, learn.epoch, tensors, {"run": json.dumps(run)})
        return path


# ---- resuming -------------------------------------------------------------------------------------
def read_run(path: Path) -> dict[str, Any]:
    """Where the run that wrote the resumable checkpoint `path` stood; fails if `path` is not one."""
    if not path.exists():
        raise FileNotFoundError(
            f"no checkpoint to resume from at {path}: a CheckpointCallback writes one as it trains "
            "(`ember train` writes OUT/checkpoint.safetensors every epoch)"
        )
    meta = read_checkpoint(path)[1]
    if "run" not in meta:
        raise ValueError(
            f"{path} holds a model but no run state to resume: it was written by learn.save or "
            "SaveModelCallback; resume from the file a CheckpointCallback writes"
        )
    return json.loads(meta["run"])


class ResumeCallback(Callback):
    """Added by `fit(..., resume=name)`: puts the model, optimizer, gradient scaler, Recorder and random
    states back as a `CheckpointCallback` saved them, and starts the loop where that run stood."""

    # before_fit: after the other callbacks have reset themselves; before_train: before CheckpointCallback
    order = 94

    def __init__(self, path: Path) -> None:
        self.path = path
        self.run = read_run(path)  # fails now, before training, on a missing or wrong file
        self._skip = 0

    def before_fit(self) -> None:
        learn, run = self.learn, self.run
        self._check_fit_length()
        tensors, meta = read_checkpoint(self.path)
        load_state(self.path, tensors, meta, learn.model, learn.opts, strict=True)
        self._check_schedule()
        self._load_grad_scaler()
        learn.recorder.load_state_dict(run["recorder"])
        learn.start_epoch, learn.train_iter = run["epoch"], run["train_iter"]
        learn.epochs_trained = run["epochs_trained"]
        self._rng, self._pass_rng = _unprefixed(tensors, "rng."), _unprefixed(tensors, "rng_pass.")
        self._skip = run["batch"]
        if not self._skip:  # at an epoch's end: the next draws are the next epoch's, whenever it starts
            set_rng_state(self._rng)

    def before_train(self) -> None:
        if not self._skip:
            return
        set_rng_state(self._pass_rng)
        self.learn.dl = _SkipAhead(self.learn.dl, self._skip, self._rng)
        self._skip = 0

    def _check_fit_length(self) -> None:
        learn, run, again = self.learn, self.run, "resume with the same data, batch size and fit arguments"
        if learn.n_iter != run["n_iter"]:
            raise ValueError(f"{self.path} was saved by a run with {run['n_iter']} training batches an "
                             f"epoch; this one has {learn.n_iter}: {again}")  # fmt: skip
        if learn.n_epoch != run["n_epoch"]:
            raise ValueError(f"{self.path} was saved during a fit of {run['n_epoch']} epochs; this fit has "
                             f"{learn.n_epoch}: {again}")  # fmt: skip

    def _check_schedule(self) -> None:
        """The schedules of this fit must give the hyper-parameters the saved run had at its last batch."""
        learn, done = self.learn, self.run["train_iter"]
        pos = (done - 1) / (learn.n_epoch * learn.n_iter)
        for cb in learn.cbs:
            if not isinstance(cb, ParamScheduler) or done == 0:
                continue
            opts = learn.opts if cb.opt_idx is None else [learn.opts[cb.opt_idx]]
            for opt, name in ((opt, name) for opt in opts for name in ("lr", "mom")):
                saved, ours = get_hyper(opt, name), [f(pos) for f in cb.scheds.get(name, [])]
                if ours and not all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(saved, ours)):
                    raise ValueError(
                        f"{self.path}: after {done} batches the saved run's {name} was {saved[-1]:.6g}; this "
                        f"fit's schedule gives {ours[-1]:.6g} there: resume with the interrupted call's "
                        "arguments (lr, div, pct_start, moms, ...)"
                    )

    def _load_grad_scaler(self) -> None:
        saved, scaler = self.run["grad_scaler"], self.learn.grad_scaler
        if (saved is None) != (scaler is None):
            had, has = ("a" if saved is not None else "no"), ("one" if scaler is not None else "none")
            raise ValueError(f"{self.path} was saved with {had} float16 gradient scaler and this learner has "
                             f"{has}: call to_fp16() (or not) as the interrupted run did")  # fmt: skip
        if scaler is not None:
            scaler.load_state_dict(saved)


class _SkipAhead:
    """The training loader of a pass resumed at batch `first_batch`: it draws the batches before it
    again (so the loader's order and random draws stay the interrupted pass's) without yielding them,
    restores `rng`, the states saved after them, and yields the rest."""

    def __init__(self, dl: Any, first_batch: int, rng: dict[str, Tensor]) -> None:
        self.dl, self.first_batch, self.rng = dl, first_batch, rng
        self.n_inp = getattr(dl, "n_inp", 1)

    def __iter__(self) -> Iterator:
        it = iter(self.dl)
        for i in range(self.first_batch):
            if next(it, None) is None:
                raise ValueError(f"resume: the training loader ended after {i} batches; the checkpoint is at "
                                 f"batch {self.first_batch}")  # fmt: skip
        set_rng_state(self.rng)
        yield from it

    def __len__(self) -> int:
        return len(self.dl) - self.first_batch
