"""Training-loop overhead: ember's `Learner.fit` against a plain PyTorch loop doing the same work.

Both train the same model on the same pre-made batches (AdamW as ember's `Adam`, validation loss and
accuracy every epoch, one printed line per epoch), in one process, interleaved, after one warm-up each.
Two models: a tiny MLP (so little compute per batch that ember's own cost per batch shows) and a small
CNN. Target: ember / plain <= 1.05. When fastai's side venv exists, `_fastai_loop.py` times fastai's Learner
against the same plain loop in that venv's own process, and both ratios are printed.

    python bench/loop_overhead.py [--runs 5] [--epochs 2] [--quick] [--threads N]
        [--fastai-python PATH | --no-fastai]

Timing never makes this exit non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from _common import (
    LR,
    Config,
    add_args,
    config_from,
    fmt_runs,
    interleaved_times,
    make_batches,
    make_mlp,
    make_model,
    median,
    plain_fit,
    warn_if_busy,
)

from ember.basics import Adam, CrossEntropyLossFlat, DataLoaders, Learner, accuracy

TARGET = 1.05
FASTAI_PYTHON = Path("/opt/fastai-venv/bin/python")
HERE = Path(__file__).resolve().parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_args(parser)
    parser.add_argument("--fastai-python", type=Path, default=FASTAI_PYTHON, help="python of fastai's venv")
    parser.add_argument("--no-fastai", action="store_true", help="skip the fastai comparison")
    return parser.parse_args()


MODELS = {"tiny MLP (784-128-10)": make_mlp, "small CNN": make_model}


def time_plain_and_ember(cfg: Config, make) -> tuple[dict[str, list[float]], dict[str, float]]:
    train, valid = make_batches(cfg)

    def plain(model: torch.nn.Module) -> float:
        return plain_fit(model, train, valid, cfg.epochs)

    def ember(model: torch.nn.Module) -> float:
        dls = DataLoaders(train, valid, device="cpu")
        learn = Learner(dls, model, loss_func=CrossEntropyLossFlat(), opt_func=Adam, metrics=accuracy)
        learn.fit(cfg.epochs, lr=LR)
        return learn.recorder.values[-1][1]  # [train_loss, valid_loss, accuracy]

    return interleaved_times({"plain": plain, "ember": ember}, cfg.runs, make)


def run_fastai(python: Path, args: argparse.Namespace) -> dict | None:
    """Run `_fastai_loop.py` in fastai's venv; its stdout (table and bar) is captured, not shown."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fastai.json"
        cmd = [
            str(python),
            str(HERE / "_fastai_loop.py"),
            "--runs",
            str(args.runs),
            "--epochs",
            str(args.epochs),
        ]
        cmd += ["--quick"] * args.quick + ["--out", str(out)]
        cmd += ["--threads", str(args.threads)] if args.threads is not None else []
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE)
        if proc.returncode != 0 or not out.exists():
            print(f"fastai: the side run failed (exit {proc.returncode}); its stderr ends:")
            print(proc.stderr[-2000:])
            return None
        return json.loads(out.read_text())


def paired_ratios(xs: list[float], refs: list[float]) -> list[float]:
    # Runs of one round are adjacent in time, so their ratio shows whether a slow-down was shared.
    return [x / r for x, r in zip(xs, refs)]


def print_row(name: str, times: list[float]) -> None:
    print(f"  {name:<7} median {median(times):7.3f} s   runs: {fmt_runs(times)}")


def report_ember(cfg: Config, model: str, times: dict[str, list[float]], last: dict[str, float]) -> float:
    print(f"\n== Loop overhead: {cfg.runs} timed runs of each after 1 warm-up, interleaved, one process")
    data = f"{cfg.n_train} train + {cfg.n_valid} valid batches of {cfg.bs} (1x28x28)"
    print(f"   {model}, {data}, {cfg.epochs} epoch(s)/run")
    print(f"   torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    print_row("plain", times["plain"])
    print_row("ember", times["ember"])
    ratio = median(times["ember"]) / median(times["plain"])
    n_batches = cfg.epochs * (cfg.n_train + cfg.n_valid)
    extra = (median(times["ember"]) - median(times["plain"])) / n_batches * 1e6
    per_batch = median(times["plain"]) / n_batches * 1e3
    print(f"  ember's own cost: {extra:.0f} us per batch (the plain loop: {per_batch:.2f} ms per batch)")
    verdict = "met" if ratio <= TARGET else "NOT met"
    print(f"  ember / plain = {ratio:.3f}  (target <= {TARGET}: {verdict})")
    print(f"  per-round ratios: {fmt_runs(paired_ratios(times['ember'], times['plain']))}")
    print(
        f"  final valid loss: plain {last['plain']:.4f}, ember {last['ember']:.4f} (same work: should agree)"
    )
    drawn = "drawn" if sys.stderr.isatty() else "not drawn: stderr is not a terminal"
    print(f"  ember: Recorder + accuracy + ProgressCallback on; epoch table printed; tqdm bar {drawn}")
    return ratio


def report_fastai(res: dict, python: Path, ember_ratio: float) -> None:
    print(f"\n== fastai {res['fastai_version']} ({python}, its own process, same work and plain loop)")
    print(f"   {res['threads']} threads")
    print_row("plain", res["plain_s"])
    print_row("fastai", res["fastai_s"])
    fastai_ratio = median(res["fastai_s"]) / median(res["plain_s"])
    print(f"  fastai / plain = {fastai_ratio:.3f}")
    print(f"  per-round ratios: {fmt_runs(paired_ratios(res['fastai_s'], res['plain_s']))}")
    print(f"  final valid loss: plain {res['plain_valid_loss']:.4f}, fastai {res['fastai_valid_loss']:.4f}")
    bar = "drawn (into a pipe)" if res["bar_drawn"] else "not drawn"
    print(f"  fastai: default callbacks (Recorder + accuracy, ProgressCallback) on; bar {bar}")
    # Each Learner is normalised by the plain loop timed in its own process.
    print(f"  ember / fastai = {ember_ratio / fastai_ratio:.3f}  ((ember/plain) / (fastai/plain))")


def main() -> None:
    args = parse_args()
    cfg = config_from(args)
    warn_if_busy()
    results = {model: time_plain_and_ember(cfg, make) for model, make in MODELS.items()}
    fastai_res = None
    if args.no_fastai:
        print("fastai: skipped (--no-fastai)")
    elif not args.fastai_python.exists():
        print(f"fastai: skipped ({args.fastai_python} not found; pass --fastai-python PATH)")
    else:
        fastai_res = run_fastai(args.fastai_python, args)
    ratios = {model: report_ember(cfg, model, *res) for model, res in results.items()}
    ratio = ratios["small CNN"]  # fastai's side run times the CNN
    if fastai_res is not None:
        report_fastai(fastai_res, args.fastai_python, ratio)


if __name__ == "__main__":
    main()
