"""What a trained network's layers hold: its first filters as pictures, and the feature maps one image
makes in chosen layers.

>>> fig = show_conv_filters(learn)  # one small picture per first-layer filter  # doctest: +SKIP
>>> fig = show_feature_maps(learn, "digit.png", layer=1)  # doctest: +SKIP
>>> feature_maps(learn, "digit.png", "body.2").shape  # (channels, h, w)  # doctest: +SKIP

A layer is an index into the model's conv layers, a dotted name from `learn.model.named_modules()`,
or the module itself; a name the model does not have is a `LayerNotFoundError` listing its layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ember.core.utils import eval_mode
from ember.models.hooks import hook_outputs
from ember.vision.inside._layers import LayerSpec, find_layer
from ember.vision.inside._plot import grid, rescale

__all__ = ["feature_maps", "show_conv_filters", "show_feature_maps"]


def show_conv_filters(learn: Any, layer: LayerSpec = 0, max_n: int | None = None, ncols: int = 8) -> Any:
    """The kernels of conv `layer` (the first by default), one panel per filter, each rescaled to
    [0, 1] on its own (a filter's pattern, not its size, is what shows). Filters over 3 input
    channels are drawn in colour, others in grey (a later layer's filter as its mean over the input
    channels). Returns the figure.

    >>> fig = show_conv_filters(learn, max_n=32)  # doctest: +SKIP
    """
    name, conv = find_layer(learn.model, layer)
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"layer {name!r} is a {type(conv).__name__}, not a conv layer: it has no filters")
    w = conv.weight.detach().float().cpu()  # (out, in, kh, kw)
    w = w[:max_n] if max_n else w
    n_in = w.shape[1]
    fig, axs = grid(len(w), ncols, size=1.0, title=f"{name}: {conv.out_channels} filters of {n_in}x"
                    f"{conv.kernel_size[0]}x{conv.kernel_size[1]}")  # fmt: skip
    for i, (ax, f) in enumerate(zip(axs, w)):
        f = f if n_in == 3 else f.mean(0, keepdim=True)
        a = rescale(f).permute(1, 2, 0).numpy()
        ax.imshow(a[:, :, 0] if a.shape[2] == 1 else a, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(str(i), fontsize=7)
    return fig


def item_batch(learn: Any, item: Any) -> tuple[Tensor, ...]:
    """The model's inputs for one item (what `learn.predict` takes), made as `learn.predict` makes them:
    through the validation transforms and the normalisation."""
    batch = learn.dls.test_dl([item], with_getters=False).one_batch()
    return tuple(batch[: learn.dls.n_inp])


def feature_maps(learn: Any, item: Any, layer: LayerSpec) -> Tensor:
    """What `layer` puts out for one item: (channels, h, w) for a conv layer's output.

    >>> feature_maps(learn, "seven.png", 0).shape  # doctest: +SKIP
    torch.Size([16, 28, 28])
    """
    return layer_outputs(learn, item_batch(learn, item), [layer])[0][0]


def layer_outputs(learn: Any, xb: tuple[Tensor, ...], layers: Sequence[LayerSpec]) -> list[Tensor]:
    """Each layer's output for the batch `xb`, from one forward pass in eval mode, without gradients."""
    model = learn.model
    modules = [find_layer(model, spec)[1] for spec in layers]
    with eval_mode(model), hook_outputs(modules) as hooks, torch.no_grad():
        model(*xb)
    return [s.float().cpu() for s in hooks.stored]


def show_feature_maps(
    learn: Any, item: Any, layer: LayerSpec | Sequence[LayerSpec] = 0, max_n: int = 16, ncols: int = 8
) -> Any:
    """The first `max_n` channels of the feature maps of `layer` (or of each layer of a list, one row
    block each) for one item, each channel rescaled to [0, 1] on its own. Returns the figure.

    >>> fig = show_feature_maps(learn, "seven.png", [0, "layer2.0.conv1"])  # doctest: +SKIP
    """
    specs = list(layer) if isinstance(layer, list | tuple) else [layer]
    names = [find_layer(learn.model, s)[0] for s in specs]
    outs = layer_outputs(learn, item_batch(learn, item), specs)
    maps = [o[0] if o.ndim == 4 else o[0].reshape(-1, 1, 1) for o in outs]  # (c, h, w) each
    shown = [m[:max_n] for m in maps]
    per_row = [max(1, -(-len(m) // ncols)) for m in shown]  # rows each layer takes
    fig, axs = grid(sum(per_row) * ncols, ncols, size=1.2)
    start = 0
    for name, m, full, rows in zip(names, shown, maps, per_row):
        block = axs[start : start + rows * ncols]
        for i, ax in enumerate(block):
            if i >= len(m):
                fig.delaxes(ax)
                continue
            ax.imshow(rescale(m[i]).numpy(), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(str(i), fontsize=7)
        label = f"{name}\n{' x '.join(map(str, full.shape))}"
        block[0].text(-0.12, 0.5, label, transform=block[0].transAxes, rotation=90, ha="right", va="center",
                      fontsize=8)  # fmt: skip
        start += rows * ncols
    return fig
