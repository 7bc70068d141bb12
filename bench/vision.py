"""Vision, side by side with fastai and a plain PyTorch loop, all in one run.

(a) **Transfer learning on LFW** (the 200 real crops of `skimage.data.lfw_subset()`, written by
    `builtin_data("lfw_faces")`; the label is in the file name): `ImageDataLoaders.from_name_func(...,
    valid_pct=0.3, seed=42, item_tfms=Resize(128), bs=16)`, `vision_learner(dls, efficientnet_lite0,
    metrics=error_rate)`, `fine_tune(8, 3e-3)`. fastai runs the same recipe on the same files with the
    same network, groups and normalisation (`_fastai_vision.py`). Timed from the file list to the trained
    model. Target: ember <= 0.5x fastai's time at equal or better accuracy.
(b) **ResNet-18 from scratch on MNIST** (`builtin_data("mnist5k")`: 4,000 training and 1,000 validation
    PNGs, 28 px), 3 epochs of one-cycle at bs 64, timed from the folder to the trained model: ember
    (float32, and bfloat16 autocast), fastai, and a plain PyTorch loop training the same network as
    ember (`create_vision_model("resnet18", 10)`) on tensors decoded once, with AdamW and torch's
    OneCycleLR. Target: ember <= 1.0x the plain loop's time at >= 97.5% accuracy.
(c) **`predict` latency** for one image file with the LFW model (median of 30 files after a warm-up):
    ember's learner, ember's `load_learner` of its export, and fastai's learner. Target: <= 0.2x fastai.

    python bench/vision.py [--quick] [--only lfw,mnist] [--fastai-python PATH | --no-fastai]

Timing never makes this exit non-zero. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import warn_if_busy  # bench/ is on sys.path when run as a script
from PIL import Image
from torch import nn

from ember.models.registry import model_spec
from ember.models.weights import find_weights
from ember.vision.all import (
    ImageDataLoaders,
    Resize,
    accuracy,
    builtin_data,
    create_vision_model,
    efficientnet_lite0,
    error_rate,
    get_image_files,
    load_learner,
    set_seed,
    vision_learner,
)

FASTAI_PYTHON = Path("/opt/fastai-venv/bin/python")
HERE = Path(__file__).resolve().parent
MNIST_LR = 1e-2


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 epoch each: a smoke test")
    parser.add_argument("--only", default="lfw,mnist", help="comma-separated: lfw, mnist")
    parser.add_argument("--fastai-python", type=Path, default=FASTAI_PYTHON, help="python of fastai's venv")
    parser.add_argument("--no-fastai", action="store_true", help="skip the fastai comparison")
    return parser.parse_args()


def is_face(name: str) -> bool:
    return name[0].isupper()


# ---- (a) LFW transfer learning and (c) predict latency ---------------------------------------------
def lfw_ember(path: Path, epochs: int) -> dict:
    files = get_image_files(path)
    set_seed(42)
    start = time.perf_counter()
    dls = ImageDataLoaders.from_name_func(path, files, is_face, valid_pct=0.3, seed=42, item_tfms=Resize(128),
                                          bs=16)  # fmt: skip
    learn = vision_learner(dls, efficientnet_lite0, metrics=error_rate, quiet=True)
    learn.fine_tune(epochs, 3e-3)
    total = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        loaded = load_learner(learn.export(Path(tmp) / "export.pkl"))
    return {
        "total_s": total,
        "accuracy": 1 - learn.recorder.value("error_rate"),
        "predict_ms": predict_ms(learn, files),
        "loaded_predict_ms": predict_ms(loaded, files),
    }


def predict_ms(learn, files: list[Path], calls: int = 30) -> float:
    learn.predict(files[0])  # warm-up
    times = []
    for f in files[:calls]:
        t = time.perf_counter()
        learn.predict(f)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


# ---- (b) ResNet-18 from scratch on MNIST -----------------------------------------------------------
def mnist_ember(path: Path, epochs: int, bf16: bool) -> dict:
    set_seed(42)
    start = time.perf_counter()
    dls = ImageDataLoaders.from_folder(path, train="train", valid="valid", bs=64)
    learn = vision_learner(dls, "resnet18", pretrained=False, metrics=accuracy, quiet=True)
    if bf16:
        learn.to_bf16()
    learn.fit_one_cycle(epochs, MNIST_LR)
    return {"total_s": time.perf_counter() - start, "accuracy": learn.recorder.value("accuracy")}


def _load_split(path: Path, vocab: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    files = sorted(path.glob("*/*.png"))
    x = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])  # (n, 28, 28, 3) uint8
    y = torch.tensor([vocab.index(f.parent.name) for f in files])
    return torch.from_numpy(x).permute(0, 3, 1, 2).float().div_(255), y


def mnist_plain(path: Path, epochs: int, bs: int = 64) -> dict:
    """The reference: a plain loop doing the same work on tensors decoded once."""
    set_seed(42)
    start = time.perf_counter()
    vocab = sorted(p.name for p in (path / "train").iterdir())
    (xt, yt), (xv, yv) = _load_split(path / "train", vocab), _load_split(path / "valid", vocab)
    model = create_vision_model("resnet18", len(vocab))
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay}, {"params": no_decay, "weight_decay": 0.0}], lr=MNIST_LR,
                            betas=(0.9, 0.99), eps=1e-5, weight_decay=0.01)  # fmt: skip
    steps = len(xt) // bs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, MNIST_LR, total_steps=epochs * steps, pct_start=0.25,
                                                div_factor=25, final_div_factor=1e5, base_momentum=0.85,
                                                max_momentum=0.95)  # fmt: skip
    loss_func = nn.CrossEntropyLoss()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xt))
        for i in range(steps):
            idx = perm[i * bs : (i + 1) * bs]
            loss = loss_func(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        model.eval()
        with torch.no_grad():
            correct = sum(
                int((model(xv[i : i + 256]).argmax(1) == yv[i : i + 256]).sum())
                for i in range(0, len(xv), 256)
            )
    return {"total_s": time.perf_counter() - start, "accuracy": correct / len(xv)}


# ---- fastai, in its own venv -----------------------------------------------------------------------
def run_fastai(python: Path, task: str, path: Path, epochs: int, lr: float) -> dict | None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fastai.json"
        cmd = [str(python), str(HERE / "_fastai_vision.py"), task, "--dir", str(path), "--out", str(out),
               "--epochs", str(epochs), "--lr", str(lr)]  # fmt: skip
        if task == "lfw":
            spec = model_spec("efficientnet_lite0")
            cmd += ["--weights", str(find_weights(spec.name, spec.weights))]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE)
        if proc.returncode != 0 or not out.exists():
            print(f"fastai {task}: the side run failed (exit {proc.returncode}); its stderr ends:")
            print(proc.stderr[-2000:])
            return None
        return json.loads(out.read_text())


# ---- report ----------------------------------------------------------------------------------------
def row(name: str, secs: float, acc: float, ref: float | None, target: str) -> None:
    ratio = "-" if ref is None else f"{secs / ref:.2f}"
    print(f"{name:<44} {secs:8.1f} {acc:9.3f} {ratio:>8}  {target}")


def header(title: str, ref_name: str) -> None:
    print(f"\n{title}\n{'setup':<44} {'time (s)':>8} {'accuracy':>9} {'/ ' + ref_name:>8}  target")


def bench_lfw(args: argparse.Namespace, epochs: int) -> None:
    path = builtin_data("lfw_faces")
    ours = lfw_ember(path, epochs)
    theirs = None if args.no_fastai or not args.fastai_python.exists() else run_fastai(
        args.fastai_python, "lfw", path, epochs, 3e-3)  # fmt: skip
    ref = theirs["total_s"] if theirs else None
    header(
        f"(a) LFW faces, EfficientNet-Lite0 pretrained, fine_tune({epochs}, 3e-3), bs 16, 128 px", "fastai"
    )
    row("ember", ours["total_s"], ours["accuracy"], ref, "<= 0.5x fastai, accuracy >= fastai's")
    if theirs:
        row(f"fastai {theirs['fastai_version']}", theirs["total_s"], theirs["accuracy"], ref, "")
    fa = theirs["predict_ms"] if theirs else None
    print("\n(c) predict latency, one LFW file (median of 30)")
    print(f"{'setup':<44} {'ms':>6} {'/ fastai':>8}  target <= 0.2x fastai")
    rows = [("ember learner", ours["predict_ms"]), ("ember load_learner(export)", ours["loaded_predict_ms"])]
    for name, ms in rows + ([("fastai learner", fa)] if fa else []):
        print(f"{name:<44} {ms:6.1f} {'-' if fa is None else f'{ms / fa:.3f}':>8}")


def bench_mnist(args: argparse.Namespace, epochs: int) -> None:
    path = builtin_data("mnist5k")
    plain = mnist_plain(path, epochs)
    fp32, bf16 = mnist_ember(path, epochs, False), mnist_ember(path, epochs, True)
    theirs = None if args.no_fastai or not args.fastai_python.exists() else run_fastai(
        args.fastai_python, "mnist", path, epochs, MNIST_LR)  # fmt: skip
    header(
        f"(b) MNIST 5k, ResNet-18 from scratch, {epochs} epochs one-cycle lr {MNIST_LR}, bs 64, 28 px",
        "plain",
    )
    ref = plain["total_s"]
    row("plain PyTorch loop (tensors decoded once)", ref, plain["accuracy"], ref, "reference")
    row("ember, float32", fp32["total_s"], fp32["accuracy"], ref, "<= 1.0x plain, accuracy >= 0.975")
    row("ember, bfloat16 autocast (to_bf16)", bf16["total_s"], bf16["accuracy"], ref, "<= 1.0x plain")
    if theirs:
        row(f"fastai {theirs['fastai_version']}", theirs["total_s"], theirs["accuracy"], ref, "")


def main() -> None:
    args = parse_args()
    warn_if_busy()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    only = set(args.only.split(","))
    if "lfw" in only:
        bench_lfw(args, 1 if args.quick else 8)
    if "mnist" in only:
        bench_mnist(args, 1 if args.quick else 3)


if __name__ == "__main__":
    main()
