"""Super-resolution and colourisation (the 2019 course's lesson 7) on real photos, side by side in one run.

Data: `builtin_data("photo_crops")`, 128x128 crops of scikit-image's colour photos, 280 from seven photos to
train on and 48 from two held-out photos (chelsea the cat, coffee) to score on. Every model is the same
U-Net (`unet_learner(dls, "resnet18", pretrained=False)`, wrapped in `ResidualOutput` so that it predicts a
correction to its input), trained with `fit_one_cycle` on aligned random 64x64 patches (`RandomPatch`,
`PermuteChannels`), bs 8, bfloat16 autocast, seed 42; scores are on the whole held-out crops.

(a) **2x super-resolution**: the input is the target downscaled 2x and JPEG'd at a quality drawn in 10..70
    (`crappify(..., scale=2, text=False)`), brought back to 128 px bicubically. PSNR and SSIM of the bicubic
    input itself, of the U-Net trained with pixel MSE, and of the U-Net trained with `FeatureLoss` on
    `vgg16_features` (the lesson's layers and weights); same epochs, lr and seed. (b) the same at **4x** with
    fewer epochs. (c) **LFW faces** (`builtin_data("lfw_faces")`, 25 px grey, resized to 64) at 2x.
(d) **Colourisation**: input the grey version of each crop (`get_x=to_grey`), target the colour original,
    feature loss; PSNR/SSIM of the grey input and of the prediction.
(e) **Time per epoch** of ember's and fastai's `unet_learner` on the same files, the same network (fastai's
    run borrows ember's ResNet-18 definition, `_fastai_superres.py`) and the same loss (MSE; ember's
    `FeatureLoss`), bfloat16 both. Target: ember <= 1.0x fastai.

Figures: `bench/out/superres.png` (input, bicubic, pixel loss, feature loss, target) and
`bench/out/colourise.png`.

    python bench/superres.py [--quick] [--only sr2,sr4,lfw,colour,timing] [--fastai-python PATH | --no-fastai]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from _common import warn_if_busy  # bench/ is on sys.path when run as a script
from PIL import Image

from ember.callbacks.core import Callback
from ember.vision.all import (
    BICUBIC_NEAREST,
    DataBlock,
    FeatureLoss,
    FuncSplitter,
    ImageBlock,
    LossMetrics,
    Normalize,
    PermuteChannels,
    RandomPatch,
    ResidualOutput,
    Resize,
    builtin_data,
    crappify,
    get_image_files,
    imagenet_stats,
    psnr,
    set_seed,
    ssim,
    to_grey,
    unet_learner,
    vgg16_features,
)

FASTAI_PYTHON = Path("/opt/fastai-venv/bin/python")
HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
ARCH, BS, PATCH, LR, SEED = "resnet18", 8, 64, 3e-3, 42
NORM = Normalize.from_stats(*imagenet_stats)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 epoch on a few crops: a smoke test")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of the 2x and colourisation runs")
    parser.add_argument("--only", default="sr2,sr4,lfw,colour,timing", help="comma-separated parts to run")
    parser.add_argument("--fastai-python", type=Path, default=FASTAI_PYTHON, help="python of fastai's venv")
    parser.add_argument("--no-fastai", action="store_true", help="skip the fastai comparison")
    parser.add_argument("--timing-epochs", type=int, default=2, help="epochs of each timed ember/fastai run")
    return parser.parse_args()


# ---- data -----------------------------------------------------------------------------------------
def lowres(path: Path, scale: int) -> Path:
    """The crappified inputs beside the targets, written once (`crappify` skips files up to date)."""
    out = path.parent / f"{path.name}_{scale}x"
    crappify(path, out, scale=scale, text=False, quality=(10, 70))
    return out


def sr_dls(path: Path, low: Path, size: int, items: Callable | None = None, bs: int = BS):
    """Inputs from `low` resized bicubically to `size`, targets the same names under `path`."""
    dblock = DataBlock(
        blocks=(ImageBlock, ImageBlock), get_items=items or get_image_files,
        get_y=lambda f: path / f.relative_to(low), splitter=FuncSplitter(lambda o: o.parent.name == "valid"),
        item_tfms=[Resize(size, resamples=BICUBIC_NEAREST), RandomPatch(min(PATCH, size)), PermuteChannels()],
        batch_tfms=[NORM],
    )  # fmt: skip
    return dblock.dataloaders(low, bs=bs, num_workers=0)


def colour_dls(path: Path, items: Callable | None = None):
    dblock = DataBlock(
        blocks=(ImageBlock, ImageBlock), get_items=items or get_image_files, get_x=to_grey,
        splitter=FuncSplitter(lambda o: o.parent.name == "valid"), item_tfms=[RandomPatch(PATCH)],
        batch_tfms=[NORM],
    )  # fmt: skip
    return dblock.dataloaders(path, bs=BS, num_workers=0)


def few(n_train: int, n_valid: int) -> Callable:
    """`get_image_files`, keeping every k-th file of each split: --quick's few crops."""

    def items(p: Path) -> list[Path]:
        files = get_image_files(p)
        train = [f for f in files if f.parent.name == "train"]
        valid = [f for f in files if f.parent.name == "valid"]
        return train[:: max(1, len(train) // n_train)] + valid[:: max(1, len(valid) // n_valid)]

    return items


# ---- training and scores --------------------------------------------------------------------------
class EpochTimes(Callback):
    """The wall time of each epoch (training and validation)."""

    order = 100

    def before_fit(self) -> None:
        self.times: list[float] = []

    def before_epoch(self) -> None:
        self.start = time.perf_counter()

    def after_epoch(self) -> None:
        self.times.append(time.perf_counter() - self.start)


def feature_loss() -> FeatureLoss:
    return FeatureLoss(vgg16_features())  # the lesson's: layers before the last three max-pools, 5 / 15 / 2


def train(dls, loss: str, epochs: int, lr: float = LR) -> tuple:
    """The U-Net trained with pixel MSE or the feature loss; returns the learner and its epoch times."""
    set_seed(SEED)
    loss_func = feature_loss() if loss == "feature" else None  # None: unet_learner's MSE for image targets
    cbs = [LossMetrics()] if loss == "feature" else []
    learn = unet_learner(dls, ARCH, pretrained=False, loss_func=loss_func, cbs=cbs, quiet=True)
    learn.model, learn.model_config = ResidualOutput(learn.model), None
    learn.to_bf16()
    timer = EpochTimes()
    learn.fit_one_cycle(epochs, lr, cbs=timer)
    return learn, timer.times


def decode(t: torch.Tensor) -> torch.Tensor:
    """Normalised images back to [0, 1] pixels (bs, 3, h, w)."""
    return (t.float().cpu() * NORM.std + NORM.mean).clamp(0, 1)


def held_out(dls, model: torch.nn.Module | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(inputs, predictions, targets) over the validation set, decoded; the input itself when no model."""
    xs, ps, ys = [], [], []
    if model is not None:
        model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=model is not None):
        for xb, yb in dls.valid:
            xs.append(decode(xb))
            ps.append(decode(model(xb)) if model is not None else decode(xb))
            ys.append(decode(yb))
    return torch.cat(xs), torch.cat(ps), torch.cat(ys)


def scores(pred: torch.Tensor, targ: torch.Tensor) -> tuple[float, float]:
    return psnr(pred, targ), ssim(pred, targ)


def row(name: str, pred: torch.Tensor, targ: torch.Tensor, ref: float, secs: float | None = None) -> float:
    p, s = scores(pred, targ)
    t = "-" if secs is None else f"{secs:.0f}"
    print(f"{name:<40} {p:8.2f} {p - ref:+8.2f} {s:8.4f} {t:>9}")
    return p


def header(title: str) -> None:
    print(f"\n{title}\n{'setup':<40} {'PSNR dB':>8} {'vs input':>8} {'SSIM':>8} {'train s':>9}")


# ---- the parts ------------------------------------------------------------------------------------
def bench_sr(path: Path, scale: int, epochs: int, quick: bool, size: int = 128, name: str = "photo crops"):
    low = lowres(path, scale)
    dls = sr_dls(path, low, size, few(16, 8) if quick else None)
    _, bicubic, targ = held_out(dls, None)
    results = {}
    for loss in ("mse", "feature"):
        learn, times = train(dls, loss, epochs)
        results[loss] = (held_out(dls, learn.model)[1], sum(times))
    header(f"({scale}x) super-resolution, {name}: {len(targ)} held-out crops, {epochs} epochs, lr {LR}")
    ref = row(f"bicubic upsampling of the {scale}x JPEG input", bicubic, targ, 0.0)
    row("U-Net, pixel MSE", results["mse"][0], targ, ref, results["mse"][1])
    row("U-Net, feature loss (VGG16)", results["feature"][0], targ, ref, results["feature"][1])
    return dls, bicubic, results, targ


def figure_superres(dls, bicubic, results, targ, n: int = 5) -> Path:
    """Rows of held-out crops: the low-resolution input (nearest, to show its pixels and JPEG blocks),
    bicubic, the two U-Nets, the target."""
    idx = torch.linspace(0, len(targ) - 1, n).round().long().tolist()
    cols = ["input (nearest)", "bicubic", "pixel MSE", "feature loss", "target"]
    fig, axs = plt.subplots(n, len(cols), figsize=(2.4 * len(cols), 2.4 * n))
    for r, i in enumerate(idx):
        small = dls.datasets.items[dls.datasets.splits[1][i]]  # the validation loader keeps the split's order
        first = (
            Image.open(small).convert("RGB").resize(tuple(targ.shape[-2:])[::-1], Image.Resampling.NEAREST)
        )
        images = [first, bicubic[i], results["mse"][0][i], results["feature"][0][i], targ[i]]
        for c, img in enumerate(images):
            axs[r, c].imshow(img if isinstance(img, Image.Image) else img.permute(1, 2, 0).numpy())
            axs[r, c].set_axis_off()
            if r == 0:
                axs[r, c].set_title(cols[c], fontsize=10)
    return _save(fig, "superres.png")


def _save(fig, name: str) -> Path:
    OUT.mkdir(exist_ok=True)
    out = OUT / name
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out


def bench_colour(path: Path, epochs: int, quick: bool) -> None:
    dls = colour_dls(path, few(16, 8) if quick else None)
    grey, _, targ = held_out(dls, None)
    learn, times = train(dls, "feature", epochs)
    pred = held_out(dls, learn.model)[1]
    header(f"(d) colourisation, photo crops: {len(targ)} held-out crops, {epochs} epochs, lr {LR}")
    ref = row("grey input (3 equal channels)", grey, targ, 0.0)
    row("U-Net, feature loss (VGG16)", pred, targ, ref, sum(times))
    n = 5
    idx = torch.linspace(0, len(targ) - 1, n).round().long().tolist()
    fig, axs = plt.subplots(n, 3, figsize=(7.2, 2.4 * n))
    for r, i in enumerate(idx):
        for c, (title, img) in enumerate((("grey", grey[i]), ("predicted", pred[i]), ("original", targ[i]))):
            axs[r, c].imshow(img.permute(1, 2, 0).numpy())
            axs[r, c].set_axis_off()
            if r == 0:
                axs[r, c].set_title(title, fontsize=10)
    print(f"figure: {_save(fig, 'colourise.png')}")


def lfw_targets(data: Path) -> Path:
    """LFW's 25 px grey faces resized (bicubic) to 64 px RGB, 70 / 30 split by file order: the targets."""
    out = data / "lfw_faces_64"
    if not out.exists():
        src = sorted(builtin_data("lfw_faces").glob("*.png"))
        for k, f in enumerate(src):
            split = "valid" if k % 10 >= 7 else "train"
            (out / split).mkdir(parents=True, exist_ok=True)
            img = Image.open(f).convert("RGB").resize((64, 64), Image.Resampling.BICUBIC)
            img.save(out / split / f.name)
    return out


# ---- ember against fastai, time per epoch ---------------------------------------------------------
def run_fastai(python: Path, path: Path, low: Path, loss: str, epochs: int, vgg: Path) -> dict | None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "fastai.json"
        cmd = [str(python), str(HERE / "_fastai_superres.py"), "--dir", str(path), "--lowres", str(low),
               "--out", str(out), "--arch", ARCH, "--loss", loss, "--vgg", str(vgg), "--epochs", str(epochs),
               "--lr", str(LR), "--bs", str(BS), "--patch", str(PATCH), "--bf16"]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE)
        if proc.returncode != 0 or not out.exists():
            print(f"fastai {loss}: the side run failed (exit {proc.returncode}); its stderr ends:")
            print(proc.stderr[-2000:])
            return None
        return json.loads(out.read_text())


def fastai_ok(python: Path) -> bool:
    if not python.exists():
        return False
    return subprocess.run([str(python), "-c", "import fastai"], capture_output=True).returncode == 0


def bench_timing(args: argparse.Namespace, path: Path, low: Path, epochs: int, quick: bool) -> None:
    have = not args.no_fastai and fastai_ok(args.fastai_python)
    if not have and not args.no_fastai:
        print("\nfastai not installed")
    with tempfile.TemporaryDirectory() as tmp:
        vgg = Path(tmp) / "vgg16_features.pth"
        torch.save(vgg16_features().state_dict(), vgg)
        print(f"\n(e) time per epoch, 2x super-resolution, {epochs} epochs each, bs {BS}, {PATCH} px patches")
        print(
            f"{'loss':<10} {'library':<16} {'s / epoch (each)':<30} {'median':>7} {'/ fastai':>8} {'PSNR':>7}"
        )
        for loss in ("mse", "feature"):
            dls = sr_dls(path, low, 128, few(16, 8) if quick else None)
            learn, times = train(dls, loss, epochs)
            ours = statistics.median(times)
            theirs = (
                run_fastai(args.fastai_python, path, low, loss, epochs, vgg) if have and not quick else None
            )
            ref = statistics.median(theirs["epoch_s"]) if theirs else None
            ratio = "-" if ref is None else f"{ours / ref:.2f}"
            p = psnr(*held_out(dls, learn.model)[1:])
            each = " ".join(f"{t:.1f}" for t in times)
            print(f"{loss:<10} {'ember':<16} {each:<30} {ours:7.1f} {ratio:>8} {p:7.2f}")
            if theirs:
                each = " ".join(f"{t:.1f}" for t in theirs["epoch_s"])
                name = f"fastai {theirs['fastai_version']}"
                print(f"{loss:<10} {name:<16} {each:<30} {ref:7.1f} {1.0:8.2f} {theirs['psnr']:7.2f}")


def main() -> None:
    args = parse_args()
    warn_if_busy()
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {' '.join(load)}")
    only, quick = set(args.only.split(",")), args.quick
    epochs = 1 if quick else args.epochs
    path = builtin_data("photo_crops")
    if "sr2" in only:
        dls, bicubic, results, targ = bench_sr(path, 2, epochs, quick)
        print(f"figure: {figure_superres(dls, bicubic, results, targ)}")
    if "sr4" in only:
        bench_sr(path, 4, 1 if quick else max(1, epochs // 2), quick)
    if "lfw" in only:
        faces = lfw_targets(path.parent)
        bench_sr(faces, 2, 1 if quick else max(1, epochs // 2), quick, size=64, name="LFW faces")
    if "colour" in only:
        bench_colour(path, epochs, quick)
    if "timing" in only:
        bench_timing(args, path, lowres(path, 2), 1 if quick else args.timing_epochs, quick)


if __name__ == "__main__":
    main()
