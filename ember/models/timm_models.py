"""timm's architectures under the names "timm/<name>", when timm is installed (it is optional).

Pretrained timm weights come from the Hugging Face hub or a URL; like the rest of ember this module
never downloads: it looks in the Hugging Face cache and the torch hub cache, or loads `weights=PATH`.

>>> model = create_model("timm/convnext_tiny", n_out=10)  # doctest: +SKIP
"""

from __future__ import annotations

import difflib
import importlib.util
from functools import partial
from pathlib import Path
from types import ModuleType

from torch import nn

from ember.models.spec import IMAGENET_MEAN, IMAGENET_STD, ModelSpec, UnknownModelError
from ember.models.weights import (
    WeightsNotFoundError,
    WeightSource,
    find_weights,
    hub_checkpoints_dir,
    not_found_error,
)

__all__ = ["create_timm_model", "has_timm", "list_timm_models", "timm_body", "timm_spec"]

# The file names timm looks for in a Hugging Face hub repository, the preferred one first.
_HF_FILES = ("model.safetensors", "pytorch_model.bin")


def has_timm() -> bool:
    """Whether timm can be imported."""
    return importlib.util.find_spec("timm") is not None


def _timm() -> ModuleType:
    """The timm module, or an error saying how to get it."""
    if not has_timm():
        raise ModuleNotFoundError("timm models ('timm/<name>') need timm: pip install timm")
    import timm

    return timm


def list_timm_models(pattern: str = "*") -> list[str]:
    """timm's architecture names matching a shell-style `pattern` (empty without timm)."""
    return list(_timm().list_models(pattern)) if has_timm() else []


def timm_body(model: nn.Module) -> nn.Module:
    """A timm model without its pooling and classifier: it then returns the last feature map."""
    model.reset_classifier(0, global_pool="")
    return model


def timm_spec(name: str) -> ModelSpec:
    """A `ModelSpec` for timm's `name`, with the statistics of its default pretrained weights."""
    timm = _timm()
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5)
        hint = f" Did you mean {', '.join('timm/' + c for c in close)}?" if close else ""
        raise UnknownModelError(f"timm has no model named {name!r}.{hint}")
    cfg = timm.models.get_pretrained_cfg(name)
    mean, std = (cfg.mean, cfg.std) if cfg is not None else (IMAGENET_MEAN, IMAGENET_STD)
    size = cfg.input_size[-1] if cfg is not None else 224
    build = partial(timm.create_model, name, pretrained=False)
    return ModelSpec(
        f"timm/{name}",
        None,
        build,
        None,
        cut=timm_body,
        mean=tuple(mean),
        std=tuple(std),
        input_size=size,
        classifier="",
    )


def create_timm_model(
    name: str, pretrained: bool, n_out: int | None, n_in: int, weights: str | Path | None
) -> nn.Module:
    """`timm.create_model`, with pretrained weights only from this machine; timm adapts `n_in`, `n_out`."""
    timm = _timm()
    kwargs: dict = {"in_chans": n_in} | ({"num_classes": n_out} if n_out is not None else {})
    if not pretrained and weights is None:
        return timm.create_model(name, pretrained=False, **kwargs)
    path = find_timm_weights(name, weights)
    # A "file" in the pretrained config makes timm load that file rather than download anything.
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs)


def find_timm_weights(name: str, weights: str | Path | None = None) -> Path:
    """`weights`, or timm's weights for `name` in the Hugging Face or torch hub cache."""
    if weights is not None:
        return find_weights(f"timm/{name}", None, weights)
    cfg = _timm().models.get_pretrained_cfg(name)
    hub_id = getattr(cfg, "hf_hub_id", None)
    url = getattr(cfg, "url", None) or ""
    for found in (_hf_cached(hub_id), hub_checkpoints_dir() / url.rsplit("/", 1)[-1] if url else None):
        if found is not None and found.is_file():
            return found
    raise _missing(name, hub_id, url)


def _hf_cached(hub_id: str | None) -> Path | None:
    """The weight file of Hugging Face repository `hub_id` if it is in the local cache."""
    if not hub_id:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # without a working huggingface_hub there is no Hugging Face cache to read
        return None

    for file in _HF_FILES:
        hit = try_to_load_from_cache(hub_id, file)
        if isinstance(hit, str):  # else None (unknown) or a marker saying the file does not exist
            return Path(hit)
    return None


def _missing(name: str, hub_id: str | None, url: str) -> WeightsNotFoundError:
    """The error naming where ember looked for timm's weights, and the remedies."""
    file = url.rsplit("/", 1)[-1]
    places = [f"the Hugging Face cache, repository {hub_id} ({' or '.join(_HF_FILES)})"] if hub_id else []
    places += [f"{hub_checkpoints_dir()} (the torch hub cache), file {file}"] if file else []
    origin = url or f"https://huggingface.co/{hub_id}"
    remedies = [f"  - pass weights='path/to/{file or _HF_FILES[0]}' (from {origin}),"]
    if hub_id:
        remedies.append(
            f"  - or fill the Hugging Face cache on this machine: huggingface-cli download {hub_id},"
        )
    if file:
        remedies.append(f"  - or copy {file} into the torch hub cache: {hub_checkpoints_dir() / file},")
    remedies.append("  - or pass pretrained=False to train from scratch (random weights).")
    source = WeightSource(files=(file or _HF_FILES[0],), url=origin)
    return not_found_error(f"timm/{name}", source, places, remedies=remedies)
