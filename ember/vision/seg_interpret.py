"""Interpreting a segmentation model: IoU per class, the images it gets most wrong, pixel confusion.

>>> interp = SegmentationInterpretation.from_learner(learn)  # doctest: +SKIP
>>> interp.iou_table(); interp.plot_worst(4); interp.plot_confusion_matrix()  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ember.learner.interpret import plot_confusion
from ember.learner.learner import Learner
from ember.metrics.segmentation import pixel_confusion
from ember.vision.core import show_image, show_mask

__all__ = ["SegmentationInterpretation"]


class SegmentationInterpretation:
    """Predictions of a segmentation model on one split, ready to inspect.

    `preds` are per-class scores `(n, c, h, w)` (probabilities or logits: only their argmax is used),
    `targs` the masks `(n, h, w)`, `codes` the class names (a MaskBlock's codes). `losses` `(n,)` and
    `inputs` `(n, ch, h, w)` are optional; `dl` lets the plots draw each item's image as the data set
    holds it (after the item transforms, before normalisation).

    >>> interp = SegmentationInterpretation(probs, masks, ["background", "road"])  # doctest: +SKIP
    """

    def __init__(
        self,
        preds: Tensor,
        targs: Tensor,
        codes: Sequence[str] | None = None,
        losses: Tensor | None = None,
        inputs: Tensor | None = None,
        dl: Any = None,
    ) -> None:
        if preds.ndim != targs.ndim + 1 or preds.shape[:1] + preds.shape[2:] != targs.shape:
            raise ValueError(
                f"SegmentationInterpretation needs scores (n, classes, h, w) and masks (n, h, w); got "
                f"predictions {tuple(preds.shape)} and targets {tuple(targs.shape)}"
            )
        c = preds.shape[1]
        codes = [str(v) for v in codes] if codes else [str(i) for i in range(c)]
        if len(codes) != c:
            raise ValueError(
                f"SegmentationInterpretation: {len(codes)} codes {codes} for {c} predicted classes"
            )
        self.preds, self.targs, self.codes = preds, targs.long(), codes
        self.decoded = preds.argmax(1)  # (n, h, w): the predicted class of each pixel
        self.losses, self.inputs, self.dl = losses, inputs, dl
        # counted now, so that a mask value outside the codes fails here, naming them
        self._cm = pixel_confusion(self.decoded, self.targs, c, f"SegmentationInterpretation (codes {codes})")

    @classmethod
    def from_learner(cls, learn: Learner, ds_idx: int = 1, dl: Any = None) -> SegmentationInterpretation:
        """Run the model over a split (validation by default) and keep what interpretation needs."""
        dl = learn.dls[ds_idx] if dl is None else dl
        inputs, probs, targs, losses = learn.get_preds(dl=dl, with_input=True, with_loss=True)
        codes = getattr(learn.dls, "vocab", None)
        return cls(probs, targs, codes, losses, inputs if isinstance(inputs, Tensor) else None, dl)

    @property
    def c(self) -> int:
        return len(self.codes)

    def confusion_matrix(self) -> Tensor:
        """Pixel counts `(c, c)`: row = target class, column = predicted class."""
        return self._cm.clone()

    def iou_table(self) -> Any:
        """A pandas DataFrame, one row per class: its name, IoU over every pixel of the split (NaN when
        the class is neither a target nor a prediction anywhere), and its target and predicted pixels."""
        import pandas as pd

        cm = self.confusion_matrix().double()
        inter, n_targ, n_pred = cm.diagonal(), cm.sum(1), cm.sum(0)
        union = n_targ + n_pred - inter
        iou = torch.where(union > 0, inter / union.clamp(min=1), torch.nan)
        return pd.DataFrame(
            {
                "class": self.codes,
                "iou": iou.tolist(),
                "pixels": n_targ.long().tolist(),
                "predicted": n_pred.long().tolist(),
            }  # fmt: skip
        )

    def item_iou(self) -> Tensor:
        """Mean IoU of each item `(n,)`, over the classes its mask or its prediction holds."""
        n, c = len(self.targs), self.c
        flat = (
            torch.arange(n).view(n, 1) * c * c + self.targs.reshape(n, -1) * c + self.decoded.reshape(n, -1)
        )
        cm = torch.bincount(flat.reshape(-1), minlength=n * c * c).view(n, c, c).double()
        inter = cm.diagonal(dim1=1, dim2=2)  # (n, c)
        union = cm.sum(2) + cm.sum(1) - inter
        return torch.where(union > 0, inter / union.clamp(min=1), torch.nan).nanmean(1)

    def worst(self, k: int = 9) -> tuple[Tensor, Tensor]:
        """`(indices, ious)` of the `k` items with the lowest mean IoU, worst first."""
        ious = self.item_iou()
        res = ious.topk(min(k, len(ious)), largest=False)
        return res.indices, res.values

    def top_losses(self, k: int | None = None, largest: bool = True) -> tuple[Tensor, Tensor]:
        """`(losses, indices)` of the `k` items with the largest losses (as for classification)."""
        if self.losses is None:
            raise ValueError(
                "SegmentationInterpretation.top_losses needs the losses: build it with from_learner, or pass "
                "losses=(n,) to the constructor"
            )
        k = len(self.losses) if k is None else min(k, len(self.losses))
        return self.losses.topk(k, largest=largest)

    def plot_confusion_matrix(self, normalize: bool = True, cmap: str = "Blues", figsize=None) -> Any:
        """The pixel confusion matrix as a heat map: row fractions when `normalize` (the default, since
        pixel counts of a large class dwarf the rest), else counts."""
        title = "Pixels" + (" (fraction of each actual class)" if normalize else "")
        return plot_confusion(self.confusion_matrix(), list(self.codes), normalize, cmap, figsize, title)

    def plot_worst(self, k: int = 4, figsize=None) -> Any:
        """One row per item of `worst(k)`: the image with its target mask, then with the predicted one."""
        import matplotlib.pyplot as plt

        idxs, ious = self.worst(k)
        n = max(len(idxs), 1)
        fig, axs = plt.subplots(n, 2, figsize=figsize or (6, 3 * n), squeeze=False)
        for row, i, iou in zip(axs, idxs.tolist(), ious.tolist()):
            for ax, mask, what in zip(row, (self.targs[i], self.decoded[i]), ("target", "predicted")):
                img = self._image(i)
                if img is not None:
                    show_image(img, ax=ax)
                show_mask(mask, ax=ax, alpha=0.5 if img is not None else 1.0)
                ax.set_title(
                    f"#{i} {what}" + (f" / IoU {iou:.2f}" if what == "predicted" else ""), fontsize=9
                )
        fig.tight_layout()
        return fig

    def _image(self, i: int) -> Tensor | None:
        """Item `i`'s image as the data set holds it, else its input rescaled to [0, 1], else None."""
        ds = getattr(self.dl, "dataset", None)
        if ds is not None:
            return ds[i][0]
        if self.inputs is None:
            return None
        x = self.inputs[i].float()
        return (x - x.min()) / (x.max() - x.min()).clamp(min=1e-8)
