"""The fastai half of bench/generative.py's `GANLearner.wgan` timing. Runs only in fastai's side venv.

The course's GAN DataBlock on the digit PNGs under `--dir/<class>/` (`generate_noise` inputs, grey images,
`Resize(32)`, `Normalize.from_stats([.5], [.5])`, bs `--bs`), fastai's `basic_generator(32, 1,
n_features=--nf)` and `basic_critic(32, 1, n_features=--nf, norm_type=None)` (the DCGAN layout ember's
functions build: bench/generative.py prints both parameter counts), `GANLearner.wgan` with RMSProp without
momentum at lr 5e-5 and no weight decay (ember's `wgan` defaults), and `fit` until `--steps` generator
steps. Writes the time at which each generator step ended, the parameter count and fastai's version as
JSON to `--out`.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import fastai
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.vision.all import (
    DataBlock,
    ImageBlock,
    IndexSplitter,
    Normalize,
    PILImageBW,
    Resize,
    RMSProp,
    TransformBlock,
    get_image_files,
    set_seed,
)
from fastai.vision.gan import GANLearner, basic_critic, basic_generator, generate_noise


class GenSteps(Callback):
    """Records when each generator step ends; stops the fit after `n` of them."""

    order = 90

    def __init__(self, n: int) -> None:
        self.n, self.times = n, []

    def after_batch(self) -> None:
        if self.learn.training and self.learn.model.gen_mode:
            self.times.append(time.perf_counter())
            if len(self.times) >= self.n:
                raise CancelFitException()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, required=True, help="the training digits: <class>/*.png")
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON result")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--nf", type=int, default=32)
    parser.add_argument("--bs", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dblock = DataBlock(
        blocks=(TransformBlock, ImageBlock(cls=PILImageBW)), get_x=generate_noise, get_items=get_image_files,
        splitter=IndexSplitter([]), item_tfms=Resize(32), batch_tfms=Normalize.from_stats([0.5], [0.5]),
    )  # fmt: skip
    dls = dblock.dataloaders(args.dir, bs=args.bs)
    set_seed(args.seed)
    gen = basic_generator(32, 1, n_features=args.nf)
    critic = basic_critic(32, 1, n_features=args.nf, norm_type=None)
    opt = partial(RMSProp, mom=0.0, wd=0.0)
    learn = GANLearner.wgan(dls, gen, critic, opt_func=opt, lr=5e-5, show_img=False)
    clock = GenSteps(args.steps)
    with learn.no_bar(), learn.no_logging():
        learn.fit(args.steps * 6 // len(dls.train) + 2, 5e-5, cbs=clock)
    result = {
        "fastai_version": fastai.__version__,
        "times": clock.times,
        "n_params": sum(p.numel() for p in learn.model.parameters()),
    }
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
