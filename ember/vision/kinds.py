"""The kinds of value vision adds to the data core: an image, a segmentation mask, points on an image.

A block sets its values' kind (`ImageBlock.kind == IMAGE`); the transforms in `ember.vision.augment`
read the kinds to treat each value right (an image resampled bilinearly, its mask with nearest neighbour,
its points moved). The data core only passes these tags along (`ember.data.transforms.register_kind`).
"""

from __future__ import annotations

from ember.data.transforms import register_kind

__all__ = ["IMAGE", "MASK", "POINTS"]

IMAGE = register_kind("image", "a PIL image, then a uint8 tensor (c, h, w), then floats in a batch")
MASK = register_kind("mask", "a PIL image of class indices, then an int64 tensor (h, w)")
POINTS = register_kind("points", "(x, y) pixel coordinates, then a float tensor (n, 2) in [-1, 1]")
