"""The reference half of bench/interpret.py. Runs only inside the side venv (/opt/interp-venv, with
`grad-cam` and `captum`), never in ember's.

The networks are ember's definitions (the repository is put on `sys.path`; only `ember.models` is
imported, which needs nothing but torch) with the weights bench/interpret.py saved, so both sides explain
exactly the same model at the same layer for the same targets. Reads case `--case` of `cases.json`
and the inputs from `--dir`; writes `side_<i>.json` (the median seconds) and `side_<i>.pt` (the maps,
(n, h, w)). bench/interpret.py starts it once per case, right after timing ember's call for that case,
so that both sides of a case run under the same load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from captum.attr import IntegratedGradients, Saliency
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ember.models.registry import create_model  # noqa: E402 - ember's network definition, nothing more


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, required=True, help="cases.json, inputs.pt, <arch>.pt")
    parser.add_argument("--case", type=int, required=True, help="the index of the case in cases.json")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    return parser.parse_args()


def load_model(folder: Path, arch: str, n_out: int) -> torch.nn.Module:
    model = create_model(arch, n_out=None if n_out == 1000 else n_out)
    model.load_state_dict(torch.load(folder / f"{arch}.pt"))
    return model.eval()


def explain(
    case: dict, model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor
) -> Callable[[], torch.Tensor]:
    """A call doing what ember's call for `case` does, with the reference library, returning (n, h, w)."""
    method, layer = case["method"], model.get_submodule(case["layer"])
    if method in ("gradcam", "gradcam++"):
        cam = (GradCAMPlusPlus if method == "gradcam++" else GradCAM)(model=model, target_layers=[layer])
        targets = [ClassifierOutputTarget(int(i)) for i in t]
        return lambda: torch.from_numpy(cam(input_tensor=x, targets=targets))
    if method == "saliency":
        sal = Saliency(model)
        return lambda: sal.attribute(x, target=t, abs=True).amax(1)
    ig = IntegratedGradients(model)  # Gauss-Legendre points, as ember's
    return lambda: ig.attribute(
        x, baselines=0.0, target=t, n_steps=case["steps"], internal_batch_size=64
    ).sum(1)


def main() -> None:
    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    case = json.loads((args.dir / "cases.json").read_text())[args.case]
    inputs, targets = torch.load(args.dir / "inputs.pt")
    model = load_model(args.dir, case["arch"], case["n_out"])
    call = explain(case, model, inputs[: case["n"]], targets[case["arch"]][: case["n"]])
    maps = call().detach()  # the warm-up
    runs = []
    for _ in range(args.runs):
        start = time.perf_counter()
        call()
        runs.append(time.perf_counter() - start)
    torch.save(maps.float(), args.dir / f"side_{args.case}.pt")
    (args.dir / f"side_{args.case}.json").write_text(json.dumps({"secs": statistics.median(runs)}))


if __name__ == "__main__":
    main()
