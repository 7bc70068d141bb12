"""The fastai half of bench/unet.py. Runs only inside fastai's side venv, never in ember's.

The brain-MRI segmentation recipe on the files of `--dir` (`images/`, `labels/`, `codes.txt`), with the
validation files named one per line in `--valid`, `Resize(--size)`, bs `--bs`, and fastai's
`unet_learner` on the *same* encoder ember uses: EfficientNet-Lite0 built by ember's model code (the
repository is put on `sys.path`; only the network definition is borrowed, with the pretrained weights file
given by `--weights`), cut before its pooling as ember cuts it, and flattened into the same 18 stages
(stem, 16 MBConv blocks, head conv) that ember's `DynamicUnet` runs. fastai's `DynamicUnet` only looks for
size changes between the encoder's direct children, so the flattening makes it take its skips after the
same stages as ember's, and both decoders come out the same, parameter for parameter (the JSON reports the
count and the skip stages, and bench/unet.py checks them). The input normalisation is the weights' own
(`Normalize.from_stats`, as ember's `unet_learner` adds it), the parameter groups are fastai's default for
a custom arch (encoder, then the rest: ember's `unet_split`), then `fine_tune(--epochs, --lr)`.

Writes the times, the validation scores and the model's shape as JSON to `--out`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import fastai
import torch
from fastai.vision.all import (
    Callback,
    DataBlock,
    DiceMulti,
    FuncSplitter,
    ImageBlock,
    MaskBlock,
    Normalize,
    Resize,
    foreground_acc,
    set_seed,
    unet_learner,
)
from fastai.vision.models.unet import _get_sz_change_idxs, model_sizes
from torch import nn

REPO = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, required=True, help="the data set: images/, labels/, codes.txt")
    parser.add_argument("--valid", type=Path, required=True, help="the validation file names, one a line")
    parser.add_argument("--weights", type=Path, required=True, help="EfficientNet-Lite0 weights (.pth)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the JSON result")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--bs", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    return parser.parse_args()


def flat_stages(module: nn.Module) -> list[nn.Module]:
    """The children of `module`, plain `nn.Sequential` containers opened recursively."""
    out: list[nn.Module] = []
    for child in module.children():
        out += flat_stages(child) if type(child) is nn.Sequential else [child]
    return out


def lite0_arch(weights: Path):
    """A callable arch for `unet_learner`, ember's pretrained EfficientNet-Lite0 as flat stages, and the
    `cut` that keeps the stages of ember's body (everything before the pooling)."""
    sys.path.insert(0, str(REPO))
    from ember.models.registry import create_model, model_spec
    from ember.models.surgery import cut_body

    spec = model_spec("efficientnet_lite0")

    def arch(pretrained: bool = True) -> nn.Sequential:
        model = create_model("efficientnet_lite0", pretrained=True, weights=str(weights))
        return nn.Sequential(*flat_stages(model))

    cut = len(flat_stages(cut_body(create_model("efficientnet_lite0", pretrained=False), spec)))
    return arch, cut, spec


class EpochRows(Callback):
    """Every epoch's recorder row, across both fits of `fine_tune` (fastai's Recorder keeps one fit's)."""

    order = 60  # after the Recorder (50)

    def __init__(self) -> None:
        self.rows: list[list[float]] = []

    def after_epoch(self) -> None:
        self.rows.append([float(v) for v in self.learn.recorder.values[-1]])


def scores(preds: torch.Tensor, targs: torch.Tensor) -> tuple[float, float]:
    """Foreground accuracy and mean Dice, both counted over every validation pixel (as ember's are)."""
    pred, targ = preds.argmax(1).reshape(-1), targs.reshape(-1).long()
    fg = targ != 0
    fg_acc = (pred[fg] == targ[fg]).float().mean().item()
    dices = []
    for c in range(preds.shape[1]):
        p, t = pred == c, targ == c
        total = int(p.sum() + t.sum())
        if total:
            dices.append(2 * int((p & t).sum()) / total)
    return fg_acc, sum(dices) / len(dices)


def main() -> None:
    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    path = args.dir
    files = sorted((path / "images").glob("*.png"))
    valid = set(args.valid.read_text().split())
    codes = (path / "codes.txt").read_text().split()
    arch, cut, spec = lite0_arch(args.weights)
    set_seed(args.seed)
    start = time.perf_counter()
    dblock = DataBlock(
        blocks=(ImageBlock, MaskBlock(codes)),
        get_y=lambda o: path / "labels" / o.name,
        splitter=FuncSplitter(lambda o: o.name in valid),
        item_tfms=Resize(args.size),
        batch_tfms=Normalize.from_stats(list(spec.mean), list(spec.std)),
    )
    dls = dblock.dataloaders(files, bs=args.bs, path=path)
    rows = EpochRows()
    learn = unet_learner(dls, arch, normalize=False, cut=cut, metrics=[foreground_acc, DiceMulti()], cbs=rows)
    setup = time.perf_counter() - start
    learn.fine_tune(args.epochs, args.lr)
    total = time.perf_counter() - start
    with learn.no_bar(), learn.no_logging():
        preds, targs = learn.get_preds()
    fg_acc, dice = scores(preds, targs)
    sizes = model_sizes(learn.model[0], size=(args.size, args.size))
    result = {
        "fastai_version": fastai.__version__,
        "setup_s": setup,
        "train_s": total - setup,
        "total_s": total,
        "foreground_acc": fg_acc,
        "dice_multi": dice,
        "dice_multi_recorded": float(learn.recorder.values[-1][-1]),
        "n_valid": len(dls.valid_ds),
        "n_params": sum(p.numel() for p in learn.model.parameters()),
        "skip_stages": [int(i) for i in _get_sz_change_idxs(sizes)],
        # per epoch: train loss, valid loss, foreground accuracy (fastai's: a mean of per-batch ones), Dice
        "history": rows.rows,
    }
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
