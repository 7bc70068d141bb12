"""Model and optimizer state in one safetensors file: no pickle, written atomically.

Tensors are stored under `model.<name>` and `opt.<param index>.<state key>` (the learner's first
optimizer; a second one under `opt1.`, and so on: `n_opts` in the metadata says how many); each
optimizer's non-tensor state and parameter groups go in the file's JSON metadata. A resumable checkpoint
(`ember.learner.resume`) adds its random states as tensors and its run state as metadata.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from ember.core.utils import atomic_write

__all__ = ["load_checkpoint", "load_state", "model_tensors", "read_checkpoint", "save_checkpoint"]

FORMAT = "ember.checkpoint"
VERSION = "1"


def model_tensors(model: torch.nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    """The model's state as contiguous CPU tensors that safetensors accepts, keys prefixed by `prefix`."""
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for k, v in model.state_dict().items():
        v = v.detach().cpu()
        # safetensors refuses tensors sharing memory (tied weights): store a copy of the second one.
        tensors[f"{prefix}{k}"] = v.clone() if v.data_ptr() in seen else v.contiguous()
        seen.add(v.data_ptr())
    return tensors


Opts = Sequence[torch.optim.Optimizer]


def _prefix(k: int) -> str:
    return "opt" if k == 0 else f"opt{k}"  # the first optimizer keeps the one-optimizer files' names


def _flatten(model: torch.nn.Module, opts: Opts) -> tuple[dict, dict]:
    tensors = model_tensors(model, prefix="model.")
    meta: dict[str, str] = {"format": FORMAT, "version": VERSION, "with_opt": str(bool(opts))}
    meta["n_opts"] = str(len(opts))
    for k, opt in enumerate(opts):
        sd, pre = opt.state_dict(), _prefix(k)
        scalars: dict[str, dict[str, Any]] = {}
        for idx, state in sd["state"].items():
            for key, val in state.items():
                if isinstance(val, torch.Tensor):
                    tensors[f"{pre}.{idx}.{key}"] = val.detach().cpu().contiguous()
                else:
                    scalars.setdefault(str(idx), {})[key] = val
        meta[f"{pre}_param_groups"] = json.dumps(sd["param_groups"])
        meta[f"{pre}_scalars"] = json.dumps(scalars)
    return tensors, meta


def save_checkpoint(
    path: Path,
    model: torch.nn.Module,
    opts: Opts,
    epoch: int,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    extra_meta: dict[str, str] | None = None,
) -> None:
    """Write `model` and `opts` (none: the model alone) state to `path` atomically: a crash leaves any
    older file intact. `extra_tensors` and `extra_meta` are stored beside them (a resumable checkpoint's
    run state)."""
    tensors, meta = _flatten(model, opts)
    meta["epoch"] = str(epoch)
    data = save(tensors | (extra_tensors or {}), metadata=meta | (extra_meta or {}))
    with atomic_write(path) as f:
        f.write(data)


def _read_meta(path: Path) -> dict[str, str]:
    if not path.exists():
        others = sorted(p.stem for p in path.parent.glob("*.safetensors")) if path.parent.exists() else []
        hint = f" Saved states there: {', '.join(others)}." if others else ""
        raise FileNotFoundError(f"no saved state at {path}.{hint} Save one first with learn.save(name).")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path} is not an ember checkpoint (not a readable safetensors file): {e}") from e
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} is a safetensors file but not an ember checkpoint (no '{FORMAT}' marker)")
    return meta


def read_checkpoint(path: Path, device: torch.device | str = "cpu") -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors (on `device`) and metadata of a checkpoint, after checking it is one."""
    meta = _read_meta(path)
    return load_file(str(path), device=str(device)), meta


def load_checkpoint(
    path: Path, model: torch.nn.Module, opts: Opts, device: torch.device, strict: bool
) -> dict[str, Any]:
    """Load what `save_checkpoint` wrote into `model` (and `opts`); returns `{'epoch': int}`."""
    tensors, meta = read_checkpoint(path, device)
    load_state(path, tensors, meta, model, opts, strict)
    return {"epoch": int(meta.get("epoch", 0))}


def load_state(
    path: Path,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, str],
    model: torch.nn.Module,
    opts: Opts,
    strict: bool,
) -> None:
    """Load a checkpoint read by `read_checkpoint` (from `path`, named in errors) into `model` and `opts`."""
    model_sd = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    if strict:
        _check_same_model(path, model, model_sd)
    model.load_state_dict(model_sd, strict=strict)
    if opts and meta.get("with_opt") != "True":
        warnings.warn(f"{path} holds no optimizer state; only the model was loaded", stacklevel=3)
        return
    n_saved = int(meta.get("n_opts", "1"))
    if opts and n_saved != len(opts):
        raise ValueError(f"{path} holds the state of {n_saved} optimizer(s); this learner has "
                         f"{len(opts)}: set learn.opts as the run that saved it did, or load with "
                         "with_opt=False")  # fmt: skip
    for k, opt in enumerate(opts):
        try:
            opt.load_state_dict(_opt_state(tensors, meta, _prefix(k)))
        except ValueError as e:
            e.add_note(
                f"(loading optimizer {k}'s state from {path}: was it saved with other layer groups, "
                "e.g. before/after freeze or with another splitter? load with with_opt=False)"
            )
            raise


def _check_same_model(path: Path, model: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    """Fail, naming the first differences, when `saved` holds other tensors or shapes than `model`."""
    own = model.state_dict()
    missing, extra = [k for k in own if k not in saved], [k for k in saved if k not in own]
    shapes = [f"{k} is {tuple(saved[k].shape)} there and {tuple(v.shape)} here"
              for k, v in own.items() if k in saved and saved[k].shape != v.shape]  # fmt: skip
    problems = [
        *([f"missing from it: {', '.join(missing[:5])}"] if missing else []),
        *([f"not in this model: {', '.join(extra[:5])}"] if extra else []),
        *shapes[:5],
    ]
    if problems:
        raise ValueError(
            f"{path} was saved from another model ({'; '.join(problems)}): build the same architecture "
            "(and number of classes) as the run that saved it"
        )


def _opt_state(tensors: dict[str, torch.Tensor], meta: dict[str, str], pre: str) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for idx, scalars in json.loads(meta[f"{pre}_scalars"]).items():
        state.setdefault(int(idx), {}).update(scalars)
    for k, v in tensors.items():
        if k.startswith(f"{pre}."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    groups = json.loads(meta[f"{pre}_param_groups"])
    for g in groups:  # JSON turned tuples into lists
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}
