"""The fastai half of bench/data_pipeline.py. Runs only inside fastai's side venv, never in ember's.

Builds fastai's `ImageDataLoaders.from_folder` on the files `data_pipeline.py` wrote, with the same item
and batch transforms as ember's side, times full passes of the training loader after one warm-up pass,
and prints `{"setup_s": ..., "pass_s": [...], "n_per_pass": ..., ...}` as JSON on its last line.

    python bench/_fastai_data.py --path DIR --size 28 --crop resize --bs 64 --passes 3 [--threads N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--path", required=True, help="a folder of class folders of images")
    parser.add_argument("--size", type=int, required=True, help="the item transform's output size")
    parser.add_argument(
        "--crop", choices=["resize", "random"], required=True, help="Resize or RandomResizedCrop"
    )
    parser.add_argument("--min-scale", type=float, default=0.35, help="RandomResizedCrop's min_scale")
    parser.add_argument("--bs", type=int, default=64)
    parser.add_argument("--passes", type=int, default=3, help="timed passes after one warm-up pass")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    warnings.simplefilter("ignore")  # fastai's import warns about torch.jit; nothing here depends on it
    import fastai
    import torch
    from fastai.vision.all import (
        ImageDataLoaders,
        Normalize,
        RandomResizedCrop,
        Resize,
        aug_transforms,
        imagenet_stats,
    )

    if args.threads:
        torch.set_num_threads(args.threads)
    item_tfm = Resize(args.size) if args.crop == "resize" else RandomResizedCrop(args.size, args.min_scale)
    start = time.perf_counter()
    dls = ImageDataLoaders.from_folder(
        args.path,
        valid_pct=0.2,
        seed=42,
        item_tfms=item_tfm,
        batch_tfms=[*aug_transforms(), Normalize.from_stats(*imagenet_stats)],
        bs=args.bs,
    )
    setup = time.perf_counter() - start
    times, shape = [], None
    for i in range(args.passes + 1):  # pass 0 is the warm-up
        start, n = time.perf_counter(), 0
        for xb, _ in dls.train:
            n += len(xb)
        if i:
            times.append(time.perf_counter() - start)
        shape = list(xb.shape)
    result = {
        "setup_s": setup,
        "pass_s": times,
        "n_per_pass": n,
        "batch_shape": shape,
        "num_workers": dls.train.fake_l.num_workers,
        "threads": torch.get_num_threads(),  # `dls.train.num_workers` is a per-worker shard count
        "fastai_version": fastai.__version__,
        "torch_version": torch.__version__,
        "python": sys.version.split()[0],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
