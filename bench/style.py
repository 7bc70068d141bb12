"""Style transfer at 256 px: seconds per optimisation step of `ember.vision.style.style_transfer` against a
plain PyTorch implementation of the same losses, written out below with the same network and layers.

Both paint `skimage.data.chelsea()` (256 x 170) with `skimage.data.immunohistochemistry()` on VGG16
(Keras' ImageNet weights, `vgg16_features`): content at relu4_2, style at relu1_1 ... relu5_1, weights
(1, 30, 1e3), from the content image. For each optimiser (Adam: one evaluation per step; L-BFGS with a
strong-Wolfe line search: `--steps` evaluations) one untimed warm-up of each, then `--runs` timed rounds
alternating them; each run's time / `--steps` is a step's time. The final losses of both are printed: the
same work gives the same numbers. The network is read once, outside the timings.

    .venv/bin/python bench/style.py [--runs 3] [--steps 10] [--size 256] [--threads N]

Timing never makes this exit non-zero.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import skimage.data
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ember.vision.style import StyleFeatures, StyleLoss, image_tensor, style_features, style_transfer

CONTENT, STYLE = (20,), (1, 6, 11, 18, 25)  # relu4_2; relu1_1, relu2_1, relu3_1, relu4_1, relu5_1
WEIGHTS = (1.0, 30.0, 1e3)
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


# ---- the plain PyTorch reference -------------------------------------------------------------------------
def plain_features(body: nn.Sequential, x: Tensor, ids: tuple[int, ...]) -> dict[int, Tensor]:
    out, x = {}, (x - MEAN) / STD
    for i in range(max(ids) + 1):
        x = body[i](x)
        if i in ids:
            out[i] = x
    return out


def plain_gram(f: Tensor) -> Tensor:
    b, c, h, w = f.shape
    m = f.view(b, c, h * w)
    return torch.bmm(m, m.transpose(1, 2)) / (c * h * w)


def plain_transfer(body: nn.Sequential, content: Tensor, style: Tensor, steps: int, opt: str) -> Tensor:
    """Gatys' optimisation written out: content MSE + mean gram MSE + squared total variation."""
    with torch.no_grad():
        c_feats = plain_features(body, content[None], CONTENT)
        s_grams = {i: plain_gram(f) for i, f in plain_features(body, style[None], STYLE).items()}
    x = content.clone()[None].requires_grad_(True)
    cw, sw, tw = WEIGHTS

    def loss_of(img: Tensor) -> Tensor:
        feats = plain_features(body, img, CONTENT + STYLE)
        content_loss = sum(F.mse_loss(feats[i], c_feats[i]) for i in CONTENT) / len(CONTENT)
        style_loss = sum(F.mse_loss(plain_gram(feats[i]), s_grams[i]) for i in STYLE) / len(STYLE)
        tv = (img[..., 1:] - img[..., :-1]).pow(2).mean() + (img[..., 1:, :] - img[..., :-1, :]).pow(2).mean()
        return cw * content_loss + sw * style_loss + tw * tv

    if opt == "adam":
        adam = torch.optim.Adam([x], lr=0.02)
        for _ in range(steps):
            adam.zero_grad()
            loss_of(x).backward()
            adam.step()
            with torch.no_grad():
                x.clamp_(0, 1)
    else:
        lbfgs = torch.optim.LBFGS([x], lr=1.0, max_iter=steps, max_eval=steps, tolerance_grad=0,
                                  tolerance_change=0, line_search_fn="strong_wolfe")  # fmt: skip

        def closure() -> Tensor:
            lbfgs.zero_grad()
            loss = loss_of(x + (x.clamp(0, 1) - x).detach())  # the clipped image's loss, gradient through
            loss.backward()
            return loss

        lbfgs.step(closure)
    return x.detach()[0].clamp(0, 1)


# ---- timing ------------------------------------------------------------------------------------------------
def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def final_loss(net: StyleFeatures, style: Tensor, content: Tensor, img: Tensor) -> float:
    loss = StyleLoss(net, style, CONTENT, STYLE, *WEIGHTS)
    with torch.no_grad():
        return float(loss(img[None], content[None]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="optimisation steps (evaluations) per run")
    parser.add_argument("--size", type=int, default=256, help="the longer side, px")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    net = style_features("vgg16")
    content = image_tensor(skimage.data.chelsea(), args.size)
    style_np = skimage.data.immunohistochemistry()
    style = image_tensor(style_np, args.size)
    hw = tuple(content.shape[1:])
    print(f"== style transfer, {hw} px, {args.steps} steps/run, {args.runs} runs + 1 warm-up")
    print(f"   {cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, load average {load:.2f} before the runs")  # fmt: skip
    if load > 0.5 * (os.cpu_count() or 1):
        print("   WARNING: other work is running; these timings are unreliable")
    print(
        "| optimiser | implementation | median s/step | runs (s/step) | final loss |\n|---|---|---|---|---|"
    )
    for opt in ("adam", "lbfgs"):
        fits = {
            "ember": lambda o=opt: style_transfer(content, style_np, args.size, CONTENT, STYLE, *WEIGHTS,
                                                  steps=args.steps, arch=net, opt=o, device="cpu"),
            "plain PyTorch": lambda o=opt: plain_transfer(net.body, content, style, args.steps, o),
        }  # fmt: skip
        last = {name: fit() for name, fit in fits.items()}  # warm-up
        times: dict[str, list[float]] = {name: [] for name in fits}
        for _ in range(args.runs):
            for name, fit in fits.items():
                start = time.perf_counter()
                last[name] = fit()
                times[name].append((time.perf_counter() - start) / args.steps)
        for name, ts in times.items():
            runs = " ".join(f"{t:.3f}" for t in ts)
            loss = final_loss(net, style, content, last[name])
            print(f"| {opt} | {name} | {statistics.median(ts):.3f} | {runs} | {loss:.1f} |")


if __name__ == "__main__":
    main()
