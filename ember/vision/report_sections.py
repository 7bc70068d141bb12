"""The training report's sections for segmentation and image-to-image learners (vision's
`AppSpec.report_sections` picks them by task; classifiers keep the core's `classifier_sections`).

- Segmentation: IoU and Dice of each class over the validation set, the pixel confusion matrix, and the
  validation images it gets most wrong, with their target and predicted masks.
- Image to image: PSNR and SSIM of the predictions against the targets over the validation set, next
  to the same scores of the input itself resized to the target's size (bicubic), which is what the
  model has to beat; then a few input / target / prediction triplets.

>>> learn.report("unet.html")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ember.learner.report import MAX_CONFUSION_CLASSES, Section, html_image, html_table

if TYPE_CHECKING:
    from ember.learner.learner import Learner
    from ember.vision.seg_interpret import SegmentationInterpretation

__all__ = ["image_to_image_sections", "images_01", "iou_rows", "segmentation_sections"]

N_SHOWN = 4  # validation items drawn in each figure
MIN_SSIM_SIDE = 7  # ssim's 7x7 window needs images at least this big


def images_01(learn: Learner, x: Tensor, block: int) -> Tensor:
    """A batch `x` (bs, c, h, w) of the images of block `block` (0: the input, -1: the target) as the data
    holds them: the batch transforms undone (normalisation), as floats in [0, 1].

    >>> images_01(learn, preds, -1).amax() <= 1  # doctest: +SKIP
    tensor(True)
    """
    from ember.data.transforms import VALID

    pipe = learn.dls.dblock.batch_pipeline([learn.dls.datasets.blocks[block]], VALID)
    (out,) = pipe.decode((x.detach().cpu().float(),))
    return out.float() / 255 if out.dtype == torch.uint8 else out.float().clamp(0, 1)


def _has_valid(learn: Learner) -> bool:
    return len(learn.dls) > 1 and len(learn.dls.valid) > 0


# ---- segmentation ----------------------------------------------------------------------------------
def segmentation_sections(learn: Learner) -> Iterator[Section]:
    """IoU and Dice per class, the pixel confusion matrix, and the worst validation images' masks."""
    from ember.vision.seg_interpret import SegmentationInterpretation

    if not _has_valid(learn):
        return
    interp = SegmentationInterpretation.from_learner(learn)
    note = (
        "<p>Over every pixel of the validation set. Dice = 2 IoU / (1 + IoU); a class that is neither a "
        "target nor a prediction anywhere has none. The mean is over the classes that have one.</p>"
    )
    body = note + html_table(["class", "IoU", "Dice", "target pixels", "predicted pixels"], iou_rows(interp))
    if interp.c <= MAX_CONFUSION_CLASSES:
        side = min(12.0, max(4.0, interp.c * 0.6 + 2))
        fig = interp.plot_confusion_matrix(figsize=(side, side))
        body += "\n<h3>Pixel confusion</h3>\n" + html_image(fig, "pixel confusion matrix")
    yield Section("iou", "IoU and Dice per class (validation set)", body)
    if interp.inputs is not None:
        caption = (
            "<p>The validation images with the lowest mean IoU, worst first: image, target, prediction.</p>"
        )
        fig = _masks_figure(learn, interp)
        yield Section("masks", "Masks", caption + html_image(fig, "validation images with their masks"))


def iou_rows(interp: SegmentationInterpretation) -> list[list[str]]:
    """One row per class (name, IoU, Dice, target and predicted pixels), then the means."""
    table = interp.iou_table()
    rows, ious = [], []
    for name, iou, n_targ, n_pred in zip(table["class"], table["iou"], table["pixels"], table["predicted"]):
        known = not math.isnan(iou)
        ious += [iou] if known else []
        dice = 2 * iou / (1 + iou) if known else math.nan
        rows.append([name, _score(iou), _score(dice), f"{n_targ:,}", f"{n_pred:,}"])
    if ious:
        mean = sum(ious) / len(ious)
        mean_dice = sum(2 * i / (1 + i) for i in ious) / len(ious)
        rows.append(["mean", _score(mean), _score(mean_dice), "", ""])
    return rows


def _score(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.4f}"


