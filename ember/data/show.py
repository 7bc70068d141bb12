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

__all__ = ["decode_batch", "decode_preds", "show_batch", "show_results", "test_dl", "tta_dl"]


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


def _cpu(v: Any) -> Any:
    return v.detach().cpu() if isinstance(v, torch.Tensor) else v


def decode_preds(dls: TfmdDataLoaders, inputs: Any, preds: Any) -> Any:
    """Predictions (after the loss's `decodes`) put in the target's slot and decoded by the validation batch
    pipeline, as a target would be: an image target is denormalised and made uint8 pixels again; labels,
    masks and points pass as they are. `inputs` are the batch's (a tensor, or a tuple of `n_inp`): every
    slot goes through the decodes, so a transform that reads the input to decode the target can.

    >>> pixels = decode_preds(dls, xb, preds)  # doctest: +SKIP
    """
    if isinstance(preds, tuple | list):  # a model returning several tensors: no single target slot
        return preds
    n_inp = dls.datasets.n_inp
    xs = tuple(inputs) if isinstance(inputs, tuple | list) else (inputs,)
    pipe = dls.dblock.batch_pipeline(dls.datasets.blocks[: n_inp + 1], 1)
    return pipe.decode((*map(_cpu, xs), _cpu(preds)))[n_inp]


def _own_panel(block: Any) -> bool:
    """Whether a target block draws a whole picture (an image target): a panel of its own, not an overlay."""
    return block.draws and not block.overlays


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
    """A grid of training items as the model sees them (augmented), labels decoded. An item whose target
    is a picture of its own (an image target) gets two panels side by side, "input" and "target"."""
    if unique:  # one item, augmented max_n times
        ds = dls.train.dataset
        batch = dls.train.batch_tfms[0](_to_device(default_collate([ds[0]] * max_n), dls.device))
    else:
        batch = dls.train.one_batch()
    blocks, n_inp = dls.datasets.blocks, dls.datasets.n_inp
    pipe = dls.dblock.batch_pipeline(blocks, 0)
    items = _items_of(pipe.decode(tuple(v.detach().cpu() for v in batch)), max_n)
    own = [j for j in range(n_inp, len(blocks)) if _own_panel(blocks[j])]
    if not own:
        fig, axs = _grid(len(items), nrows, ncols, figsize)
        show_items(blocks, items, axs)
        return fig
    # An image target: the input (with any labels) in one panel, each picture target beside it.
    per, rest = 1 + len(own), [j for j in range(len(blocks)) if j not in own]
    k = ncols // per if ncols else min(len(items), 3)
    fig, axs = _grid(per * len(items), nrows, per * max(k, 1), figsize)
    for i, item in enumerate(items):
        show_items([blocks[j] for j in rest], [tuple(item[j] for j in rest)], [axs[per * i]], ["input"])
        for n, j in enumerate(own, 1):
            blocks[j].show(item[j], axs[per * i + n])
            axs[per * i + n].set_title("target", fontsize=9)
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
    """Inputs with their targets and the model's predictions (after the loss's `decodes`), both decoded
    by the batch pipeline. Labels and numbers go in the title (green when the prediction matches, red
    otherwise); a target block that draws over its input (`draws` and `overlays`: points, masks) gets
    two panels per item, the target on the left and the prediction on the right; one that draws a picture
    of its own (an image target) gets three, one row per item: input, target, prediction."""
    blocks, n_inp = dls.datasets.blocks, dls.datasets.n_inp
    decoded = dls.dblock.batch_pipeline(blocks, 1).decode(tuple(v.detach().cpu() for v in batch))
    items = _items_of(decoded, max_n)
    inputs = [x[: len(items)] for x in batch[:n_inp]]
    preds = [_cpu(p) for p in decode_preds(dls, inputs, preds[: len(items)])]
    target = blocks[n_inp]
    if _own_panel(target):
        fig, axs = _grid(3 * len(items), nrows, 3 * max(ncols // 3 if ncols else 1, 1), figsize)
        for i, (item, pred) in enumerate(zip(items, preds)):
            show_items(blocks[:n_inp], [item[:n_inp]], [axs[3 * i]], ["input"])
            for ax, value, title in (
                (axs[3 * i + 1], item[n_inp], "target"),
                (axs[3 * i + 2], pred, "prediction"),
            ):
                target.show(value, ax)
                ax.set_title(title, fontsize=9)
        return fig
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
