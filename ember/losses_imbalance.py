"""Losses for imbalanced classes, such as a segmentation mask that is mostly background: soft Dice, focal
loss, and cross-entropy or focal loss plus Dice.

Like the losses of `ember.losses`, each has `reduction`, `activation` (softmax over `axis`) and `decodes`
(argmax over `axis`), so `get_preds` and `predict` give probabilities and class maps, and `to_config`, so
an export can describe it. Predictions are raw outputs with the classes at `axis` (`(bs, c, h, w)` with
`axis=1`), targets are class indices without that axis (`(bs, h, w)`).

>>> learn = Learner(dls, model, DiceCELoss(axis=1), metrics=DiceMulti())  # doctest: +SKIP
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ember.core.serial import register_config_type
from ember.losses import Reduction, _check_reduction, _reduce

__all__ = ["CombinedLoss", "DiceCELoss", "DiceLoss", "FocalLoss"]


def _classes_on_dim1(loss: str, inp: Tensor, targ: Tensor, axis: int) -> tuple[Tensor, Tensor]:
    """`inp` with its classes moved to dim 1, `(bs, c, ...)`, and `targ` as long `(bs, ...)`, checked."""
    inp = inp.movedim(axis, 1)
    if targ.shape != inp.shape[:1] + inp.shape[2:]:
        raise ValueError(
            f"{loss}: predictions of shape {tuple(inp.movedim(1, axis).shape)} (classes at axis {axis}) need "
            f"targets of shape {tuple(inp.shape[:1] + inp.shape[2:])}, class indices, but got "
            f"{tuple(targ.shape)}; a segmentation model gives (bs, c, h, w) for masks of (bs, h, w)"
        )
    return inp, targ.long()


class _ClassAxisLoss(nn.Module):
    """Softmax activation and argmax decoding over `axis`, shared by the losses of this module."""

    axis: int

    def activation(self, x: Tensor) -> Tensor:
        return x.softmax(dim=self.axis)

    def decodes(self, x: Tensor) -> Tensor:
        return x.argmax(dim=self.axis)


class DiceLoss(_ClassAxisLoss):
    """Soft Dice loss: `1 - (2·Σ p·t + smooth) / (Σ p + Σ t + smooth)` per item and class, with `p` the
    softmax probabilities and `t` the one-hot targets, the sums over the pixels of each item.

    `square_in_union` sums `p²` instead of `p` in the denominator. The `(bs, c)` values are averaged
    (`"mean"`), summed (`"sum"`) or returned (`"none"`); every class counts the same, however few its
    pixels, which is what makes Dice useful for small objects. `smooth` keeps a class absent from an item
    (and predicted absent) from dividing 0 by 0: its loss is then 0.

    >>> DiceLoss()(torch.zeros(1, 2, 1, 2), torch.tensor([[[0, 1]]]))  # p = 0.5: 1 - 1/2 per class
    tensor(0.5000)
    """

    def __init__(
        self,
        axis: int = 1,
        smooth: float = 1e-6,
        reduction: Reduction = "mean",
        square_in_union: bool = False,
    ) -> None:
        super().__init__()
        _check_reduction(type(self).__name__, reduction)
        self.axis, self.smooth, self.reduction, self.square_in_union = (
            axis,
            smooth,
            reduction,
            square_in_union,
        )

    def per_class(self, inp: Tensor, targ: Tensor) -> Tensor:
        """The loss of each item and class, `(bs, c)`."""
        inp, targ = _classes_on_dim1(type(self).__name__, inp, targ, self.axis)
        bs, c = inp.shape[:2]
        probs = inp.softmax(dim=1).reshape(bs, c, -1)  # (bs, c, pixels)
        onehot = F.one_hot(targ.reshape(bs, -1), c).movedim(-1, 1).to(probs.dtype)  # (bs, c, pixels)
        inter = (probs * onehot).sum(2)
        union = (probs * probs if self.square_in_union else probs).sum(2) + onehot.sum(2)
        return 1 - (2 * inter + self.smooth) / (union + self.smooth)

    def forward(self, inp: Tensor, targ: Tensor) -> Tensor:
        return _reduce(type(self).__name__, self.per_class(inp, targ), self.reduction)

    def extra_repr(self) -> str:
        return f"axis={self.axis}, smooth={self.smooth}, reduction={self.reduction!r}"

    def to_config(self) -> dict:
        return {"axis": self.axis, "smooth": self.smooth, "reduction": self.reduction,
                "square_in_union": self.square_in_union}  # fmt: skip


class FocalLoss(_ClassAxisLoss):
    """Focal loss: cross-entropy scaled by `(1 - p_t)^gamma`, `p_t` the probability of the target class,
    so the many pixels the model already gets right weigh little (Lin et al., 2017).

    `weight` scales each class's terms; as in `F.cross_entropy`, the mean is then divided by the sum of the
    targets' weights, so `gamma=0` is exactly cross-entropy. `reduction="none"` gives one value per
    pixel, shaped like the targets.

    >>> x, t = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
    >>> torch.allclose(FocalLoss(gamma=0.0)(x, t), F.cross_entropy(x, t))
    True
    """

    def __init__(
        self, gamma: float = 2.0, weight: Tensor | None = None, reduction: Reduction = "mean", axis: int = 1
    ) -> None:
        super().__init__()
        _check_reduction(type(self).__name__, reduction)
        self.gamma, self.reduction, self.axis = gamma, reduction, axis
        self.register_buffer("weight", weight)  # a buffer, so `.to(device)` moves it with the module

    def forward(self, inp: Tensor, targ: Tensor) -> Tensor:
        inp, targ = _classes_on_dim1(type(self).__name__, inp, targ, self.axis)
        log_pt = F.log_softmax(inp, dim=1).gather(1, targ.unsqueeze(1)).squeeze(1)  # (bs, ...)
        loss = -((1 - log_pt.exp()) ** self.gamma) * log_pt
        if self.weight is None:
            return _reduce(type(self).__name__, loss, self.reduction)
        w = self.weight.to(loss.device, loss.dtype)[targ]  # (bs, ...): the weight of each target
        loss = loss * w
        return (
            loss.sum() / w.sum()
            if self.reduction == "mean"
            else _reduce(type(self).__name__, loss, self.reduction)
        )

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, axis={self.axis}, reduction={self.reduction!r}"

    def to_config(self) -> dict:
        """What an export file keeps (class weights only matter for training, so they are left out)."""
        return {"gamma": self.gamma, "reduction": self.reduction, "axis": self.axis}


class _PlusDice(_ClassAxisLoss):
    """`first + alpha·Dice`, each taken per item (the mean over its pixels, the mean over its classes);
    `"mean"` and `"sum"` reduce those `(bs,)` values, `"none"` returns them."""

    def __init__(
        self, axis: int = 1, alpha: float = 1.0, smooth: float = 1e-6, reduction: Reduction = "mean"
    ) -> None:
        super().__init__()
        _check_reduction(type(self).__name__, reduction)
        self.axis, self.alpha, self.smooth, self.reduction = axis, alpha, smooth, reduction
        self.dice = DiceLoss(axis=axis, smooth=smooth, reduction="none")

    def first(self, inp: Tensor, targ: Tensor) -> Tensor:
        """The first term, one value per pixel `(bs, ...)`."""
        raise NotImplementedError

    def forward(self, inp: Tensor, targ: Tensor) -> Tensor:
        _classes_on_dim1(type(self).__name__, inp, targ, self.axis)  # so an error names this loss
        bs = inp.shape[0]
        first = self.first(inp, targ).reshape(bs, -1).mean(1)  # (bs,)
        dice = self.dice.per_class(inp, targ).mean(1)  # (bs,)
        return _reduce(type(self).__name__, first + self.alpha * dice, self.reduction)

    def extra_repr(self) -> str:
        return f"axis={self.axis}, alpha={self.alpha}, smooth={self.smooth}, reduction={self.reduction!r}"

    def to_config(self) -> dict:
        return {"axis": self.axis, "alpha": self.alpha, "smooth": self.smooth, "reduction": self.reduction}


class DiceCELoss(_PlusDice):
    """Cross-entropy plus `alpha` times the Dice loss: per-pixel accuracy from the first, balance between
    large and small classes from the second.

    >>> loss = DiceCELoss(axis=1, alpha=0.5)
    >>> loss(torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))).shape
    torch.Size([])
    """

    def first(self, inp: Tensor, targ: Tensor) -> Tensor:
        inp, targ = _classes_on_dim1(type(self).__name__, inp, targ, self.axis)
        return F.cross_entropy(inp, targ, reduction="none")


class CombinedLoss(_PlusDice):
    """The course's combination: focal loss (`gamma`) plus `alpha` times the Dice loss.

    >>> learn = Learner(dls, model, CombinedLoss(axis=1, alpha=1.0))  # doctest: +SKIP
    """

    def __init__(
        self,
        axis: int = 1,
        alpha: float = 1.0,
        smooth: float = 1e-6,
        reduction: Reduction = "mean",
        gamma: float = 2.0,
    ) -> None:
        super().__init__(axis, alpha, smooth, reduction)
        self.gamma = gamma
        self.focal = FocalLoss(gamma=gamma, reduction="none", axis=axis)

    def first(self, inp: Tensor, targ: Tensor) -> Tensor:
        return self.focal(inp, targ)

    def to_config(self) -> dict:
        return {**super().to_config(), "gamma": self.gamma}


register_config_type(DiceLoss, FocalLoss, DiceCELoss, CombinedLoss)
