"""Vision's blocks: images, segmentation masks and points, and how the data core shows, describes and
sizes their values (the block methods `show`, `draws`, `overlays`, `describe`, `nbytes`). An image target
is shown beside its input (`overlays = False`); masks and points are drawn over it.

>>> dblock = DataBlock(blocks=(ImageBlock, MaskBlock(codes)), get_items=get_image_files)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from ember.core.serial import ConfigError, register_config_type
from ember.data.blocks import TransformBlock, json_labels
from ember.data.errors import DataError
from ember.losses import CrossEntropyLossFlat, MSELossFlat
from ember.vision.augment import IntToFloatTensor, ToTensor
from ember.vision.core import (
    MASK_CMAP,
    PILImage,
    PILImageBW,
    PILMask,
    _from_array,
    show_image,
    show_mask,
    show_points,
)
from ember.vision.kinds import IMAGE, MASK, POINTS

__all__ = ["ImageBlock", "MaskBlock", "PointBlock"]


class _PILBlock(TransformBlock):
    """A block whose values are PIL images until `ToTensor`, drawn on the axes by `show`."""

    draws = True

    def describe(self, value: Any) -> str:
        if isinstance(value, Image.Image):
            return f"PIL image mode={value.mode} size={value.size[0]}x{value.size[1]}"
        return super().describe(value)

    def nbytes(self, value: Any) -> int:
        if isinstance(value, Image.Image):
            w, h = value.size
            return w * h * len(value.getbands())
        return super().nbytes(value)


class ImageBlock(_PILBlock):
    """Images, read with `cls.create` (`PILImage` for RGB, `PILImageBW` for grayscale). As a target
    (super-resolution, colourisation) `learn.predict` gives `(PIL image, floats (c, h, w) in [0, 1], raw
    output (c, h, w))`: the prediction with the batch transforms (Normalize, IntToFloatTensor) undone."""

    kind = IMAGE
    overlays = False  # a picture of its own: shown beside the input, not over it

    def __init__(self, cls: type = PILImage) -> None:
        super().__init__(type_tfms=[cls.create], item_tfms=[ToTensor()], batch_tfms=[IntToFloatTensor()])
        self.cls = cls

    def show(self, value: Any, ax: Any) -> None:
        show_image(value, ax=ax)

    def decode(self, value: Any) -> Any:
        """A (c, h, w) tensor of floats in [0, 1] (clamped, rounded to 8 bits) or of uint8 as a PIL image:
        1 channel gives mode "L", 3 give "RGB". Anything else (a PIL image) is returned as it is."""
        return _from_array(value, "ImageBlock.decode") if isinstance(value, Tensor) else value

    def decoded_tensor(self, value: Any) -> Any:
        """Decoded pixels (uint8, as IntToFloatTensor decodes them) as floats (c, h, w) in [0, 1]."""
        if not isinstance(value, Tensor):
            return value
        return value.float().clamp(0, 1) if value.is_floating_point() else value.float() / 255

    def to_config(self) -> dict:
        return {"cls": self.cls.__name__}

    @classmethod
    def from_config(cls, cfg: dict) -> ImageBlock:
        makers = {c.__name__: c for c in (PILImage, PILImageBW)}
        if cfg.get("cls") not in makers:
            raise ConfigError(
                f"ImageBlock: unknown image type {cfg.get('cls')!r}; expected one of {list(makers)}"
            )
        return cls(makers[cfg["cls"]])

    def __repr__(self) -> str:
        return f"ImageBlock({self.cls.__name__})"


class MaskBlock(_PILBlock):
    """Segmentation masks of class indices; `codes` names the classes."""

    kind = MASK

    def __init__(self, codes: Sequence[str] | None = None) -> None:
        self.vocab = list(codes) if codes is not None else []
        reader = _MaskReader(len(self.vocab))
        super().__init__(type_tfms=[reader], item_tfms=[ToTensor()], batch_tfms=[IntToFloatTensor()])

    def show(self, value: Any, ax: Any) -> None:
        show_mask(value, ax=ax, cmap=MASK_CMAP)
        _legend(ax, np.asarray(value.cpu() if isinstance(value, torch.Tensor) else value), self.vocab)

    def to_config(self) -> dict:
        return {"codes": json_labels(self.vocab, "MaskBlock")}

    def default_loss(self) -> nn.Module:
        return CrossEntropyLossFlat(axis=1)

    @property
    def n_out(self) -> int | None:
        return len(self.vocab) or None


def _legend(ax: Any, mask: np.ndarray, codes: Sequence[str]) -> None:
    """A legend of the codes present in `mask`, each in the colour `show_mask` gives its class."""
    import matplotlib as mpl
    from matplotlib.patches import Patch

    cmap = mpl.colormaps[MASK_CMAP]
    vmax = max(cmap.N - 1, int(mask.max(initial=0)))  # show_mask's colour scale: class i -> cmap(i / vmax)
    present = [int(i) for i in np.unique(mask) if 0 <= i < len(codes)]
    if present:
        handles = [Patch(color=cmap(i / vmax), alpha=0.5, label=codes[i]) for i in present]
        ax.legend(handles=handles, loc="lower right", fontsize="x-small", framealpha=0.7)


class _MaskReader:
    """`PILMask.create`, then a check that every value is a class index (below `n_codes`), once per mask as
    it is decoded: a mask saved with the wrong values would otherwise fail deep inside the loss."""

    def __init__(self, n_codes: int) -> None:
        self.n_codes = n_codes

    def __call__(self, src: Any) -> Image.Image:
        mask = PILMask.create(src)
        if self.n_codes and np.asarray(mask).max(initial=0) >= self.n_codes:
            a = np.asarray(mask)
            bad = np.unique(a[(a >= self.n_codes) | (a < 0)]).tolist()
            raise DataError(
                f"mask {src} holds the values {bad[:10]}, but there are {self.n_codes} codes, so a mask's "
                f"values must be 0..{self.n_codes - 1}: map its values to class indices, or give one code "
                "per class (codes.txt)"
            )
        return mask


class PointBlock(TransformBlock):
    """Points per image, `(n_points, 2)` as (x, y) pixels; the model sees them scaled to [-1, 1]."""

    kind = POINTS
    draws = True

    def __init__(self, n_out: int | None = None) -> None:
        super().__init__(type_tfms=[_to_points], item_tfms=[ToTensor()])
        self._n_out = n_out

    def setup(self, train_values: Sequence[Any]) -> None:
        if train_values:
            self._n_out = int(_to_points(train_values[0]).numel())

    def show(self, value: Any, ax: Any) -> None:
        img = ax.get_images()
        size = (img[0].get_array().shape[1], img[0].get_array().shape[0]) if img else (2, 2)
        show_points(value, ax, size)

    def decode(self, value: Any) -> Any:
        return torch.as_tensor(value).view(-1, 2)

    def default_loss(self) -> nn.Module:
        return MSELossFlat()

    @property
    def n_out(self) -> int | None:
        return self._n_out

    def to_config(self) -> dict:
        return {"n_out": self._n_out}


def _to_points(raw: Any) -> Tensor:
    try:
        pts = torch.as_tensor(raw, dtype=torch.float32)
    except (TypeError, ValueError) as e:
        raise DataError(f"PointBlock: {raw!r} is not a list of (x, y) points") from e
    if pts.numel() % 2:
        raise DataError(f"PointBlock: {raw!r} has an odd number of coordinates; give (x, y) pairs")
    return pts.view(-1, 2)


register_config_type(ImageBlock, MaskBlock, PointBlock)
