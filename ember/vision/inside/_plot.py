"""Small drawing helpers shared by the inside-the-network views: a grid of panels, images as PNG bytes."""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ember.vision.core import PILImage


def grid(n: int, ncols: int | None = None, size: float = 1.6, title: str | None = None) -> tuple[Any, list]:
    """A figure with exactly `n` axes (no blank spare panels), `ncols` to a row, axis lines off."""
    import matplotlib.pyplot as plt  # here: importing ember.vision needs no plotting backend

    ncols = max(1, min(n, ncols or math.ceil(math.sqrt(n))))
    nrows = math.ceil(n / ncols)
    fig, axs = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + (0.4 if title else 0)),
                            squeeze=False)  # fmt: skip
    flat = list(axs.flat)
    for ax in flat[n:]:
        fig.delaxes(ax)
    for ax in flat[:n]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    return fig, flat[:n]


def as_image(img: Any) -> Tensor:
    """A float image (c, h, w) in [0, 1] from a path, PIL image, array (h, w[, c]) or tensor (c, h, w) /
    (h, w); integer tensors are read as 0..255, float tensors are kept as they are."""
    if isinstance(img, Tensor):
        t = img.detach().cpu()
        t = t[None] if t.ndim == 2 else t
        if t.ndim != 3:
            raise ValueError(f"expected an image tensor (c, h, w) or (h, w), got shape {tuple(img.shape)}")
        return t.float() if t.is_floating_point() else t.float() / 255
    a = np.asarray(PILImage.create(img), dtype=np.float32) / 255  # (h, w, 3)
    return torch.from_numpy(a).permute(2, 0, 1).contiguous()


def rescale(t: Tensor) -> Tensor:
    """`t` mapped linearly onto [0, 1] (min to 0, max to 1); a constant tensor becomes 0.5."""
    lo, hi = t.min(), t.max()
    return torch.full_like(t, 0.5) if hi - lo < 1e-12 else (t - lo) / (hi - lo)


def png_bytes(img: Tensor, max_side: int | None = None) -> bytes:
    """A float image (c, h, w) in [0, 1] (1 or 3 channels) as PNG bytes, shrunk to `max_side` pixels
    on its longer side when it is larger."""
    from PIL import Image

    a = (img.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    a = a[0].numpy() if a.shape[0] == 1 else a.permute(1, 2, 0).numpy()
    pil = Image.fromarray(np.ascontiguousarray(a))
    if max_side is not None and max(pil.size) > max_side:
        pil.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()
