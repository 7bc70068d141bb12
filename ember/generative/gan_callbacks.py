"""The callbacks a `GANLearner` trains with: `GANTrainer` (its own bookkeeping), the switchers that say
which network trains on each batch, the critic's learning-rate multiplier and the per-epoch sample grid.

Which network trains is `learn.model.gen_mode`; a switcher sets it through `learn.switch(gen_mode)`.

>>> learn = GANLearner.wgan(dls, generator, critic, switcher=FixedGANSwitcher(n_crit=5))  # doctest: +SKIP
>>> learn.fit(10, cbs=[GANDiscriminativeLR(5.0), GANSampleGrid(path="samples")])  # doctest: +SKIP
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from ember.callbacks.core import Callback
from ember.metrics.core import Metric

__all__ = [
    "AdaptiveGANSwitcher",
    "FixedGANSwitcher",
    "GANDiscriminativeLR",
    "GANDivergedError",
    "GANSampleGrid",
    "GANTrainer",
]

NETS = ("generator", "critic")


class GANDivergedError(FloatingPointError):
    """A GAN's loss became NaN or infinite: the message names the network that diverged."""


class _TrainLossColumn(Metric):
    """A column of the epoch table filled by `GANTrainer`: the mean of one network's training losses over
    the epoch (a GAN's validation set is often empty, so these are not validation metrics)."""

    def __init__(self, name: str) -> None:
        self.name, self.mean = name, None

    def reset(self) -> None:  # the value comes from the training pass, which GANTrainer averages
        pass

    def accumulate(self, pred: Tensor, *yb: Tensor) -> None:
        pass

    @property
    def value(self) -> float | None:
        return self.mean


