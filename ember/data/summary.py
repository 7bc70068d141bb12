"""`DataBlock.summary`: one item walked through every step, printed, with the failing step named."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import default_collate

from ember.core.utils import plain

if TYPE_CHECKING:
    from ember.data.block import DataBlock
    from ember.data.blocks import TransformBlock

__all__ = ["describe", "summarize"]


def describe(v: Any) -> str:
    """A short, readable description of a value: its type, and its shape and dtype or its start. A block
    describes its own values (`TransformBlock.describe`): an image block gives an image's size and mode."""
    if isinstance(v, torch.Tensor):
        body = f"{v.tolist()!r}" if v.numel() <= 8 else f"shape={tuple(v.shape)}"
        return f"Tensor {body} dtype={v.dtype}"
    if isinstance(v, tuple) or (isinstance(v, list) and len(v) <= 4):
        return f"{type(v).__name__}(" + ", ".join(describe(x) for x in v) + ")"
    if isinstance(v, list):
        return f"list of {len(v)}, first: {describe(v[0])}"
    if hasattr(v, "shape") and hasattr(v, "iloc"):
        return f"{type(v).__name__} of shape {v.shape}"
    text = repr(v).replace("\n", " ")
    return f"{type(v).__name__} {text if len(text) < 80 else text[:77] + '...'}"


def _describe_item(blocks: Sequence[TransformBlock], item: tuple) -> str:
    return "tuple(" + ", ".join(b.describe(v) for b, v in zip(blocks, item)) + ")"


def _step(name: str, f: Callable[[], Any], show: Callable[[Any], str] = describe) -> Any:
    try:
        out = f()
    except Exception as e:
        print(f"  FAILED at: {name}\n  {type(e).__name__}: {e}")
        raise
    print(f"  {name}\n    -> {show(out)}")
    return out


def summarize(dblock: DataBlock, source: Any, bs: int = 4, show_batch: bool = False) -> Any:
    """Print each step of building one item and one small batch (see `DataBlock.summary`); with
    `show_batch`, draw a batch from the DataBlock's loaders and return the figure."""
    print(f"Collecting items from {describe(source)}")
    items = _step("get_items", lambda: dblock._items(source))
    print(f"Found {len(items)} items")
    dsets = _step("split and set up blocks", lambda: dblock.datasets(source))
    print(f"{len(dsets.train)} training and {len(dsets.valid)} validation items")
    i = dsets.splits[0][0]
    print(f"\nBuilding one item: {plain(items[i])}")
    values = []
    for j, (block, getter) in enumerate(zip(dsets.blocks, dsets.getters)):
        role = "input" if j < dsets.n_inp else "target"
        print(f" Block {j} ({role}): {block!r}")
        raw = _step(f"getter {getattr(getter, '__name__', getter)!r}", lambda g=getter: g(items[i]))
        encode = f"{type(block).__name__}.encode"
        values.append(_step(encode, lambda b=block, r=raw: b.encode(r), block.describe))
    pipe = dblock.item_pipeline(dsets.blocks, 0)
    print(f"\nItem transforms (training): {pipe!r}")
    item, show = tuple(values), lambda x: _describe_item(dsets.blocks, x)
    for t in pipe.tfms:
        item = _step(repr(t), lambda t=t, x=item: t.encodes(x, pipe.kinds, 0), show)
    n = min(bs, len(dsets.train))
    print(f"\nCollating {n} items")
    tds = [pipe(dsets.train[k]) for k in range(n)]
    batch = _step("collate", lambda: tuple(default_collate(tds)))
    bpipe = dblock.batch_pipeline(dsets.blocks, 0)
    print(f"\nBatch transforms (training): {bpipe!r}")
    for t in bpipe.tfms:
        batch = _step(repr(t), lambda t=t, x=batch: t.encodes(x, bpipe.kinds, 0))
    print("\nAll steps passed.")
    if not show_batch:
        return None
    print(f"\nShowing a batch of {n} training items")
    dls = _step("dataloaders", lambda: dblock.dataloaders(source, bs=n, num_workers=0, cache=False))
    return _step("show_batch", lambda: dls.show_batch(max_n=n))
