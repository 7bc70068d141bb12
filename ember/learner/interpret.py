"""Interpreting a single-label classifier: where it is confused, its worst and least certain predictions.

It needs only a Learner (any application's): images are drawn by the input block's `show`.

>>> interp = ClassificationInterpretation.from_learner(learn)  # doctest: +SKIP
>>> interp.plot_confusion_matrix(); interp.most_confused(min_val=2)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ember.learner.learner import Learner

__all__ = ["ClassificationInterpretation", "is_single_label", "plot_confusion"]


class ClassificationInterpretation:
    """Predictions of a single-label classifier on one split, with their losses, ready to inspect."""

    def __init__(self, learn: Learner, dl: Any, inputs: Tensor | None, probs: Tensor, targs: Tensor,
                 losses: Tensor) -> None:  # fmt: skip
        self.learn, self.dl, self.inputs = learn, dl, inputs
        self.probs, self.targs, self.losses = probs, targs, losses  # (n, c), (n,), (n,)
        self.preds = probs.argmax(1)
        self.vocab = [str(v) for v in (getattr(learn.dls, "vocab", None) or range(probs.shape[1]))]

    @classmethod
    def from_learner(cls, learn: Learner, ds_idx: int = 1, dl: Any = None) -> ClassificationInterpretation:
        """Run the model over a split (validation by default) and keep what interpretation needs."""
        dl = learn.dls[ds_idx] if dl is None else dl
        probs, targs, losses = learn.get_preds(dl=dl, with_loss=True)
        if not is_single_label(probs, targs):
            shapes = f"predictions {_shape(probs)}, targets {_shape(targs)}"
            raise ValueError(
                f"ClassificationInterpretation needs a single-label classifier: predictions (n, classes) and "
                f"integer targets (n,); got {shapes}. Regression and multi-label learners have no confusion "
                "matrix; use learn.get_preds() to inspect them"
            )
        return cls(learn, dl, None, probs, targs, losses)

    def confusion_matrix(self) -> Tensor:
        """Counts `(c, c)`: row = actual class, column = predicted class."""
        c = self.probs.shape[1]
        idx = self.targs.long() * c + self.preds
        return torch.bincount(idx, minlength=c * c).view(c, c)

    def most_confused(self, min_val: int = 1) -> list[tuple[str, str, int]]:
        """`(actual, predicted, count)` for the off-diagonal cells with at least `min_val`, largest first."""
        cm = self.confusion_matrix()
        pairs = [(self.vocab[i], self.vocab[j], int(cm[i, j])) for i in range(len(cm)) for j in range(len(cm))
                 if i != j and cm[i, j] >= min_val]  # fmt: skip
        return sorted(pairs, key=lambda p: -p[2])

    def top_losses(self, k: int | None = None, largest: bool = True) -> tuple[Tensor, Tensor]:
        """The `k` largest losses and their indices in the split."""
        k = len(self.losses) if k is None else min(k, len(self.losses))
        return self.losses.topk(k, largest=largest)

    def most_uncertain(self, k: int = 9) -> Tensor:
        """Indices of the `k` predictions closest to the decision boundary: the smallest gap between the
        two most probable classes (the images the course suggests checking when cleaning data)."""
        top2 = self.probs.topk(2, dim=1).values
        return (top2[:, 0] - top2[:, 1]).topk(min(k, len(top2)), largest=False).indices

    def print_classification_report(self) -> None:
        """Precision, recall, F1 and support per class (scikit-learn's report)."""
        from sklearn.metrics import classification_report

        labels = list(range(len(self.vocab)))
        print(classification_report(self.targs, self.preds, labels=labels, target_names=self.vocab,
                                    zero_division=0))  # fmt: skip

    def plot_confusion_matrix(self, normalize: bool = False, cmap: str = "Blues", figsize=None) -> Any:
        """The confusion matrix as a heat map with counts (or row fractions when `normalize`)."""
        return plot_confusion(self.confusion_matrix(), self.vocab, normalize, cmap, figsize)

    def plot_top_losses(self, k: int = 9, largest: bool = True, heatmap: bool = False) -> Any:
        """The inputs with the largest losses, titled prediction / actual / loss / probability. With
        `heatmap`, each is overlaid with the Grad-CAM of its predicted class (`ember.interpret.gradcam`,
        the model's default layer): where the model looked to make its mistake.

        >>> interp.plot_top_losses(9, heatmap=True)  # doctest: +SKIP
        """
        losses, idxs = self.top_losses(k, largest)
        titles = [
            f"{self._labels(i)} / {loss:.2f} / {self._prob(i):.2f}"
            for loss, i in zip(losses.tolist(), idxs.tolist())
        ]
        fig = self._plot_inputs(idxs.tolist(), titles)
        if heatmap and len(idxs):
            from ember.interpret.gradcam import gradcam
            from ember.interpret.show import overlay_heatmap

            cams = gradcam(self.learn, xb=self._model_inputs(idxs.tolist()), target=self.preds[idxs])
            for ax, cam in zip(fig.axes, cams):
                overlay_heatmap(ax, cam)
        return fig

    def plot_most_uncertain(self, k: int = 9) -> Any:
        """The inputs of `most_uncertain(k)`, titled prediction / actual / the two top probabilities.

        >>> interp.plot_most_uncertain(6)  # doctest: +SKIP
        """
        idxs = self.most_uncertain(k).tolist()
        top2 = self.probs.topk(2, dim=1).values.tolist()
        return self._plot_inputs(
            idxs, [f"{self._labels(i)} / {top2[i][0]:.2f} vs {top2[i][1]:.2f}" for i in idxs]
        )

    def microscope(self, path: str | os.PathLike, **kwargs: Any) -> Path:
        """Write a page that browses the model's layers and channels: for each channel the image that
        excites it most and the items of this split that do (written by the learner's application).

        >>> interp.microscope("microscope.html")  # doctest: +SKIP
        """
        from ember.learner.app import app_of

        found = app_of(self.learn)
        if found is None or found[0].microscope is None:
            raise TypeError(
                f"interp.microscope: {'this learner' if found is None else found[0].name + ' learners'} "
                "have no microscope page; image learners have one"
            )
        return found[0].microscope(self.learn, path, dl=self.dl, **kwargs)

    def _labels(self, i: int) -> str:
        return f"{self.vocab[int(self.preds[i])]}/{self.vocab[int(self.targs[i])]}"

    def _prob(self, i: int) -> float:
        return float(self.probs[i, int(self.preds[i])])

    def _plot_inputs(self, idxs: list[int], titles: list[str]) -> Any:
        from ember.data.show import _grid

        fig, axs = _grid(max(len(idxs), 1), None, None, None)
        for ax, i, title in zip(axs, idxs, titles):
            self._show_input(i, ax)
            ax.set_title(title, fontsize=9)
        return fig

    def _model_inputs(self, idxs: list[int]) -> Tensor:
        """The inputs of items `idxs` of the split, batched and transformed as the model saw them."""
        from torch.utils.data import Subset

        from ember.data.loaders import DataLoader

        dl = self.dl
        sub = DataLoader(Subset(dl.dataset, idxs), len(idxs), device=dl.device, batch_tfms=dl.batch_tfms)
        return sub.one_batch()[0]

    def _show_input(self, i: int, ax: Any) -> None:
        ds = getattr(self.dl, "dataset", None)
        block = self.learn.dls.datasets.blocks[0] if hasattr(self.learn.dls, "datasets") else None
        if ds is None or block is None:
            return
        x = ds[i][0]  # the item after the validation item transforms: uint8 (c, h, w) for images
        block.show(x, ax)


def is_single_label(probs: Tensor | None, targs: Tensor | None) -> bool:
    """Whether predictions `(n, c)` and targets `(n,)` of integer class indices come from a single-label
    classifier (not a regression, whose targets are floats, nor a multi-label one, whose are `(n, c)`).

    >>> is_single_label(torch.rand(4, 3), torch.tensor([0, 2, 1, 1]))
    True
    """
    if not isinstance(probs, Tensor) or not isinstance(targs, Tensor):
        return False
    return probs.ndim == 2 and targs.ndim == 1 and not targs.is_floating_point() and len(probs) == len(targs)


def _shape(t: Any) -> str:
    return str(tuple(t.shape)) if isinstance(t, Tensor) else type(t).__name__


def plot_confusion(
    cm: Tensor, labels: list[str], normalize: bool, cmap: str = "Blues", figsize=None, title: str = ""
) -> Any:
    """A (c, c) confusion matrix, actual rows by predicted columns, as a heat map with a number in each
    cell: counts, or each row's fractions when `normalize`."""
    import matplotlib.pyplot as plt

    cm = cm.double()
    if normalize:
        cm = cm / cm.sum(1, keepdim=True).clamp(min=1)
    fig, ax = plt.subplots(figsize=figsize or (max(4, len(cm) * 0.6 + 2),) * 2)
    ax.imshow(cm.numpy(), cmap=cmap)
    ticks = range(len(labels))
    ax.set_xticks(ticks, labels, rotation=90)
    ax.set_yticks(ticks, labels)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("Actual")
    if title:
        ax.set_title(title)
    for i in ticks:
        for j in ticks:
            v = cm[i, j].item()
            ax.text(j, i, f"{v:.2f}" if normalize else int(v), ha="center", va="center",
                    color="white" if v > cm.max().item() / 2 else "black")  # fmt: skip
    fig.tight_layout()
    return fig
