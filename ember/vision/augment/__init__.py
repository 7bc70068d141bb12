"""Vision transforms: item transforms on PIL images (per item, CPU) and batch transforms on tensors
(per batch, on the batch's device).

Every transform treats each value by its kind: images are resampled bilinearly, masks with nearest
neighbour (so no new class ids appear), points move with the image content, other kinds pass
through. Points that leave the image are kept, not dropped: their coordinates fall outside the
image (outside [-1, 1] after `ToTensor`), and a loss or metric can mask them if it must.

Coordinates are continuous: pixel column i spans [i, i + 1), so its centre is at i + 0.5; after
`ToTensor` points are scaled to [-1, 1] as `grid_sample(align_corners=False)` reads them.

>>> item_tfms = [Resize(224), ToTensor()]
>>> batch_tfms = [IntToFloatTensor(), *aug_transforms(), Normalize.from_stats(*imagenet_stats)]

The modules, one concept each: `items` (Resize, RandomResizedCrop, ToTensor), `pixels` (IntToFloatTensor,
Normalize, and the lighting augmentations), `affine` (flips, rotations, zooms, warps, `AffineWarp`) and
`presets` (`aug_transforms`). Importing this package registers every transform an export can name.
"""

from ember.vision.augment.affine import AffineWarp, Dihedral, Flip, MatrixTransform, Rotate, Warp, Zoom
from ember.vision.augment.items import RandomResizedCrop, Resize, ToTensor
from ember.vision.augment.pixels import (
    Brightness,
    Contrast,
    IntToFloatTensor,
    Lighting,
    LogitTransform,
    Normalize,
)
from ember.vision.augment.presets import aug_transforms

__all__ = [
    "AffineWarp",
    "Brightness",
    "Contrast",
    "Dihedral",
    "Flip",
    "IntToFloatTensor",
    "Lighting",
    "LogitTransform",
    "MatrixTransform",
    "Normalize",
    "RandomResizedCrop",
    "Resize",
    "Rotate",
    "ToTensor",
    "Warp",
    "Zoom",
    "aug_transforms",
]
