"""Naming a layer of a model: a dotted name from `model.named_modules()`, an index into its conv layers,
or the module itself. Shared by every tool that looks inside a network (Grad-CAM, feature maps).

>>> model = nn.Sequential(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()), nn.Flatten(), nn.LazyLinear(2))
>>> find_layer(model, "0.0")[0], last_conv(model)[0], last_feature_layer(model)[0]
('0.0', '0.0', '0')
"""

from __future__ import annotations

import difflib

from torch import nn

from ember.interpret.errors import LayerNotFoundError, NoConvLayerError, listing

__all__ = ["LayerSpec", "conv_layers", "find_layer", "last_conv", "last_feature_layer"]

LayerSpec = int | str | nn.Module  # a conv index (-1: the last conv), a dotted name, or the module


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """`(dotted name, conv)` for every `nn.Conv2d` of `model`, in registration order.

    >>> [n for n, _ in conv_layers(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Conv2d(2, 2, 3)))]
    ['0', '2']
    """
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def find_layer(model: nn.Module, layer: LayerSpec | None) -> tuple[str, nn.Module]:
    """`(dotted name, module)` for `layer`: a str is a name from `model.named_modules()`, an int indexes
    the conv layers (`0` the first, `-1` the last), a module must be one of `model`'s; None is
    `last_feature_layer(model)`. Anything else is a `LayerNotFoundError` listing the valid names.

    >>> find_layer(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), -1)[0]
    '0'
    """
    if layer is None:
        return last_feature_layer(model)
    if isinstance(layer, int):
        return _conv_by_index(model, layer)
    named = dict(model.named_modules())
    if isinstance(layer, str):
        if layer not in named or layer == "":
            raise LayerNotFoundError(_no_such_name(model, layer, [n for n in named if n]))
        return layer, named[layer]
    name = next((n for n, m in named.items() if m is layer), None)
    if name is None:
        raise LayerNotFoundError(
            f"the {type(layer).__name__} passed as the layer is not a module of this "
            f"{type(model).__name__} (a copy of the model, or another model?); pass one of its own modules "
            f"or a name from model.named_modules(), e.g. {listing(_conv_names(model))}"
        )
    return name, layer


def last_conv(model: nn.Module) -> tuple[str, nn.Conv2d]:
    """`(dotted name, module)` of the last `nn.Conv2d` of `model`, in registration order.

    >>> last_conv(nn.Sequential(nn.Conv2d(1, 2, 3), nn.Conv2d(2, 4, 1)))[1].out_channels
    4
    """
    convs = conv_layers(model)
    if not convs:
        raise _no_conv(model)
    return convs[-1]


def last_feature_layer(model: nn.Module) -> tuple[str, nn.Module]:
    """`(dotted name, module)` of the module that puts out `model`'s last convolutional feature maps:
    Grad-CAM's default layer. From the top, it is the last child holding a conv; while that child holds
    a `nn.Linear` too (a classifier inside it), the search goes on inside it. For ember's vision models,
    `nn.Sequential(body, head)`, that is the body (`"0"`); for torchvision's ResNets, `layer4`.

    >>> body = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    >>> last_feature_layer(nn.Sequential(body, nn.Flatten(), nn.LazyLinear(2)))[1] is body
    True
    """
    last = last_conv(model)[1]
    prefix, node = "", model
    while node is not last:
        name, child = next((n, c) for n, c in reversed(list(node.named_children())) if _holds(c, last))
        prefix, node = f"{prefix}{name}", child
        if not any(isinstance(m, nn.Linear) for m in child.modules()):
            break
        prefix += "."
    return prefix, node


def _holds(module: nn.Module, target: nn.Module) -> bool:
    return any(m is target for m in module.modules())


def _conv_by_index(model: nn.Module, i: int) -> tuple[str, nn.Module]:
    convs = conv_layers(model)
    if not convs:
        raise _no_conv(model)
    if not -len(convs) <= i < len(convs):
        raise LayerNotFoundError(
            f"conv layer {i} is out of range: {type(model).__name__} has {len(convs)} conv layers "
            f"(index 0 to {len(convs) - 1}, or -1 for the last): {listing([n for n, _ in convs])}"
        )
    return convs[i]


def _no_such_name(model: nn.Module, name: str, names: list[str]) -> str:
    close = difflib.get_close_matches(name, names, n=3)
    hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
    convs = _conv_names(model)
    where = f" Its conv layers are {listing(convs)}." if convs else ""
    return (
        f"{type(model).__name__} has no layer named {name!r}{hint}{where} Any name from "
        f"[n for n, _ in model.named_modules()] ({len(names)} of them) works, or pass the module itself."
    )


def _conv_names(model: nn.Module) -> list[str]:
    return [n for n, _ in conv_layers(model)]


def _no_conv(model: nn.Module) -> NoConvLayerError:
    return NoConvLayerError(
        f"{type(model).__name__} has no nn.Conv2d layer, so it has no convolutional feature maps for "
        "Grad-CAM; use saliency, integrated_gradients or occlusion, which need only the input's gradient"
    )
