"""The fastai half of bench/loop_overhead.py. Runs only inside fastai's side venv, never in ember's.

Times the plain loop and fastai's `Learner.fit` on the same pre-made batches, interleaved in this one
process, and writes `{"plain_s": [...], "fastai_s": [...], ...}` as JSON to `--out`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import fastai
import fastprogress.fastprogress as fp
import torch
from _common import add_args, config_from, interleaved_times, make_batches, plain_fit
from fastai.vision.all import Adam, CrossEntropyLossFlat, DataLoaders, Learner, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    add_args(parser)
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON result")
    args = parser.parse_args()
    cfg = config_from(args)
    train, valid = make_batches(cfg)

    def fastai_fit(model) -> float:
        # The pre-made lists serve as loaders, as they do for ember; fastai's default callbacks
        # (Recorder with metrics, ProgressCallback) stay on.
        learn = Learner(
            DataLoaders(train, valid),
            model,
            loss_func=CrossEntropyLossFlat(),
            opt_func=Adam,
            metrics=accuracy,
        )
        learn.fit(cfg.epochs, lr=1e-3)
        return learn.recorder.values[-1][1]

    def plain(model) -> float:
        return plain_fit(model, train, valid, cfg.epochs)

    times, last = interleaved_times({"plain": plain, "fastai": fastai_fit}, cfg.runs)
    # fastprogress draws its console bar when `printing()` is true; in fastprogress 1.1.x that check reads
    # `stdout.isatty` without calling it, so the bar is drawn even into a pipe.
    result = {
        "plain_s": times["plain"],
        "fastai_s": times["fastai"],
        "plain_valid_loss": last["plain"],
        "fastai_valid_loss": last["fastai"],
        "fastai_version": fastai.__version__,
        "bar_drawn": bool(fp.printing()),
        "python": sys.version.split()[0],
        "threads": torch.get_num_threads(),
    }
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
