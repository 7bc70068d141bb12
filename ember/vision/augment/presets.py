"""`aug_transforms`: the course's standard batch augmentations in one call."""

from __future__ import annotations

from collections.abc import Sequence

from ember.data.transforms import Transform
from ember.vision.augment._common import Size
from ember.vision.augment.affine import AffineWarp, Dihedral, Flip, MatrixTransform, Rotate, Warp, Zoom
from ember.vision.augment.pixels import Brightness, Contrast, Lighting

__all__ = ["aug_transforms"]


def aug_transforms(
    mult: float = 1.0,
    do_flip: bool = True,
    flip_vert: bool = False,
    max_rotate: float = 10.0,
    min_zoom: float = 1.0,
    max_zoom: float = 1.1,
    max_lighting: float = 0.2,
    max_warp: float = 0.2,
    p_affine: float = 0.75,
    p_lighting: float = 0.75,
    xtra_tfms: Sequence[Transform] | None = None,
    size: Size | None = None,
    mode: str = "bilinear",
    pad_mode: str = "reflection",
    align_corners: bool = False,
    batch: bool = False,
    min_scale: float = 1.0,
) -> list[Transform]:
    """The course's standard batch augmentations: one `AffineWarp` (flip, rotate, zoom, warp, and a
    resize/random crop when `size` is given) and one `Lighting` (brightness, contrast).

    `mult` scales max_rotate, max_lighting and max_warp. `flip_vert` flips and turns in all 8 ways
    (`Dihedral`) instead of only left-right.

    >>> [type(t).__name__ for t in aug_transforms()]
    ['AffineWarp', 'Lighting']
    """
    max_rotate, max_lighting, max_warp = max_rotate * mult, max_lighting * mult, max_warp * mult
    geo: list[MatrixTransform] = []
    if do_flip:
        geo.append(Dihedral(p=0.5) if flip_vert else Flip(p=0.5))
    if max_rotate:
        geo.append(Rotate(max_rotate, p=p_affine))
    if min_zoom < 1 or max_zoom > 1:
        geo.append(Zoom(min_zoom, max_zoom, p=p_affine))
    if max_warp:
        geo.append(Warp(max_warp, p=p_affine))
    tfms: list[Transform] = []
    if geo or size is not None or min_scale < 1:
        tfms.append(AffineWarp(geo, size, mode, pad_mode, align_corners, min_scale, batch=batch))
    if max_lighting:
        tfms.append(
            Lighting([Brightness(max_lighting, p_lighting), Contrast(max_lighting, p_lighting)], batch)
        )
    return tfms + list(xtra_tfms or [])
