"""Changing a built network: its input channels, its classifier, and cutting off its body.

>>> model = create_model("resnet18", n_in=1, n_out=10)  # doctest: +SKIP
>>> body = cut_body(model, model_spec("resnet18"))  # doctest: +SKIP
>>> num_features(body)  # doctest: +SKIP
512
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import torch
from torch import nn

from ember.core.utils import eval_mode
from ember.models.spec import ModelSpec

__all__ = ["adapt_first_conv", "cut_body", "first_conv", "num_features", "replace_classifier"]


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The first `nn.Conv2d` in `model`, in registration order: the one that sees the image.

    >>> first_conv(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 8, 3))).out_channels
    8
    """
    conv = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise ValueError(f"{type(model).__name__} has no nn.Conv2d whose input channels could be changed")
    return conv


def adapt_first_conv(model: nn.Module, n_in: int) -> nn.Module:
    """Make `model` take `n_in` channels, deriving the new kernels from the 3 (RGB) it has.

    The rule keeps what pretrained kernels respond to: `n_in == 1` sums the RGB kernels, so a grey image
    gives what the same image as RGB gave. Otherwise channel `i` gets RGB kernel `i % 3` times `3 / n_in`,
    so the total weight over all channels stays that of the RGB kernels. Changes `model` in place.

    >>> model = adapt_first_conv(nn.Sequential(nn.Conv2d(3, 8, 3)), 1)
    >>> model[0].weight.shape
    torch.Size([8, 1, 3, 3])
    """
    conv = first_conv(model)
    if conv.in_channels == n_in:
        return model
    if conv.in_channels != 3 or conv.groups != 1:
        raise ValueError(
            f"the first conv takes {conv.in_channels} channels in {conv.groups} groups; ember "
            "adapts only a 3-channel, ungrouped first conv"
        )
    w = conv.weight.detach()  # (out, 3, kh, kw)
    tiled = w[:, [i % 3 for i in range(n_in)]] * (3 / n_in)  # (out, n_in, kh, kw)
    new = w.sum(1, keepdim=True) if n_in == 1 else tiled
    conv.weight = nn.Parameter(new.contiguous())
    conv.in_channels = n_in
    return model


def replace_classifier(model: nn.Module, path: str, n_out: int) -> nn.Module:
    """Swap the `nn.Linear` at attribute `path` (e.g. "fc") for a new one with `n_out` outputs.

    >>> replace_classifier(nn.Sequential(nn.Linear(4, 1000)), "0", 10)[0].out_features
    10
    """
    old = model.get_submodule(path)
    if not isinstance(old, nn.Linear):
        raise ValueError(
            f"{type(model).__name__}.{path} is a {type(old).__name__}, not the nn.Linear classifier"
        )
    parent_path, _, attr = path.rpartition(".")
    new = nn.Linear(old.in_features, n_out, bias=old.bias is not None)
    setattr(model.get_submodule(parent_path) if parent_path else model, attr, new.to(old.weight.device))
    return model


def cut_body(
    model: nn.Module, spec: ModelSpec, cut: int | Callable[[nn.Module], nn.Module] | None = None
) -> nn.Module:
    """The network without its pooling and classifier, sharing `model`'s layers.

    With an integer cut (`cut`, by default `spec.cut`) the body is an `nn.Sequential` of `model`'s first
    children, keeping their names (`body.layer4`); otherwise `cut(model)` builds it.

    >>> body = cut_body(create_model("resnet18"), model_spec("resnet18"))  # doctest: +SKIP
    >>> list(body.named_children())[-1][0]  # doctest: +SKIP
    'layer4'
    """
    cut = spec.cut if cut is None else cut
    if callable(cut):
        return cut(model)
    return nn.Sequential(OrderedDict(list(model.named_children())[:cut]))


def num_features(body: nn.Module, n_in: int | None = None, size: int = 64) -> int:
    """Channels `body` puts out, found by passing it one `(1, n_in, size, size)` image of zeros.

    >>> num_features(nn.Sequential(nn.Conv2d(3, 16, 3)))
    16
    """
    n_in = first_conv(body).in_channels if n_in is None else n_in
    p = next(body.parameters())
    # eval: BatchNorm over one image would otherwise be degenerate and update the running stats
    with eval_mode(body), torch.no_grad():
        out = body(torch.zeros(1, n_in, size, size, device=p.device, dtype=p.dtype))  # (1, C, h, w)
    return out.shape[1]
