"""The fastai half of bench/collab.py. Runs only inside fastai's side venv, never in ember's.

Reads the ratings from `--csv` (user, item, rating columns), times the lesson's recipe (data, learner,
`fit_one_cycle(5, 5e-3, wd=0.1)`) after a short warm-up, and writes the times, the final validation
RMSE and the validation rows' first indices (to check both libraries held out the same rows) as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import fastai
import pandas as pd
from fastai.collab import CollabDataLoaders, collab_learner
from fastai.metrics import rmse


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--csv", type=Path, required=True, help="ratings: user, item, rating columns")
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON result")
    parser.add_argument("--seed", type=int, default=42, help="the random split's seed")
    parser.add_argument("--bs", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    return parser.parse_args()


def recipe(df: pd.DataFrame, seed: int, bs: int, epochs: int) -> tuple[float, float, object]:
    """The lesson's recipe; returns (seconds for data + learner + fit, valid RMSE, learner)."""
    start = time.perf_counter()
    dls = CollabDataLoaders.from_df(df, valid_pct=0.2, seed=seed, bs=bs)
    learn = collab_learner(dls, n_factors=50, y_range=(0, 5.5), metrics=rmse)
    learn.fit_one_cycle(epochs, 5e-3, wd=0.1)
    return time.perf_counter() - start, float(learn.recorder.values[-1][2]), learn


def main() -> None:
    args = parse_args()
    df = pd.read_csv(args.csv)
    recipe(df.iloc[:3000], args.seed, args.bs, 1)  # warm-up: imports and first-call costs, not timed
    total, valid_rmse, learn = recipe(df, args.seed, args.bs, args.epochs)
    result = {
        "total_s": total,
        "valid_rmse": valid_rmse,
        "valid_idx_head": [int(i) for i in learn.dls.valid.items.index[:5]],
        "fastai_version": fastai.__version__,
        "python": sys.version.split()[0],
    }
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
