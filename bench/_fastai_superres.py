"""The fastai half of bench/superres.py. Runs only inside fastai's side venv, never in ember's.

fastai's `unet_learner` trains the same image-to-image task on the same files as ember: inputs from `--lowres`
(resized bicubically to the targets' size), targets from `--dir`, training on aligned random patches with
their channels permuted, the validation crops whole. The network is the same: fastai's `DynamicUnet` around
the encoder that ember's model code builds (the repository is put on `sys.path`; only network definitions
are borrowed), cut where ember cuts it, in ember's `ResidualOutput`. `--loss feature` uses ember's
`FeatureLoss` module (a plain `nn.Module`) on VGG16 features whose weights ember saved to `--vgg`, so that
the two libraries differ only in their data pipeline, their U-Net code and their training loop. Writes the
seconds of each epoch and the held-out PSNR as JSON to `--out`.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import fastai
import torch
import torch.nn.functional as F
from fastai.vision.all import (
    Callback,
    DataBlock,
    FuncSplitter,
    ImageBlock,
    ItemTransform,
    MSELossFlat,
    Normalize,
    Resize,
    get_image_files,
    imagenet_stats,
    set_seed,
    unet_learner,
)
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, required=True, help="the targets: train/ and valid/ crops")
    parser.add_argument("--lowres", type=Path, required=True, help="the inputs, the same names under it")
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON result")
    parser.add_argument("--arch", default="resnet34")
    parser.add_argument("--loss", choices=["mse", "feature"], default="mse")
    parser.add_argument("--vgg", type=Path, help="vgg16_features' state dict (.pth), for --loss feature")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--bs", type=int, default=8)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast (fastai's to_bf16)")
    parser.add_argument("--threads", type=int, default=None)
    return parser.parse_args()


class RandomPatch(ItemTransform):
    """The same random square patch of input and target, on the training set only (ember's `RandomPatch`)."""

    split_idx, order = 0, 2

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def encodes(self, xy):
        x, y = xy
        s = self.size
        left, top = random.randint(0, x.size[0] - s), random.randint(0, x.size[1] - s)
        box = (left, top, left + s, top + s)
        return type(x)(x.crop(box)), type(y)(y.crop(box))


class PermuteChannels(ItemTransform):
    """The same random order of the RGB channels for input and target, training set only (ember's)."""

    split_idx, order = 0, 3

    def encodes(self, xy):
        order = random.sample(range(3), 3)
        return tuple(type(v)(Image.merge("RGB", [v.split()[i] for i in order])) for v in xy)


class EpochTimes(Callback):
    order = 100

    def before_fit(self) -> None:
        self.times = []

    def before_epoch(self) -> None:
        self.start = time.perf_counter()

    def after_epoch(self) -> None:
        self.times.append(time.perf_counter() - self.start)


def ember_parts(arch: str):
    """The encoder's constructor and cut, and ember's `FeatureLoss` / VGG16 layers, from the repository."""
    sys.path.insert(0, str(REPO))
    from ember.models.registry import create_model, model_spec
    from ember.models.surgery import cut_body
    from ember.models.vgg import vgg16_features
    from ember.vision.feature_loss import FeatureLoss
    from ember.vision.superres import ResidualOutput

    spec = model_spec(arch)

    def make(pretrained: bool = False):
        return create_model(spec.name, pretrained=pretrained)

    return make, (lambda m: cut_body(m, spec)), vgg16_features, FeatureLoss, ResidualOutput


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    make, cut, vgg16_features, FeatureLoss, ResidualOutput = ember_parts(args.arch)
    size = Image.open(next((args.dir / "valid").iterdir())).size[0]
    set_seed(42)
    bicubic = Resize(size, resamples=(Image.Resampling.BICUBIC, Image.Resampling.NEAREST))
    dblock = DataBlock(
        blocks=(ImageBlock, ImageBlock), get_items=get_image_files,
        get_y=lambda f: args.dir / f.relative_to(args.lowres),
        splitter=FuncSplitter(lambda o: o.parent.name == "valid"),
        item_tfms=[bicubic, RandomPatch(args.patch), PermuteChannels()],
        batch_tfms=[Normalize.from_stats(*imagenet_stats)],
    )  # fmt: skip
    dls = dblock.dataloaders(args.lowres, bs=args.bs, num_workers=0)
    loss = MSELossFlat()
    if args.loss == "feature":
        feats = vgg16_features(pretrained=False)
        feats.load_state_dict(torch.load(args.vgg))
        loss = FeatureLoss(feats)
    learn = unet_learner(
        dls, make, pretrained=False, cut=cut, normalize=False, loss_func=loss, n_out=3,
        splitter=lambda m: [list(m.parameters())],  # one group, as nothing is frozen (no pretrained weights)
    )  # fmt: skip
    learn.model = ResidualOutput(
        learn.model
    )  # as ember's bench: the U-Net predicts a correction to its input
    if args.bf16:
        learn.to_bf16()
    timer = EpochTimes()
    with learn.no_bar(), learn.no_logging():
        learn.fit_one_cycle(args.epochs, args.lr, cbs=timer)
        preds, targs = learn.get_preds()
    mean, std = (torch.tensor(s).view(1, 3, 1, 1) for s in imagenet_stats)
    p, t = ((a.float() * std + mean).clamp(0, 1).double() for a in (preds, targs))
    mse = F.mse_loss(p, t, reduction="none").mean((1, 2, 3))  # per image, as scikit-image's PSNR
    result = {
        "epoch_s": timer.times,
        "psnr": float((10 * torch.log10(1 / mse)).mean()),
        "fastai_version": fastai.__version__,
    }
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
