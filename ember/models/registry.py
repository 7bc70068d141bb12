"""The architecture registry: one dict of `ModelSpec`s, `register_model`, `create_model`, `list_models`.

>>> model = create_model("resnet34", pretrained=False, n_out=10)
>>> list_models("resnet*")
['resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152']

An architecture registers its public constructor, which calls `create_model` on itself:

>>> @register_model(build=lambda: TinyNet(), n_features=64)  # doctest: +SKIP
... def tinynet(pretrained: bool = False, n_out: int | None = None, n_in: int = 3, weights=None):
...     return create_model(tinynet, pretrained, n_out, n_in, weights)

`create_model("timm/<name>")` builds a timm model when timm is installed (see `ember.models.timm_models`).
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from torch import nn

from ember.models import timm_models
from ember.models.spec import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ModelSpec,
    Stats,
    UnknownModelError,
    body_as_one_group,
)
from ember.models.surgery import adapt_first_conv, replace_classifier
from ember.models.weights import WeightSource, find_weights, read_state_dict

__all__ = [
    "create_model",
    "list_models",
    "load_pretrained",
    "model_spec",
    "register_model",
]

Arch = str | Callable[..., nn.Module]
F = TypeVar("F", bound=Callable[..., nn.Module])

_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    build: Callable[[], nn.Module],
    n_features: int | None,
    *,
    weights: WeightSource | None = None,
    cut: int | Callable[[nn.Module], nn.Module] = -2,
    split: Callable[[nn.Module], list[list[nn.Parameter]]] = body_as_one_group,
    classifier: str = "fc",
    mean: Stats = IMAGENET_MEAN,
    std: Stats = IMAGENET_STD,
    input_size: int = 224,
    encoder_cut: int | Callable[[nn.Module], nn.Module] | None = None,
) -> Callable[[F], F]:
    """Register the decorated constructor under its function name, with its `ModelSpec` fields.

    `build` makes the bare network; the decorated function is returned unchanged. See the module
    docstring for an example.
    """

    def decorate(fn: F) -> F:
        name = fn.__name__
        old = _REGISTRY.get(name)
        if old is not None and old.fn is not None and _origin(old.fn) != _origin(fn):
            raise ValueError(
                f"a model named {name!r} is already registered by {_origin(old.fn)}; rename yours"
            )
        spec = ModelSpec(
            name, fn, build, n_features, weights, cut, split, classifier, mean, std, input_size, encoder_cut
        )
        _REGISTRY[name] = spec
        return fn

    return decorate


def _origin(fn: Callable) -> str:
    """'module.qualname': re-running a notebook cell re-registers the same origin, which is fine."""
    return f"{fn.__module__}.{fn.__qualname__}"


def model_spec(arch: Arch) -> ModelSpec:
    """The `ModelSpec` of a registered constructor, or of a name ("resnet34", "timm/convnext_tiny").

    torchvision's own `resnet34` & co. map to ember's, whose definitions are torchvision's.

    >>> model_spec("resnet34") is model_spec(resnet34)  # doctest: +SKIP
    True
    """
    if isinstance(arch, str):
        return _spec_by_name(arch)
    for spec in _REGISTRY.values():
        if spec.fn is arch:
            return spec
    name = getattr(arch, "__name__", repr(arch))
    if getattr(arch, "__module__", "").startswith("torchvision.models") and name in _REGISTRY:
        return _REGISTRY[name]
    raise UnknownModelError(
        f"{name} is not a registered architecture. Pass one of list_models() (e.g. resnet34), its name as a "
        "string, or register yours with @register_model(build=..., n_features=...)."
    )


def _spec_by_name(name: str) -> ModelSpec:
    """The spec registered as `name`; "timm/..." names are timm's."""
    if name.startswith("timm/"):
        return timm_models.timm_spec(name.removeprefix("timm/"))
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(name, list(_REGISTRY), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownModelError(
        f"No model named {name!r}.{hint} list_models() shows the {len(_REGISTRY)} registered names; "
        "timm models are 'timm/<name>'" + ("." if timm_models.has_timm() else " (timm is not installed).")
    )


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names, in natural order, matching a shell-style `pattern`; "timm/*" lists timm's.

    >>> list_models("efficientnet*")
    ['efficientnet_lite0']
    """
    if pattern is not None and pattern.startswith("timm/"):
        return ["timm/" + n for n in timm_models.list_timm_models(pattern.removeprefix("timm/"))]
    names = [n for n in _REGISTRY if pattern is None or fnmatch.fnmatchcase(n, pattern)]
    return sorted(names, key=_natural_key)


def _natural_key(name: str) -> list[int | str]:
    """Sort key putting resnet34 before resnet101."""
    return [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", name)]


def create_model(
    arch: Arch,
    pretrained: bool = False,
    n_out: int | None = None,
    n_in: int = 3,
    weights: str | Path | None = None,
) -> nn.Module:
    """Build a registered architecture, by constructor or name.

    `pretrained` loads its weights from this machine (never downloads); `weights=PATH` loads that file
    instead and implies `pretrained`. `n_out` replaces the classifier (None keeps its 1000 ImageNet
    classes); `n_in` other than 3 adapts the first convolution (see `adapt_first_conv`).

    >>> create_model(resnet18, n_out=2).fc.out_features  # doctest: +SKIP
    2
    """
    spec = model_spec(arch)
    if spec.name.startswith("timm/"):
        return timm_models.create_timm_model(
            spec.name.removeprefix("timm/"), pretrained, n_out, n_in, weights
        )
    model = spec.build()
    if pretrained or weights is not None:
        load_pretrained(model, spec, weights)
    if n_out is not None:
        replace_classifier(model, spec.classifier, n_out)
    if n_in != 3:
        adapt_first_conv(model, n_in)
    return model


def load_pretrained(model: nn.Module, spec: ModelSpec, weights: str | Path | None = None) -> nn.Module:
    """Load `spec`'s pretrained weights (or the file `weights`) into `model`, every key matched.

    >>> load_pretrained(spec.build(), spec)  # doctest: +SKIP
    """
    path = find_weights(spec.name, spec.weights, weights)
    reader = spec.weights.reader if spec.weights is not None else None
    state = (reader or read_state_dict)(Path(path))
    if spec.weights is not None and spec.weights.remap is not None:
        state = spec.weights.remap(state)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise RuntimeError(f"the weights in {path} do not fit {spec.name}: {e}") from e
    return model
