"""Drawing a heatmap over the input it explains. The input is drawn by its block's `show` (decoded from
the model's input by the data's own pipeline), so this works for any application whose input block
draws; a bare model's input is drawn as its values rescaled to [0, 1].

>>> heat = gradcam(learn, "cat.jpg")  # doctest: +SKIP
>>> ax = show_heatmap(learn, heat, "cat.jpg")  # doctest: +SKIP
>>> fig = show_heatmap(learn, saliency(learn, xb=xb), xb=xb)  # one panel per image  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ember.interpret._inputs import input_batch
from ember.learner.contracts import HasBlocks

__all__ = ["overlay_heatmap", "show_heatmap"]


def show_heatmap(
    learn: Any,
    heatmap: Tensor,
    item: Any = None,
    xb: Tensor | None = None,
    ax: Any = None,
    alpha: float = 0.5,
    cmap: str = "jet",
    title: str | None = None,
) -> Any:
    """Draw `item` (or each image of the batch `xb`) with `heatmap` (h, w) (or (n, h, w)) over it.
    Returns the axes for one item, the figure for a batch.

    >>> show_heatmap(learn, gradcam(learn, "cat.jpg"), "cat.jpg", title="cat")  # doctest: +SKIP
    """
    x, one = input_batch(learn, item, xb, "show_heatmap")
    maps = heatmap[None] if heatmap.ndim == 2 else heatmap
    if len(maps) != len(x):
        raise ValueError(f"show_heatmap: {len(maps)} heatmaps for {len(x)} inputs; give one per input")
    if ax is not None or len(x) == 1:
        ax = ax if ax is not None else _axes()
        _draw_input(learn, x[0], ax)
        overlay_heatmap(ax, maps[0], alpha, cmap)
        if title:
            ax.set_title(title, fontsize=9)
        return ax
    from ember.data.show import _grid

    fig, axs = _grid(len(x), None, None, None)
    for ax, xi, m in zip(axs, x, maps):
        _draw_input(learn, xi, ax)
        overlay_heatmap(ax, m, alpha, cmap)
    return fig


def overlay_heatmap(ax: Any, heatmap: Tensor, alpha: float = 0.5, cmap: str = "jet") -> None:
    """Draw `heatmap` (h, w) translucently over what `ax` shows, stretched over the image drawn there
    (so a heatmap at the model's input size fits a picture of another size).

    >>> overlay_heatmap(ax, heat, alpha=0.4)  # doctest: +SKIP
    """
    extent = ax.images[0].get_extent() if ax.images else None
    ax.imshow(heatmap.detach().float().cpu().numpy(), cmap=cmap, alpha=alpha, extent=extent,
              interpolation="bilinear")  # fmt: skip
    ax.axis("off")


def _axes() -> Any:
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(4, 4))[1]


def _draw_input(learn: Any, x: Tensor, ax: Any) -> None:
    """One model input (c, h, w) drawn by its input block, after undoing the batch transforms."""
    dls = None if isinstance(learn, nn.Module) else learn.dls
    if isinstance(dls, HasBlocks) and hasattr(dls, "dblock"):
        from ember.data.show import decode_batch

        value = decode_batch(dls, (x[None].detach().cpu(),), max_n=1)[0][0]
        dls.datasets.blocks[0].show(value, ax)
        return
    a = x.detach().float().cpu()
    a = (a - a.min()) / (a.max() - a.min()).clamp_min(1e-12)
    if len(a) == 3:
        ax.imshow(a.permute(1, 2, 0).numpy())
    else:
        ax.imshow(a.mean(0).numpy(), cmap="gray")
    ax.axis("off")