class GANTrainer(Callback):
    """A `GANLearner`'s bookkeeping: starts each fit with the network `gen_first` says, draws new noise for
    every training batch, keeps `gen_loss` / `crit_loss` (each network's mean training loss over the epoch)
    in the epoch table and the recorder, stops with `GANDivergedError` on a NaN/inf loss, naming the network,
    and gives each parameter back its `requires_grad` when the fit ends.

    Losses are checked each batch on a CPU; on an accelerator every `every` batches (default 16), in one read.
    """

    order = -25  # before the Recorder (-20): its after_epoch must find this epoch's columns filled

    def __init__(self, every: int | None = None) -> None:
        self.every = every
        self.columns = {net: _TrainLossColumn(name) for net, name in zip(NETS, ("gen_loss", "crit_loss"))}

    def before_fit(self) -> None:
        learn = self.learn
        learn.metrics = [m for m in learn.metrics if m not in self.columns.values()]
        learn.metrics += list(self.columns.values())
        self._every = self.every or (1 if learn.dls.device.type == "cpu" else 16)
        self._pending: list[tuple[int, int, str, Tensor]] = []
        learn.switch(learn.gen_first, force=True)

    def before_train(self) -> None:
        # The loop put the whole model in train mode: put the resting network back in eval (switch_eval).
        self.learn.switch(self.learn.model.gen_mode, force=True)
        self._losses: dict[str, list[Tensor]] = {net: [] for net in NETS}

    def before_batch(self) -> None:
        learn = self.learn
        if learn.training and learn.noise_input:  # cached items would give each image the same noise
            learn.xb = (torch.randn_like(learn.xb[0]),)

    def after_loss(self) -> None:
        learn = self.learn
        if not learn.training or learn.loss is None:
            return
        net = NETS[0] if learn.model.gen_mode else NETS[1]
        self._losses[net].append(learn.loss)
        self._pending.append((learn.epoch, learn.iter, net, learn.loss))
        if len(self._pending) >= self._every:
            self._check()

    def after_train(self) -> None:
        self._check()
        self._restore_flags()  # until the next training pass: the recorder sees what the user froze
        for net, col in self.columns.items():
            losses = self._losses[net]
            col.mean = torch.stack(losses).float().mean().item() if losses else None

    def after_epoch(self) -> None:
        rec, metrics = self.learn.recorder, self.learn.metrics
        for col in self.columns.values():
            if col in metrics and len(rec.valid_values) == 1 + len(metrics):
                rec.valid_values[1 + metrics.index(col)] = col.mean

    def cleanup(self) -> None:
        self._restore_flags()
        self.learn.trainable = {}

    def _restore_flags(self) -> None:
        for p, flag in self.learn.trainable.items():
            p.requires_grad_(flag)

    def _check(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        finite = torch.isfinite(torch.stack([loss.float() for *_, loss in pending]))
        if bool(finite.all()):
            return
        epoch, batch, net, loss = pending[int((~finite).nonzero()[0])]
        raise GANDivergedError(_diverged_message(self.learn, net, float(loss), epoch, batch))


def _diverged_message(learn: Any, net: str, loss: float, epoch: int, batch: int) -> str:
    # A network whose weights are no longer finite diverged at its last step, whichever loss showed it.
    broken = [
        n for n in NETS if not all(torch.isfinite(p).all() for p in getattr(learn.model, n).parameters())
    ]
    culprit = broken[0] if broken else net
    return (
        f"GANLearner: the {net}'s loss became {loss} at epoch {epoch}, batch {batch}: the {culprit} diverged"
        f"{' (its weights are no longer finite)' if broken else ''}. Try a lower learning rate (e.g. lr=1e-4 "
        "or less), the gradient penalty (GANLearner.wgan_gp) or weight clipping (clip=0.01) to keep the "
        "critic in check, and check the data for NaN/inf values; reload a saved state before going on"
    )


class FixedGANSwitcher(Callback):
    """Train the critic on `n_crit` batches, then the generator on `n_gen`, and so on (the critic first
    unless `gen_first`). The turn is read from the fit's batch count, so a resumed fit keeps its turns.

    >>> learn = GANLearner.wgan(dls, generator, critic, switcher=FixedGANSwitcher(n_crit=5))  # doctest: +SKIP
    """

    def __init__(self, n_crit: int = 1, n_gen: int = 1) -> None:
        if n_crit < 1 or n_gen < 1:
            raise ValueError(f"FixedGANSwitcher: n_crit={n_crit}, n_gen={n_gen}; each needs at least 1 step")
        self.n_crit, self.n_gen = n_crit, n_gen

    def before_batch(self) -> None:
        learn = self.learn
        if not learn.training:
            return
        k = learn.train_iter % (self.n_crit + self.n_gen)
        learn.switch(k < self.n_gen if learn.gen_first else k >= self.n_crit)


class AdaptiveGANSwitcher(Callback):
    """Switch to the critic once the generator's loss is under `gen_thresh`, and to the generator once the
    critic's is under `critic_thresh`; a threshold of None switches after every step.

    >>> switcher = AdaptiveGANSwitcher(critic_thresh=0.65)  # the super-resolution GAN's  # doctest: +SKIP
    """

    def __init__(self, gen_thresh: float | None = None, critic_thresh: float | None = None) -> None:
        self.gen_thresh, self.critic_thresh = gen_thresh, critic_thresh

    def after_step(self) -> None:
        learn = self.learn
        thresh = self.gen_thresh if learn.model.gen_mode else self.critic_thresh
        if thresh is None or learn.loss.item() < thresh:
            learn.switch(not learn.model.gen_mode)


class GANDiscriminativeLR(Callback):
    """Multiply the critic's learning rate by `mult_lr` on the batches where it trains.

    >>> learn.fit(10, 1e-4, cbs=GANDiscriminativeLR(mult_lr=5.0))  # doctest: +SKIP
    """

    order = 70  # after ParamScheduler (60) has set this batch's learning rates

    def __init__(self, mult_lr: float = 5.0) -> None:
        self.mult_lr = mult_lr
        self._saved: list[float] | None = None

    def before_batch(self) -> None:
        learn = self.learn
        if not learn.training or learn.model.gen_mode:
            return
        groups = learn.opts[1].param_groups  # the critic's optimizer
        self._saved = [g["lr"] for g in groups]
        for g in groups:
            g["lr"] *= self.mult_lr

    def after_batch(self) -> None:
        if self._saved is not None:
            for g, lr in zip(self.learn.opts[1].param_groups, self._saved):
                g["lr"] = lr
            self._saved = None


class GANSampleGrid(Callback):
    """After each epoch, `n` images generated from the same noise (`seed`), denormalised, as one grid: kept
    in `learn.sample_grids` as `(epoch, PIL image)` (epochs counted from 0 across fits), written to
    `path/epoch_<k>.png` when `path` is given (under `learn.path` when relative), shown in a notebook when
    `show`. `GANLearner(show_img=True)` adds one.

    >>> learn.fit(5, cbs=GANSampleGrid(path="samples")); learn.sample_grids[-1][1]  # doctest: +SKIP
    """

    order = 50

    def __init__(
        self, n: int = 16, seed: int = 0, path: str | Path | None = None, show: bool = False
    ) -> None:
        self.n, self.seed, self.path, self.show = n, seed, path, show

    def after_epoch(self) -> None:
        learn = self.learn
        if any(cb.undoes_fit for cb in learn.cbs):  # lr_find's trial epochs are undone
            return
        epoch, grid = learn.epochs_trained - 1, image_grid(learn.generate(self.n, seed=self.seed))
        learn.sample_grids.append((epoch, grid))
        if self.path is not None:
            folder = learn.path / self.path
            folder.mkdir(parents=True, exist_ok=True)
            grid.save(folder / f"epoch_{epoch}.png")
        if self.show:
            from IPython.display import display

            display(grid)


def image_grid(imgs: Tensor, ncols: int | None = None, pad: int = 2) -> Image.Image:
    """Images `(n, c, h, w)` in [0, 1] (c = 1 or 3) side by side, `ncols` a row (default about sqrt(n)),
    `pad` white pixels between them: one PIL image ('L' or 'RGB')."""
    n, c, h, w = imgs.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = math.ceil(n / ncols)
    canvas = torch.ones(c, pad + nrows * (h + pad), pad + ncols * (w + pad))
    for i, img in enumerate(imgs.float().cpu()):
        top, left = pad + (i // ncols) * (h + pad), pad + (i % ncols) * (w + pad)
        canvas[:, top : top + h, left : left + w] = img
    pixels = (canvas * 255).round().clamp(0, 255).to(torch.uint8)
    if c == 1:
        return Image.fromarray(pixels[0].numpy(), mode="L")
    return Image.fromarray(pixels.permute(1, 2, 0).numpy(), mode="RGB")


def in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (where a grid can be displayed)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"
