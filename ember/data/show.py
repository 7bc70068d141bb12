"""Decoding batches for people, drawing them, and loaders for new items."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import default_collate

from ember.data.datasets import Datasets, TfmdDataset
from ember.data.loaders import DataLoader

if TYPE_CHECKING:
    from ember.data.block import TfmdDataLoaders

__all__ = ["decode_batch", "show_batch", "show_results", "test_dl", "tta_dl"]


def _items_of(batch: Sequence[Any], max_n: int) -> list[tuple]:
    bs = len(batch[0])
    return [tuple(v[i] for v in batch) for i in range(min(bs, max_n))]


def decode_batch(
    dls: TfmdDataLoaders, batch: Sequence[Any], max_n: int = 9, split_idx: int = 1
) -> list[tuple]:
    """Undo the batch transforms (normalisation, scaling), then each block's encoding, item by item."""
    blocks = dls.datasets.blocks[: len(batch)]
    pipe = dls.dblock.batch_pipeline(blocks, split_idx)
    batch = pipe.decode(tuple(v.detach().cpu() if isinstance(v, torch.Tensor) else v for v in batch))
    return [tuple(b.decode(v) for b, v in zip(blocks, item)) for item in _items_of(batch, max_n)]


def _grid(n: int, nrows: int | None, ncols: int | None, figsize: tuple[float, float] | None):
    import matplotlib.pyplot as plt

    ncols = ncols or min(n, math.ceil(math.sqrt(n)))
    nrows = nrows or math.ceil(n / ncols)
    fig, axs = plt.subplots(nrows, ncols, figsize=figsize or (3 * ncols, 3 * nrows), squeeze=False)
    for ax in axs.flat:
        ax.axis("off")
    return fig, list(axs.flat)


def show_items(
    blocks: Sequence[Any], items: Sequence[tuple], axs: Sequence[Any], titles: Sequence[str] = ()
) -> None:
    """Draw each item on its axes: visual values in block order, the rest joined as the title."""
    for k, (item, ax) in enumerate(zip(items, axs)):
        texts = [t for b, v in zip(blocks, item) if (t := b.show(v, ax)) is not None]
        if k < len(titles):
            texts.append(titles[k])
        ax.set_title("\n".join(texts), fontsize=9)


def show_batch(
    dls: TfmdDataLoaders,
    max_n: int = 9,
    unique: bool = False,
    nrows: int | None = None,
    ncols: int | None = None,
    figsize: tuple[float, float] | None = None,
) -> Any:
    """A grid of training items as the model sees them (augmented), labels decoded."""
    if unique:  # one item, augmented max_n times
        ds = dls.train.dataset
        batch = dls.train.batch_tfms[0](_to_device(default_collate([ds[0]] * max_n), dls.device))
    else:
        batch = dls.train.one_batch()
    blocks = dls.datasets.blocks
    pipe = dls.dblock.batch_pipeline(blocks, 0)
    decoded = pipe.decode(tuple(v.detach().cpu() for v in batch))
    items = _items_of(decoded, max_n)
    fig, axs = _grid(len(items), nrows, ncols, figsize)
    show_items(blocks, items, axs)
    return fig


def show_results(
    dls: TfmdDataLoaders,
    batch: Sequence[Any],
    preds: torch.Tensor,
    max_n: int = 9,
    nrows: int | None = None,
    ncols: int | None = None,
    figsize: tuple[float, float] | None = None,
) -> Any:
    """Inputs with their targets and the model's decoded predictions. Labels and numbers go in the
    title (green when the prediction matches, red otherwise); a target block that draws (`draws`: points,
    masks) gets two panels per item, the target on the left and the prediction on the right."""
    blocks, n_inp = dls.datasets.blocks, dls.datasets.n_inp
    decoded = dls.dblock.batch_pipeline(blocks, 1).decode(tuple(v.detach().cpu() for v in batch))
    items = _items_of(decoded, max_n)
    preds = [p.detach().cpu() for p in preds[: len(items)]]
    target = blocks[n_inp]
    if target.draws:
        k = ncols // 2 if ncols else min(len(items), 3)
        fig, axs = _grid(2 * len(items), nrows, 2 * k, figsize)
        for i, (item, pred) in enumerate(zip(items, preds)):
            for ax, value, title in (
                (axs[2 * i], item[n_inp], "target"),
                (axs[2 * i + 1], pred, "prediction"),
            ):
                show_items(blocks[:n_inp], [item[:n_inp]], [ax])
                target.show(value, ax)
                ax.set_title(title, fontsize=9)
        return fig
    fig, axs = _grid(len(items), nrows, ncols, figsize)
    for item, pred, ax in zip(items, preds, axs):
        show_items(blocks[:n_inp], [item[:n_inp]], [ax])
        actual, guess = target.show(item[n_inp], ax), target.show(pred, ax)
        ax.set_title(f"{actual}\n{guess}", fontsize=9, color="green" if actual == guess else "red")
    return fig


def _to_device(batch: Sequence[Any], device: torch.device) -> tuple:
    return tuple(v.to(device) for v in batch)


def test_dl(
    dls: TfmdDataLoaders,
    items: Sequence[Any],
    with_labels: bool = False,
    with_getters: bool = True,
    bs: int | None = None,
) -> DataLoader:
    """A loader over new items with the validation transforms. Only the inputs are made unless
    `with_labels` (then the items must carry targets like the training items)."""
    src = dls.datasets
    n = len(src.blocks) if with_labels else src.n_inp
    blocks = src.blocks[:n]
    getters = src.getters[:n] if with_getters else [None] * n
    # Same blocks, so the same vocabularies: no setup on the new items.
    new = Datasets(list(items), blocks, getters, (range(len(items)), []), src.n_inp, setup=False)
    ds = TfmdDataset(new[0], dls.dblock.item_pipeline(blocks, 1))
    pipe = dls.dblock.batch_pipeline(blocks, 1)
    return DataLoader(ds, bs or dls.valid.bs, device=dls.device, batch_tfms=[pipe], n_inp=src.n_inp)


def tta_dl(dls: TfmdDataLoaders, ds_idx: int = 1) -> DataLoader:
    """A loader over split `ds_idx`, in order, with the training transforms (augmentations) instead of
    the validation ones: what test-time augmentation averages over."""
    src, valid = dls.datasets, dls.loaders[ds_idx]
    ds = TfmdDataset(src[ds_idx], dls.dblock.item_pipeline(src.blocks, 0))
    return DataLoader(ds, valid.bs, num_workers=valid.num_workers, device=dls.device,
                      batch_tfms=[dls.dblock.batch_pipeline(src.blocks, 0)], n_inp=src.n_inp)  # fmt: skip