def _masks_figure(learn: Learner, interp: SegmentationInterpretation) -> Any:
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from ember.vision.mask_io import mask_colours, overlay_mask

    idxs, ious = interp.worst(N_SHOWN)
    images = images_01(learn, interp.inputs[idxs], 0)
    n = max(len(idxs), 1)
    fig, axs = plt.subplots(n, 3, figsize=(7.5, 2.6 * n), squeeze=False)
    for row, i, img, iou in zip(axs, idxs.tolist(), images, ious.tolist()):
        pil = _pil(img)
        panels = (pil, overlay_mask(pil, interp.targs[i], interp.codes, bkg_idx=None),
                  overlay_mask(pil, interp.decoded[i], interp.codes, bkg_idx=None))  # fmt: skip
        titles = (f"#{i}", "target", f"predicted / IoU {iou:.2f}")
        for ax, panel, title in zip(row, panels, titles):
            ax.imshow(panel)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    colours = mask_colours(interp.c) / 255
    handles = [Patch(color=tuple(colours[k]), label=code) for k, code in enumerate(interp.codes)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 6), fontsize="small")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


def _pil(img: Tensor) -> Any:
    """An image (c, h, w) in [0, 1] as an RGB PIL image."""
    from PIL import Image

    a = (img * 255).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(a[..., 0] if a.shape[2] == 1 else a).convert("RGB")


# ---- image to image ----------------------------------------------------------------------------------
def image_to_image_sections(learn: Learner) -> Iterator[Section]:
    """PSNR and SSIM against a bicubic baseline over the validation set, and a few triplets."""
    if not _has_valid(learn):
        return
    inputs, preds, targs = learn.get_preds(with_input=True)
    x, p, t = images_01(learn, inputs, 0), images_01(learn, preds, -1), images_01(learn, targs, -1)
    note = (
        "<p>Over the validation set, against the targets. The baseline is the input itself resized to the "
        "target's size (bicubic): the scores the model has to beat. Higher is better for both.</p>"
    )
    rows = [["model", *_scores(p, t)], ["input resized (bicubic)", *_scores(_bicubic(x, t), t)]]
    yield Section(
        "image-scores", "PSNR and SSIM (validation set)", note + html_table(["", "PSNR (dB)", "SSIM"], rows)
    )
    fig = _triplets_figure(x, t, p)
    yield Section(
        "triplets", "Input, target, prediction", html_image(fig, "validation inputs, targets, predictions")
    )


def _bicubic(x: Tensor, t: Tensor) -> Tensor | None:
    """`x` resized to `t`'s size, bicubic, with a grey input repeated over the target's channels; None
    when the channels cannot match."""
    if x.shape[1] != t.shape[1]:
        if x.shape[1] != 1:
            return None
        x = x.expand(-1, t.shape[1], -1, -1)
    if x.shape[-2:] != t.shape[-2:]:
        x = torch.nn.functional.interpolate(x, size=t.shape[-2:], mode="bicubic", align_corners=False)
    return x.clamp(0, 1)


def _scores(p: Tensor | None, t: Tensor) -> list[str]:
    """PSNR and SSIM of `p` against `t`, as text ("-" where they cannot be computed)."""
    from ember.vision.superres import psnr, ssim

    if p is None or p.shape != t.shape:
        return ["-", "-"]
    s = f"{ssim(p, t):.4f}" if min(t.shape[-2:]) >= MIN_SSIM_SIDE else "-"
    return [f"{psnr(p, t):.2f}", s]


def _triplets_figure(x: Tensor, t: Tensor, p: Tensor) -> Any:
    import matplotlib.pyplot as plt

    from ember.vision.core import show_image
    from ember.vision.superres import psnr

    n = min(N_SHOWN, len(t))
    fig, axs = plt.subplots(n, 3, figsize=(7.5, 2.6 * n), squeeze=False)
    for i, row in enumerate(axs):
        score = f" / {psnr(p[i], t[i]):.1f} dB" if p[i].shape == t[i].shape else ""
        titles = (f"#{i} input", "target", f"prediction{score}")
        for ax, img, title in zip(row, (x[i], t[i], p[i]), titles):
            show_image(img, ax=ax)
            ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
