"""Losses that know their activation and decoding, so `get_preds` can give probabilities and labels.

Each is an `nn.Module` with a `reduction` attribute ("mean", "sum" or "none"), `activation(x)` (raw
outputs -> probabilities or values) and `decodes(x)` (probabilities -> labels or values). The "Flat"
losses move `axis` to the end and flatten, so one loss serves `(bs, c)` classification and
`(bs, c, h, w)` segmentation, or `(bs, 1)` regression outputs against `(bs,)` targets.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ember.core.serial import register_config_type

__all__ = [
    "BCEWithLogitsLossFlat",
    "CrossEntropyLossFlat",
    "L1LossFlat",
    "LabelSmoothingCrossEntropy",
    "MSELossFlat",
]

Reduction = Literal["mean", "sum", "none"]


def _check_reduction(loss: str, reduction: str) -> None:
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{loss}: reduction must be 'mean', 'sum' or 'none', not {reduction!r}")


def _reduce(loss: str, x: Tensor, reduction: str) -> Tensor:
    _check_reduction(loss, reduction)
    return x.mean() if reduction == "mean" else x.sum() if reduction == "sum" else x


def _check_numel(loss: str, inp: Tensor, targ: Tensor) -> None:
    if inp.numel() != targ.numel():
        raise ValueError(
            f"{loss}: predictions of shape {tuple(inp.shape)} and targets of shape {tuple(targ.shape)} "
            "hold different numbers of values; the model should give one output per target value"
        )


def _flat_pair(loss: str, inp: Tensor, targ: Tensor, axis: int) -> tuple[Tensor, Tensor]:
    """`inp` and `targ` as 1-d tensors in the same order, `axis` moved last in both where both have it."""
    if targ.ndim == inp.ndim:
        targ = targ.movedim(axis, -1)
    inp = inp.movedim(axis, -1)
    _check_numel(loss, inp, targ)
    return inp.reshape(-1), targ.reshape(-1)


def _float_like(targ: Tensor, inp: Tensor) -> Tensor:
    # match the predictions' float type so a bfloat16 model needs no cast of its own
    return targ.to(inp.dtype) if inp.is_floating_point() else targ.float()


class CrossEntropyLossFlat(nn.Module):
    """Cross-entropy with the class axis at `axis`, flattened to `(n, c)` predictions and `(n,)` targets.

    With `reduction="none"` there is one value per flattened item: `(bs,)` for `(bs, c)` outputs, or
    `(bs*h*w,)` (one per pixel) for segmentation outputs `(bs, c, h, w)` with `axis=1`. Targets equal in
    shape to the predictions (or `floatify=True`) are read as class probabilities, e.g. from MixUp.

    >>> loss = CrossEntropyLossFlat(axis=1)
    >>> loss(torch.randn(2, 5, 4, 4), torch.randint(0, 5, (2, 4, 4))).shape
    torch.Size([])
    """

    def __init__(
        self,
        *,
        axis: int = -1,
        weight: Tensor | None = None,
        ignore_index: int = -100,
        reduction: Reduction = "mean",
        label_smoothing: float = 0.0,
        flatten: bool = True,
        floatify: bool = False,
    ) -> None:
        super().__init__()
        _check_reduction(type(self).__name__, reduction)
        self.axis, self.ignore_index, self.reduction = axis, ignore_index, reduction
        self.label_smoothing, self.flatten, self.floatify = label_smoothing, flatten, floatify
        self.register_buffer("weight", weight)  # a buffer, so `.to(device)` moves it with the module

    def forward(self, inp: Tensor, targ: Tensor) -> Tensor:
        soft = self.floatify or targ.shape == inp.shape
        if inp.ndim == 2 and not soft and self.weight is None:  # (bs, c) logits: torch's layout already
            return F.cross_entropy(
                inp if self.axis in (-1, 1) else inp.movedim(self.axis, -1),
                targ if targ.ndim == 1 and targ.dtype == torch.long else targ.reshape(-1).long(),
                ignore_index=self.ignore_index,
                reduction=self.reduction,
                label_smoothing=self.label_smoothing,
            )
        inp = inp.movedim(self.axis, -1)  # (..., c)
        targ = targ.movedim(self.axis, -1).to(inp.dtype) if soft else targ.long()
        c = inp.shape[-1]
        if self.flatten:
            inp, targ = inp.reshape(-1, c), (targ.reshape(-1, c) if soft else targ.reshape(-1))
        else:  # torch wants the classes on dim 1
            inp, targ = inp.movedim(-1, 1), (targ.movedim(-1, 1) if soft else targ)
        weight = None if self.weight is None else self.weight.to(inp.device)
        return F.cross_entropy(
            inp,
            targ,
            weight=weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )

    def activation(self, x: Tensor) -> Tensor:
        return x.softmax(dim=self.axis)

    def decodes(self, x: Tensor) -> Tensor:
        return x.argmax(dim=self.axis)

    def extra_repr(self) -> str:
        return f"axis={self.axis}, reduction={self.reduction!r}, label_smoothing={self.label_smoothing}"

    def to_config(self) -> dict:
        """What an export file keeps (class weights only matter for training, so they are left out)."""
        keys = ("axis", "ignore_index", "reduction", "label_smoothing", "flatten", "floatify")
        return {k: getattr(self, k) for k in keys}


class BCEWithLogitsLossFlat(nn.Module):
    """Binary cross-entropy on logits, for multi-label (`(bs, n_labels)`) or single-logit binary outputs.

    Targets are reshaped to the predictions' shape (so `(bs, 1)` logits meet `(bs,)` targets) and cast
    to float. `weight` and `pos_weight` broadcast over the label axis, as in torch. With
    `reduction="none"` and `flatten`, the result is 1-d: one value per (item, label) pair, `(bs*n_labels,)`.

    >>> loss = BCEWithLogitsLossFlat(thresh=0.2)
    >>> loss.decodes(torch.tensor([0.1, 0.3]))
    tensor([False,  True])
    """

    def __init__(
        self,
        *,
        axis: int = -1,
        floatify: bool = True,
        thresh: float = 0.5,
        weight: Tensor | None = None,
        pos_weight: Tensor | None = None,
        reduction: Reduction = "mean",
        flatten: bool = True,
    ) -> None:
        super().__init__()
        _check_reduction(type(self).__name__, reduction)
        self.axis, self.floatify, self.thresh = axis, floatify, thresh
        self.reduction, self.flatten = reduction, flatten
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, inp: Tensor, targ: Tensor) -> Tensor:
        if targ.ndim == inp.ndim:
            targ = targ.movedim(self.axis, -1)
        inp = inp.movedim(self.axis, -1)  # (..., n_labels): keeps pos_weight lined up with the labels
        if self.flatten:
            _check_numel(type(self).__name__, inp, targ)
            targ = targ.reshape(inp.shape)
        if self.floatify:
            targ = _float_like(targ, inp)
        weight = None if self.weight is None else self.weight.to(inp.device)
        pos_weight = None if self.pos_weight is None else self.pos_weight.to(inp.device)
        loss = F.binary_cross_entropy_with_logits(
            inp, targ, weight=weight, pos_weight=pos_weight, reduction=self.reduction
        )
        return loss.reshape(-1) if self.flatten and self.reduction == "none" else loss

    def activation(self, x: Tensor) -> Tensor:
        return x.sigmoid()

    def decodes(self, x: Tensor) -> Tensor:
        return x > self.thresh

    def extra_repr(self) -> str:
        return f"axis={self.axis}, thresh={self.thresh}, reduction={self.reduction!r}"

    def to_config(self) -> dict:
        """What an export file keeps (weights only matter for training, so they are left out)."""
        return {"axis": self.axis, "floatify": self.floatify, "thresh": self.thresh,
                "reduction": self.reduction, "flatten": self.flatten}  # fmt: skip


class _PointwiseLossFlat(nn.Module):
    """A regression loss on predictions and targets flattened to 1-d; `func` is the torch function."""

    func: Callable[..., Tensor]

    def __init__(self, *, axis: int = -1, floatify: bool = True, reduction: Reduction = "mean") -> None:
        super().__init__()
        _check_reduction(type(self).__name__, reduction)
        self.axis, self.floatify, self.reduction = axis, floatify, reduction

    def forward(self, inp: Tensor, targ: Tensor) -> Tensor:
        inp, targ = _flat_pair(type(self).__name__, inp, targ, self.axis)  # (n,), (n,)
        if self.floatify:
            targ = _float_like(targ, inp)
        return type(self).func(inp, targ, reduction=self.reduction)

    def activation(self, x: Tensor) -> Tensor:
        return x

    def decodes(self, x: Tensor) -> Tensor:
        return x

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"

    def to_config(self) -> dict:
        return {"axis": self.axis, "floatify": self.floatify, "reduction": self.reduction}


class MSELossFlat(_PointwiseLossFlat):
    """Mean squared error on flattened predictions and targets: `(bs, 1)` outputs meet `(bs,)` targets,
    `(bs, n, 2)` points meet `(bs, n, 2)` targets. `reduction="none"` gives one value per flattened value.

    >>> MSELossFlat()(torch.tensor([[1.0], [3.0]]), torch.tensor([0, 1]))
    tensor(2.5000)
    """

    func = staticmethod(F.mse_loss)


class L1LossFlat(_PointwiseLossFlat):
    """Mean absolute error on flattened predictions and targets (see `MSELossFlat`).

    >>> L1LossFlat()(torch.tensor([[1.0], [3.0]]), torch.tensor([0, 1]))
    tensor(1.5000)
    """

    func = staticmethod(F.l1_loss)


class LabelSmoothingCrossEntropy(nn.Module):
    """Cross-entropy against targets smoothed towards uniform: `(1-eps)*nll + eps*mean_c(-log p_c)`.

    Classes are on dim 1, as in torch, so `(bs, c)` and `(bs, c, h, w)` outputs both work; without
    `weight` this equals `F.cross_entropy(..., label_smoothing=eps)`. `weight` scales only the nll
    term. `reduction="none"` gives one value per item, shaped like the targets.

    >>> loss = LabelSmoothingCrossEntropy(eps=0.1)
    >>> loss(torch.zeros(2, 4), torch.tensor([0, 3]))  # uniform outputs: log(4) whatever eps is
    tensor(1.3863)
    """

    def __init__(self, eps: float = 0.1, weight: Tensor | None = None, reduction: Reduction = "mean") -> None:
        super().__init__()
        _check_reduction(type(self).__name__, reduction)
        self.eps, self.reduction = eps, reduction
        self.register_buffer("weight", weight)

    def forward(self, inp: Tensor, targ: Tensor) -> Tensor:
        log_p = F.log_softmax(inp, dim=1)  # (bs, c, ...)
        smooth = -log_p.mean(dim=1)  # (bs, ...): mean over the classes of -log p
        weight = None if self.weight is None else self.weight.to(inp.device)
        nll = F.nll_loss(log_p, targ.long(), weight=weight, reduction=self.reduction)
        return (1 - self.eps) * nll + self.eps * _reduce(type(self).__name__, smooth, self.reduction)

    def activation(self, x: Tensor) -> Tensor:
        return x.softmax(dim=1)

    def decodes(self, x: Tensor) -> Tensor:
        return x.argmax(dim=1)

    def extra_repr(self) -> str:
        return f"eps={self.eps}, reduction={self.reduction!r}"

    def to_config(self) -> dict:
        return {"eps": self.eps, "reduction": self.reduction}


register_config_type(
    CrossEntropyLossFlat, BCEWithLogitsLossFlat, MSELossFlat, L1LossFlat, LabelSmoothingCrossEntropy
)
