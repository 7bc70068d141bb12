"""A microscope page: one self-contained HTML file to browse a vision model's layers and channels. For
each channel, the image that excites it most (activation maximisation) beside the dataset images that
excite it most (the top k by mean activation over the validation set, found in one pass with hooks).

>>> microscope_page(learn, "microscope.html")  # then open the file in a browser  # doctest: +SKIP
>>> microscope_page(learn, "page.html", layers=["layer1.0.conv1", -1], n_channels=16)  # doctest: +SKIP

The page needs nothing but itself: images are inlined as PNG, styles and script are in the file, and
it asks the network for nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ember.core.utils import atomic_write, eval_mode
from ember.models.hooks import hook_outputs
from ember.vision.inside._layers import LayerSpec, conv_layers, find_layer, model_device
from ember.vision.inside._page import LayerView, page_html
from ember.vision.inside._space import denormalize, find_normalize, image_space
from ember.vision.inside.classvis import visualize_channels
from ember.vision.inside.features import layer_outputs

__all__ = ["TopImages", "channel_counts", "default_layers", "microscope_page", "top_images"]


@dataclass
class TopImages:
    """For one layer: the dataset images that excite each of its first channels most, best first."""

    name: str
    n_channels: int  # the layer's channels (more than are kept, usually)
    values: Tensor  # (channels, k) mean activations
    images: Tensor  # (channels, k, c, h, w) uint8
    labels: list[list[str]] = field(default_factory=list)  # (channels, k) the images' targets, if any


def microscope_page(
    learn: Any,
    path: str | Path,
    layers: Sequence[LayerSpec] | None = None,
    n_channels: int = 8,
    n_images: int = 6,
    dl: Iterable | None = None,
    steps: int = 128,
    size: int | tuple[int, int] | None = None,
    seed: int = 0,
    **settings: Any,
) -> Path:
    """Write the microscope page for `learn`'s model to `path` (atomically) and return the path.

    `layers` are conv indices, dotted names or modules (default: `default_layers`); each shows its first
    `n_channels` channels, each channel its activation-maximising image (`visualize_channels` with
    `steps`, `size`, `seed` and the `Regularise` `settings`) and the `n_images` images of `dl` (the
    validation set by default) with the highest mean activation. A learner from `load_learner` has no
    data: give it `dl` (`labelled_dl`), or `size` for its drawn images, which are otherwise 64 px.

    >>> microscope_page(learn, "microscope.html", n_channels=4, steps=64)  # doctest: +SKIP
    """
    model = learn.model
    specs = list(layers) if layers is not None else default_layers(model)
    names = [find_layer(model, s)[0] for s in specs]
    dl = learn.dls.valid if dl is None else dl
    tops = top_images(learn, specs, n_channels, n_images, dl)
    views = []
    for spec, name, top, count in zip(specs, names, tops, channel_counts(learn, specs, size, dl)):
        chans = range(min(n_channels, count))
        vis = visualize_channels(learn, spec, chans, steps, size, seed, dl=dl, **settings)
        views.append(LayerView(name, count, list(chans), vis, top))
    page = page_html(type(model).__name__, views, n_images)
    path = Path(path)
    with atomic_write(path, "w") as f:
        f.write(page)
    return path


def default_layers(model: Any, max_layers: int = 6) -> list[str]:
    """Up to `max_layers` conv layers, evenly spread from the first to the last (by name)."""
    names = [n for n, _ in conv_layers(model)]
    if len(names) <= max_layers:
        return names
    step = (len(names) - 1) / (max_layers - 1)
    return [names[round(i * step)] for i in range(max_layers)]


def channel_counts(
    learn: Any, layers: Sequence[LayerSpec], size: Any = None, dl: Iterable | None = None
) -> list[int]:
    """How many channels each layer puts out, from one forward pass of a blank image."""
    space = image_space(learn, size, dl)
    blank = space.to_model(space.mean.reshape(1, -1, 1, 1).expand(1, -1, *space.size))
    return [o.shape[1] for o in layer_outputs(learn, (blank.to(model_device(learn.model)),), layers)]


def top_images(
    learn: Any, layers: Sequence[LayerSpec], n_channels: int, k: int, dl: Iterable
) -> list[TopImages]:
    """For each layer, the `k` images of `dl` that excite each of its first `n_channels` channels most,
    by mean activation; one pass over `dl`, keeping only the running best (memory: layers x channels
    x k images, not the data set)."""
    model = learn.model
    modules = [find_layer(model, s)[1] for s in layers]
    names = [find_layer(model, s)[0] for s in layers]
    norm, n_inp = find_normalize(learn.dls), learn.dls.n_inp
    vocab = [str(v) for v in getattr(learn.dls, "vocab", None) or []]
    best: list[_Running | None] = [None] * len(layers)
    with eval_mode(model), hook_outputs(modules) as hooks, torch.no_grad():
        for b in dl:
            xb = tuple(b[:n_inp])
            model(*xb)
            imgs = (denormalize(xb[0], norm) * 255).round().to(torch.uint8).cpu()
            ys = _labels(b, n_inp, vocab, len(imgs))
            for i, act in enumerate(hooks.stored):
                means = act.float().flatten(2).mean(2) if act.ndim > 2 else act.float()  # (bs, channels)
                if best[i] is None:
                    best[i] = _Running(means.shape[1], min(n_channels, means.shape[1]), k)
                best[i].add(means[:, : best[i].kept].cpu(), imgs, ys)  # type: ignore[union-attr]
    return [_finish(name, r) for name, r in zip(names, best)]


def _labels(b: Sequence[Any], n_inp: int, vocab: list[str], n: int) -> list[str]:
    """The batch's targets as labels, when it has single-label targets and the data a vocabulary."""
    if len(b) <= n_inp or not vocab:
        return [""] * n
    y = b[n_inp]
    if not isinstance(y, Tensor) or y.ndim != 1 or y.is_floating_point():
        return [""] * n
    return [vocab[int(i)] if 0 <= int(i) < len(vocab) else "" for i in y.tolist()]


class _Running:
    """The best `k` (value, image, label) of each kept channel so far."""

    def __init__(self, n_channels: int, kept: int, k: int) -> None:
        self.n_channels, self.kept, self.k = n_channels, kept, k
        self.values = torch.empty(kept, 0)
        self.images: Tensor | None = None  # (kept, <=k, c, h, w)
        self.labels: list[list[str]] = [[] for _ in range(kept)]

    def add(self, means: Tensor, imgs: Tensor, ys: list[str]) -> None:
        values = torch.cat([self.values, means.T], 1)  # (kept, old + bs)
        top = values.topk(min(self.k, values.shape[1]), dim=1).indices  # (kept, k)
        new_imgs = imgs[None].expand(self.kept, *imgs.shape)
        pool = new_imgs if self.images is None else torch.cat([self.images, new_imgs], 1)
        self.images = torch.stack([pool[c, top[c]] for c in range(self.kept)])
        self.labels = [[(self.labels[c] + ys)[j] for j in top[c].tolist()] for c in range(self.kept)]
        self.values = values.gather(1, top)


def _finish(name: str, r: _Running | None) -> TopImages:
    if r is None or r.images is None:  # the loader gave no batch (a model from load_learner has no data)
        return TopImages(name, 0, torch.empty(0, 0), torch.empty(0, 0, 0, 0, 0, dtype=torch.uint8))
    return TopImages(name, r.n_channels, r.values, r.images, r.labels)
