"""Segmentation with a pretrained U-Net, side by side with fastai, on real brain MRI slices.

The data: `builtin_data("brain_mri")`, the 217 slices (axial, coronal, sagittal; 240x240 grey PNGs) of
the MNI ICBM152 template, each with a mask of 4 classes (background, other, grey matter, white matter).
The validation set is a fixed 20% of the files (43, drawn with `random.Random(42)`), named explicitly to
both libraries. Each side builds its loaders with a `DataBlock((ImageBlock, MaskBlock(codes)))`, the mask
found by name in `labels/`, `item_tfms=Resize(--size)` and bs `--bs` (no augmentation), then a
`unet_learner` around ember's EfficientNet-Lite0 with its ImageNet weights, normalised with the weights' own
statistics, with two parameter groups (encoder, decoder), and trains `fine_tune(--epochs, --lr)` with the
metrics `foreground_acc` and `DiceMulti()`. Each library cuts the encoder where it does by default: ember's
ends at the last stage (320 channels; 9.3M parameters in all), fastai's before the pooling, so it keeps the
1x1 head conv to 1280 channels, which the U-Net's middle convs then carry (81.7M parameters). fastai
(`_fastai_unet.py`, run in its side venv) gets the network flattened into the stages ember's `DynamicUnet`
runs, so that both take their skips after the same stages. `--same-network` adds a row: ember with
fastai's cut (`cut=3`), the same parameters as fastai's (checked), which isolates the library's overhead.

Each side runs in a process of its own (ember's is this script again, with `--side ember`). Printed per
side: the wall time from the file list to the trained model, split into set-up (loaders and learner) and
training (`fine_tune`), the CPU seconds of the whole process and its data workers (imports included: on a
shared machine this moves much less than the wall time), and the foreground accuracy and mean Dice of
the last validation pass, both counted over every validation pixel. Target: ember <= 0.5x fastai's wall
time at equal or better Dice. With `--runs N` the sides alternate N times and the medians are compared.
`--fused-adam` adds a row: ember with torch's fused AdamW (the same update as its default `Adam`, in one
pass over the parameters). `--threads N` sets torch's threads on every side.

    python bench/unet.py [--quick] [--runs 1] [--size 96] [--bs 8] [--epochs 2] [--lr 3e-3] [--threads N]
                         [--seed 42] [--same-network] [--fused-adam] [--fastai-python PATH | --no-fastai]

Timing never makes this exit non-zero. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from _common import warn_if_busy  # bench/ is on sys.path when run as a script

from ember.models.registry import model_spec
from ember.models.weights import find_weights
from ember.vision.all import (
    DataBlock,
    DiceMulti,
    FuncSplitter,
    ImageBlock,
    MaskBlock,
    Resize,
    builtin_data,
    efficientnet_lite0,
    foreground_acc,
    set_seed,
    unet_learner,
)

FASTAI_PYTHON = Path("/opt/fastai-venv/bin/python")
HERE = Path(__file__).resolve().parent
VALID_PCT = 0.2


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="64 px, fine_tune(1): a smoke test")
    parser.add_argument("--runs", type=int, default=1, help="alternating runs of each side")
    parser.add_argument("--size", type=int, default=96, help="Resize(size) of images and masks")
    parser.add_argument("--bs", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2, help="fine_tune(epochs): one frozen epoch more")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=42, help="set_seed on every side (the split stays fixed)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--fused-adam", action="store_true", help="add a row: ember with fused AdamW")
    parser.add_argument("--fastai-python", type=Path, default=FASTAI_PYTHON, help="python of fastai's venv")
    parser.add_argument("--no-fastai", action="store_true", help="skip the fastai comparison")
    # internal: run one ember side in this process and write its result to --out
    parser.add_argument("--same-network", action="store_true", help="add a row: ember with fastai's cut")
    parser.add_argument("--side", choices=["ember", "ember-body", "ember-fused"], help=argparse.SUPPRESS)
    parser.add_argument("--valid", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.size, args.epochs = 64, 1
    return args


def valid_names(path: Path) -> list[str]:
    """The validation files: a fixed 20% of the slices, the same for both libraries."""
    names = sorted(f.name for f in (path / "images").glob("*.png"))
    return sorted(random.Random(42).sample(names, round(VALID_PCT * len(names))))


def fused_adam(params, lr: float = 1e-3, mom: float = 0.9, sqr_mom: float = 0.99, eps: float = 1e-5,
               wd: float = 0.01) -> torch.optim.Optimizer:  # fmt: skip
    """ember's `Adam` (AdamW, these defaults) with torch's fused kernel: one pass over each parameter."""
    return torch.optim.AdamW(params, lr=lr, betas=(mom, sqr_mom), eps=eps, weight_decay=wd, fused=True)


# ---- one ember side, in its own process -------------------------------------------------------------
def run_ember(path: Path, valid: set[str], args: argparse.Namespace) -> dict:
    files = sorted((path / "images").glob("*.png"))
    codes = (path / "codes.txt").read_text().split()
    opt = {"opt_func": fused_adam} if args.side == "ember-fused" else {}
    opt |= {"cut": 3} if args.side == "ember-body" else {}  # stem, blocks and the 1x1 head conv, as fastai
    set_seed(args.seed)
    start = time.perf_counter()
    dblock = DataBlock(
        blocks=(ImageBlock, MaskBlock(codes)), get_y=lambda o: path / "labels" / o.name,
        splitter=FuncSplitter(lambda o: o.name in valid), item_tfms=Resize(args.size),
    )  # fmt: skip
    dls = dblock.dataloaders(files, bs=args.bs, path=path)
    learn = unet_learner(dls, efficientnet_lite0, metrics=[foreground_acc, DiceMulti()], quiet=True, **opt)
    setup = time.perf_counter() - start
    learn.fine_tune(args.epochs, args.lr)
    total = time.perf_counter() - start
    scores = learn.recorder.final_metrics
    return {
        "setup_s": setup,
        "train_s": total - setup,
        "total_s": total,
        "foreground_acc": scores["foreground_acc"],
        "dice_multi": scores["dice_multi"],
        "n_valid": len(dls.valid_ds),
        "n_params": sum(p.numel() for p in learn.model.parameters()),
        "skip_stages": list(learn.model.encoder.skip_idxs),
        # per epoch: train loss, valid loss, foreground accuracy, Dice
        "history": [
            [h[k] for k in ("train_loss", "valid_loss", "foreground_acc", "dice_multi")]
            for h in learn.recorder.history
        ],  # fmt: skip
    }


# ---- the driver: each side in a subprocess ----------------------------------------------------------
def run_side(side: str, path: Path, valid_file: Path, args: argparse.Namespace) -> dict | None:
    """Run one side in a fresh process; its result, plus the CPU seconds of that process and its workers."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        common = ["--valid", str(valid_file), "--out", str(out), "--size", str(args.size),
                  "--bs", str(args.bs), "--epochs", str(args.epochs), "--lr", str(args.lr),
                  "--seed", str(args.seed)]  # fmt: skip
        common += [] if args.threads is None else ["--threads", str(args.threads)]
        if side == "fastai":
            spec = model_spec("efficientnet_lite0")
            weights = find_weights(spec.name, spec.weights)
            cmd = [str(args.fastai_python), str(HERE / "_fastai_unet.py"), "--dir", str(path),
                   "--weights", str(weights), *common]  # fmt: skip
        else:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--side", side, *common]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0 or not out.exists():
            print(f"{side}: the side run failed (exit {proc.returncode}); its stderr ends:")
            print(proc.stderr[-2000:])
            return None
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return {**json.loads(out.read_text()), "cpu_s": cpu}


