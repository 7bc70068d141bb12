"""The fastai half of bench/vision.py. Runs only inside fastai's side venv, never in ember's.

`lfw`: the LFW transfer-learning recipe on the files in `--dir`, with the *same* network ember uses:
EfficientNet-Lite0 built by ember's model code (the repository is put on `sys.path`; only the network
definition is borrowed, with the pretrained weights file given by `--weights`), cut after its head
conv, the same three parameter groups and the same input normalisation, so that the libraries differ
only in their data pipeline and training loop. Then the latency of `learn.predict` on one file.
`mnist`: ResNet-18 (torchvision's, random weights) on the mnist5k folders, one-cycle.
Writes its times and accuracies as JSON to `--out`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import fastai
from fastai.vision.all import (
    ImageDataLoaders,
    Normalize,
    Resize,
    accuracy,
    error_rate,
    get_image_files,
    params,
    resnet18,
    set_seed,
    vision_learner,
)

REPO = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("task", choices=["lfw", "mnist"])
    parser.add_argument("--dir", type=Path, required=True, help="the image files / folders")
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON result")
    parser.add_argument("--weights", type=Path, help="EfficientNet-Lite0 weights (.pth) for lfw")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--predict-calls", type=int, default=30)
    return parser.parse_args()


def is_face(name: str) -> bool:
    return name[0].isupper()


def lite0_learner(dls, weights: Path):
    sys.path.insert(0, str(REPO))
    from ember.models.registry import create_model, model_spec

    spec = model_spec("efficientnet_lite0")

    def arch(pretrained: bool = True):
        return create_model("efficientnet_lite0", pretrained=True, weights=str(weights))

    def split(m):
        body = m[0]
        early = [*body[0].parameters(), *body[1][:4].parameters()]
        return [early, [*body[1][4:].parameters(), *body[2].parameters()], params(m[1])]

    dls.after_batch.add(Normalize.from_stats(list(spec.mean), list(spec.std)))
    return vision_learner(dls, arch, cut=3, splitter=split, normalize=False, metrics=error_rate)


def run_lfw(args: argparse.Namespace) -> dict:
    files = get_image_files(args.dir)
    set_seed(42)
    start = time.perf_counter()
    dls = ImageDataLoaders.from_name_func(
        args.dir, files, is_face, valid_pct=0.3, seed=42, item_tfms=Resize(128), bs=16
    )
    learn = lite0_learner(dls, args.weights)
    learn.fine_tune(args.epochs, args.lr)
    total = time.perf_counter() - start
    acc = 1 - float(learn.recorder.values[-1][2])
    with learn.no_bar(), learn.no_logging():
        learn.predict(files[0])  # warm-up
        times = []
        for f in files[: args.predict_calls]:
            t = time.perf_counter()
            learn.predict(f)
            times.append(time.perf_counter() - t)
    return {"total_s": total, "accuracy": acc, "predict_ms": statistics.median(times) * 1000}


def run_mnist(args: argparse.Namespace) -> dict:
    set_seed(42)
    start = time.perf_counter()
    dls = ImageDataLoaders.from_folder(args.dir, train="train", valid="valid", bs=64)
    learn = vision_learner(dls, resnet18, pretrained=False, metrics=accuracy)
    learn.fit_one_cycle(args.epochs, args.lr)
    return {"total_s": time.perf_counter() - start, "accuracy": float(learn.recorder.values[-1][2])}


def main() -> None:
    args = parse_args()
    result = run_lfw(args) if args.task == "lfw" else run_mnist(args)
    result["fastai_version"] = fastai.__version__
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
