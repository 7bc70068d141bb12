"""Pictures of a latent space: `plot_latent_space` (a grid of decodes, or the encoded data projected to
2-D) and `show_traversal` (images along each latent direction). Both work for any learner with the
latent interface of `ember.generative` and return the matplotlib figure.

>>> plot_latent_space(learn).savefig("latent.png")  # doctest: +SKIP
>>> show_traversal(learn, latent_directions(learn, k=6)).savefig("traversal.png")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .latent import LatentDirections, _pca, latent_directions

__all__ = ["plot_latent_space", "show_traversal"]


def _tile(images: Tensor, n_rows: int) -> Tensor:
    """Images `(n_rows * n_cols, c, h, w)` as one picture `(n_rows * h, n_cols * w, c)`, row by row."""
    _, c, h, w = images.shape
    grid = images.reshape(n_rows, -1, c, h, w).permute(0, 3, 1, 4, 2)  # (rows, h, cols, w, c)
    return grid.reshape(n_rows * h, -1, c)


def _imshow(ax: Any, picture: Tensor, **kwargs: Any) -> None:
    """A `(h, w, c)` picture in [0, 1]; grey when c is 1."""
    picture = picture.clamp(0, 1).numpy()
    if picture.shape[-1] == 1:
        ax.imshow(picture[..., 0], cmap="gray", vmin=0, vmax=1, **kwargs)
    else:
        ax.imshow(picture, **kwargs)


def _grid_figure(learn: Any, n: int, span: float) -> Any:
    import matplotlib.pyplot as plt

    ticks = torch.linspace(-span, span, n)
    zy, zx = torch.meshgrid(ticks.flip(0), ticks, indexing="ij")  # the top row has the largest z[1]
    images = learn.decode(torch.stack([zx.flatten(), zy.flatten()], 1))  # (n * n, c, h, w)
    fig, ax = plt.subplots(figsize=(7, 7))
    _imshow(ax, _tile(images, n), extent=(-span, span, -span, span))
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    ax.set_title(f"decoded latent grid, {n}x{n}")
    return fig


def _encoded(learn: Any, dl: Any) -> tuple[Tensor, list[str] | None]:
    """The latent means of every image of `dl` (default the validation set) and, for the validation
    set of a DataBlock whose items are files, each item's label: its parent folder's name."""
    dl = learn.dls.valid if dl is None else dl
    z = torch.cat([learn.encode(batch[0]) for batch in dl])
    dsets = getattr(learn.dls, "datasets", None)
    if dsets is None or dl is not learn.dls.valid:
        return z, None
    items = [dsets.items[i] for i in dsets.splits[1]]
    if len(items) != len(z) or not all(isinstance(i, str | Path) for i in items):
        return z, None
    return z, [Path(i).parent.name for i in items]


def _scatter_figure(learn: Any, dl: Any) -> Any:
    import matplotlib.pyplot as plt

    z, labels = _encoded(learn, dl)
    axes, _, mean, explained = _pca(z, 2)
    xy = ((z - mean) @ axes.T).numpy()  # (n, 2)
    fig, ax = plt.subplots(figsize=(7, 6))
    if labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.6)
    else:
        names = sorted(set(labels))
        cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
        for i, name in enumerate(names):
            rows = [j for j, lab in enumerate(labels) if lab == name]
            ax.scatter(xy[rows, 0], xy[rows, 1], s=6, alpha=0.7, color=cmap(i % cmap.N), label=name)
        ax.legend(markerscale=3, fontsize="small", loc="best")
    ax.set_xlabel(f"PC1 ({explained[0]:.0%} of the variance)")
    ax.set_ylabel(f"PC2 ({explained[1]:.0%} of the variance)")
    ax.set_title(f"{len(z)} encoded images, latent size {learn.latent_dim}, projected by PCA")
    return fig


def plot_latent_space(learn: Any, dl: Any = None, n: int = 15, span: float = 3.0) -> Any:
    """For a 2-D latent space, an `n` x `n` grid of images decoded at z in [-span, span]^2; for a larger
    one, the encoded validation set (or `dl`) projected on its first two principal components, coloured
    by label when the items are files in class folders.

    >>> fig = plot_latent_space(learn)  # doctest: +SKIP
    """
    if learn.latent_dim == 2:
        return _grid_figure(learn, n, span)
    if not hasattr(learn, "encode"):
        raise TypeError(
            f"plot_latent_space: a latent space of {learn.latent_dim} dimensions is shown through encoded "
            "data, and this learner cannot encode (a GAN); use "
            "show_traversal(learn, latent_directions(learn))"
        )
    return _scatter_figure(learn, dl)


def show_traversal(
    learn: Any,
    directions: LatentDirections | None = None,
    k: int = 8,
    n_steps: int = 7,
    span: float = 3.0,
    z: Tensor | None = None,
) -> Any:
    """A grid of decoded images: one row per direction (default `latent_directions(learn, k)`), one
    column per step from `-span` to `+span` sigmas along it, from `z` (default the directions' mean).

    >>> fig = show_traversal(learn, latent_directions(learn, k=6))  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    dirs = latent_directions(learn, k) if directions is None else directions
    base = dirs.mean if z is None else torch.as_tensor(z, dtype=torch.float32).flatten()
    steps = torch.linspace(-span, span, n_steps)  # (n_steps,) in sigma units
    offsets = steps[None, :, None] * (dirs.sigmas[:, None] * dirs.directions)[:, None, :]  # (k, n_steps, d)
    images = learn.decode((base + offsets).reshape(-1, base.shape[0]))  # (k * n_steps, c, h, w)
    n_rows = len(dirs.directions)
    fig, ax = plt.subplots(figsize=(1.1 * n_steps + 1.5, 1.1 * n_rows + 0.6))
    _imshow(ax, _tile(images, n_rows))
    h, w = images.shape[-2:]
    ax.set_xticks([(j + 0.5) * w for j in range(n_steps)], [f"{s:+.1f}σ" for s in steps.tolist()])
    ax.set_yticks(
        [(i + 0.5) * h for i in range(n_rows)],
        [f"dir {i} ({e:.0%})" for i, e in enumerate(dirs.explained.tolist())],
    )
    ax.set_title("latent traversal: rows are directions, columns steps along each")
    fig.tight_layout()
    return fig
