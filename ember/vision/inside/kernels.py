"""Image kernels, the course's first look at convolution: a small grid of numbers slid over an image,
each output pixel the sum of the kernel times the pixels under it.

>>> out = apply_kernel(img, "top_edge")  # (c, h, w), same size as img  # doctest: +SKIP
>>> fig = show_kernel_effect(img, "sharpen")  # original | kernel | result  # doctest: +SKIP

Kernels are applied as `torch.nn.functional.conv2d` does (cross-correlation: the kernel is not
flipped), to each colour channel on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ember.vision.inside._plot import as_image

__all__ = ["KERNELS", "apply_kernel", "as_kernel", "show_kernel_effect"]

_SOBEL = [[-1.0, -2.0, -1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 1.0]]  # dark above, bright below -> positive

# The named 3x3 kernels of the image-kernel walk-through. The edge detectors are Sobel kernels, named as
# in the course: top_edge lights up the top edges of bright shapes (dark above, bright below), and so on
# round; "edge" (an outline) finds edges of every direction.
KERNELS: dict[str, Tensor] = {
    "identity": torch.tensor([[0.0, 0, 0], [0, 1, 0], [0, 0, 0]]),
    "sharpen": torch.tensor([[0.0, -1, 0], [-1, 5, -1], [0, -1, 0]]),
    "blur": torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16,  # a small Gaussian
    "box_blur": torch.full((3, 3), 1 / 9),
    "edge": torch.tensor([[-1.0, -1, -1], [-1, 8, -1], [-1, -1, -1]]),
    "top_edge": torch.tensor(_SOBEL),
    "bottom_edge": -torch.tensor(_SOBEL),
    "left_edge": torch.tensor(_SOBEL).T.contiguous(),
    "right_edge": -torch.tensor(_SOBEL).T.contiguous(),
    "emboss": torch.tensor([[-2.0, -1, 0], [-1, 1, 1], [0, 1, 2]]),
}

KernelLike = str | Sequence[Sequence[float]] | np.ndarray | Tensor


def as_kernel(kernel: KernelLike) -> Tensor:
    """A float kernel (k, k), k odd, from a name in `KERNELS` or nested lists, an array or a tensor.

    >>> as_kernel("identity")[1, 1].item()
    1.0
    """
    if isinstance(kernel, str):
        if kernel not in KERNELS:
            raise KeyError(f"no kernel named {kernel!r}; the named kernels are {sorted(KERNELS)}")
        return KERNELS[kernel].clone()
    k = torch.as_tensor(np.asarray(kernel, dtype=np.float32) if not isinstance(kernel, Tensor) else kernel)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] % 2 == 0:
        raise ValueError(
            f"a kernel must be a square grid of odd size (3x3 is usual), got shape {tuple(k.shape)}"
        )
    return k.float()


def apply_kernel(img: Any, kernel: KernelLike, padding_mode: str = "reflect") -> Tensor:
    """`img` (a path, PIL image, array or tensor) convolved with `kernel`, channel by channel: a float
    tensor (c, h, w) of the image's size, not clipped (edge kernels give negative values).

    The border is padded by `padding_mode` ("reflect", "replicate" or "zeros"); reflecting keeps a
    uniform image uniform, where zeros would draw a dark frame around it.

    >>> apply_kernel(torch.ones(1, 4, 4), "blur").allclose(torch.ones(1, 4, 4))
    True
    """
    x, k = as_image(img), as_kernel(kernel)
    p = k.shape[0] // 2
    xb = x[:, None]  # (c, 1, h, w): each channel its own image, so one kernel serves them all
    if padding_mode != "zeros":
        xb = F.pad(xb, (p, p, p, p), mode=padding_mode)
        p = 0
    return F.conv2d(xb, k[None, None].to(x.dtype), padding=p)[:, 0]


def show_kernel_effect(
    img: Any, kernel: KernelLike, padding_mode: str = "reflect", figsize: tuple[float, float] = (10, 3.6)
) -> Any:
    """The walk-through in one figure: the image | the kernel, its numbers written in | the result
    (clipped to [0, 1] to be drawn). Returns the matplotlib figure.

    >>> fig = show_kernel_effect("cat.jpg", "left_edge")  # doctest: +SKIP
    >>> fig = show_kernel_effect(img, [[0, 0, 0], [0, 0, 1], [0, 0, 0]])  # a shift  # doctest: +SKIP
    """
    import matplotlib.pyplot as plt

    x, k = as_image(img), as_kernel(kernel)
    out = apply_kernel(x, k, padding_mode)
    fig, (a0, a1, a2) = plt.subplots(1, 3, figsize=figsize, gridspec_kw={"width_ratios": [3, 2, 3]})
    _draw(a0, x, "original")
    _draw_kernel(a1, k, kernel if isinstance(kernel, str) else "kernel")
    _draw(a2, out.clamp(0, 1), "result")
    fig.tight_layout()
    return fig


def _draw(ax: Any, img: Tensor, title: str) -> None:
    a = img.permute(1, 2, 0).numpy()
    ax.imshow(a[:, :, 0] if a.shape[2] == 1 else a, cmap="gray", vmin=0, vmax=1)
    ax.set_title(title)
    ax.axis("off")


def _draw_kernel(ax: Any, k: Tensor, title: str) -> None:
    """The kernel as a grid of cells, coloured by sign (red positive, blue negative), values written in."""
    lim = float(k.abs().max()) or 1.0
    ax.imshow(k.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
    n = k.shape[0]
    for i in range(n):
        for j in range(n):
            v = float(k[i, j])
            colour = "white" if abs(v) > 0.6 * lim else "black"  # readable on the dark cells too
            ax.text(j, i, f"{v:.3g}", ha="center", va="center", color=colour, fontsize=max(6, 16 - 2 * n))
    ax.set_xticks(np.arange(n + 1) - 0.5, minor=True)
    ax.set_yticks(np.arange(n + 1) - 0.5, minor=True)
    ax.grid(which="minor", color="black", linewidth=1)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    ax.set_title(title)