def check_same_model(ours: dict, theirs: dict) -> None:
    """Both U-Nets must have the same parameters and skips, and both sides the same validation set."""
    for key in ("n_params", "skip_stages", "n_valid"):
        if ours[key] != theirs[key]:
            print(f"WARNING: {key} differs: ember {ours[key]}, fastai {theirs[key]}: not the same work")


def med(results: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in results)


def report(args: argparse.Namespace, results: dict[str, list[dict]]) -> None:
    first = next(rs[0] for rs in results.values() if rs)
    print(
        f"\nbrain MRI, {first['n_valid']} validation slices, EfficientNet-Lite0 U-Net, {args.size} px, "
        f"bs {args.bs}, fine_tune({args.epochs}, {args.lr}); median of {args.runs} run(s)"
    )
    cols = ("params (M)", "setup (s)", "train (s)", "total (s)", "CPU (s)", "fg acc", "dice", "/ fastai")
    print(f"{'setup':<22}" + "".join(f"{c:>10}" for c in cols) + "  target")
    ref = med(results["fastai"], "total_s") if results.get("fastai") else None
    names = {"ember": "ember", "ember-body": "ember, fastai's cut", "ember-fused": "ember, fused AdamW",
             "fastai": "fastai"}  # fmt: skip
    for side, rs in results.items():
        if not rs:
            continue
        name = names[side] + (f" {rs[0]['fastai_version']}" if side == "fastai" else "")
        ratio = "-" if ref is None else f"{med(rs, 'total_s') / ref:.2f}"
        cells = [f"{rs[0]['n_params'] / 1e6:10.1f}"]
        cells += [f"{med(rs, k):10.1f}" for k in ("setup_s", "train_s", "total_s", "cpu_s")]
        cells += [f"{med(rs, k):10.3f}" for k in ("foreground_acc", "dice_multi")]
        target = "<= 0.5x fastai, dice >= fastai's" if side == "ember" else ""
        print(f"{name:<22}" + "".join(cells) + f"{ratio:>10}  {target}")
    for side, rs in results.items():
        print(
            f"{names[side]} runs, total s (CPU s): "
            + ", ".join(f"{r['total_s']:.1f} ({r['cpu_s']:.0f})" for r in rs)
        )
    if ref is not None and results["ember"]:
        ours, theirs = results["ember"], results["fastai"]
        met = med(ours, "total_s") <= 0.5 * ref and med(ours, "dice_multi") >= med(theirs, "dice_multi")
        print(f"target {'met' if met else 'missed'}")


def main() -> None:
    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    path = builtin_data("brain_mri")
    if args.side:  # a child: one ember side
        result = run_ember(path, set(args.valid.read_text().split()), args)
        args.out.write_text(json.dumps(result))
        return
    warn_if_busy()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}")
    sides = (
        ["ember"]
        + (["ember-body"] if args.same_network else [])
        + (["ember-fused"] if args.fused_adam else [])
    )
    sides += [] if args.no_fastai or not args.fastai_python.exists() else ["fastai"]
    results: dict[str, list[dict]] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory() as tmp:
        valid_file = Path(tmp) / "valid.txt"
        valid_file.write_text("\n".join(valid_names(path)))
        for _ in range(args.runs):
            for side in sides:
                result = run_side(side, path, valid_file, args)
                if result is not None:
                    results[side].append(result)
    if results["ember"] and results.get("fastai"):
        check_same_model(results.get("ember-body", results["ember"])[0], results["fastai"][0])
    report(args, results)
    print(f"load average after the runs: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
