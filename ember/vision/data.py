"""Vision blocks (images, masks, points) and the course's `ImageDataLoaders` factories."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ember.core.serial import ConfigError, register_config_type
from ember.data.block import DataBlock, TfmdDataLoaders
from ember.data.blocks import CategoryBlock, MultiCategoryBlock, TransformBlock, json_labels
from ember.data.errors import DataError
from ember.data.getters import ColReader, RegexLabeller, get_image_files, parent_label
from ember.data.splitters import ColSplitter, GrandparentSplitter, RandomSplitter
from ember.data.transforms import IMAGE, MASK, POINTS, Transform
from ember.losses import CrossEntropyLossFlat, MSELossFlat
from ember.vision.augment import IntToFloatTensor, ToTensor
from ember.vision.core import PILImage, PILImageBW, PILMask, show_image, show_mask, show_points

__all__ = ["ImageBlock", "ImageDataLoaders", "MaskBlock", "PointBlock", "SegmentationDataLoaders"]

if TYPE_CHECKING:
    import pandas as pd

Tfms = Transform | Sequence[Transform] | None


class ImageBlock(TransformBlock):
    """Images, read with `cls.create` (`PILImage` for RGB, `PILImageBW` for grayscale)."""

    kind = IMAGE

    def __init__(self, cls: type = PILImage) -> None:
        super().__init__(type_tfms=[cls.create], item_tfms=[ToTensor()], batch_tfms=[IntToFloatTensor()])
        self.cls = cls

    def show(self, value: Any, ax: Any) -> None:
        show_image(value, ax=ax)
        self._size = _size_of(value)

    def to_config(self) -> dict:
        return {"cls": self.cls.__name__}

    @classmethod
    def from_config(cls, cfg: dict) -> ImageBlock:
        kinds = {c.__name__: c for c in (PILImage, PILImageBW)}
        if cfg.get("cls") not in kinds:
            raise ConfigError(
                f"ImageBlock: unknown image type {cfg.get('cls')!r}; expected one of {list(kinds)}"
            )
        return cls(kinds[cfg["cls"]])

    def __repr__(self) -> str:
        return f"ImageBlock({self.cls.__name__})"


def _size_of(img: Any) -> tuple[int, int]:
    if isinstance(img, Tensor):
        return int(img.shape[-1]), int(img.shape[-2])
    return img.size


class MaskBlock(TransformBlock):
    """Segmentation masks of class indices; `codes` names the classes."""

    kind = MASK

    def __init__(self, codes: Sequence[str] | None = None) -> None:
        super().__init__(type_tfms=[PILMask.create], item_tfms=[ToTensor()], batch_tfms=[IntToFloatTensor()])
        self.vocab = list(codes) if codes is not None else []

    def show(self, value: Any, ax: Any) -> None:
        show_mask(value, ax=ax)

    def to_config(self) -> dict:
        return {"codes": json_labels(self.vocab, "MaskBlock")}

    def default_loss(self) -> nn.Module:
        return CrossEntropyLossFlat(axis=1)

    @property
    def n_out(self) -> int | None:
        return len(self.vocab) or None


class PointBlock(TransformBlock):
    """Points per image, `(n_points, 2)` as (x, y) pixels; the model sees them scaled to [-1, 1]."""

    kind = POINTS

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


class ImageDataLoaders(TfmdDataLoaders):
    """The course's one-line factories for image classification.

    >>> dls = ImageDataLoaders.from_name_func(path, fnames, is_cat, item_tfms=Resize(224))
    """

    @classmethod
    def _build(cls, dblock: DataBlock, source: Any, path: Any, **kwargs: Any) -> ImageDataLoaders:
        return cls.from_datasets(dblock.datasets(source), dblock, path=path, **kwargs)

    @classmethod
    def from_folder(
        cls,
        path: str | os.PathLike,
        train: str = "train",
        valid: str = "valid",
        valid_pct: float | None = None,
        seed: int | None = None,
        vocab: Sequence[str] | None = None,
        item_tfms: Tfms = None,
        batch_tfms: Tfms = None,
        img_cls: type = PILImage,
        **kwargs: Any,
    ) -> ImageDataLoaders:
        """Images in class folders: `path/train/<label>/*` and `path/valid/<label>/*`, or, with
        `valid_pct`, `path/<label>/*` split at random."""
        if valid_pct is None:
            get_items, splitter = (
                partial(get_image_files, folders=[train, valid]),
                GrandparentSplitter(train, valid),
            )
        else:
            get_items, splitter = get_image_files, RandomSplitter(valid_pct, seed)
        dblock = DataBlock(
            blocks=(ImageBlock(img_cls), CategoryBlock(vocab=vocab)),
            get_items=get_items,
            splitter=splitter,
            get_y=parent_label,
            item_tfms=item_tfms,
            batch_tfms=batch_tfms,
        )
        return cls._build(dblock, path, path, **kwargs)

    @classmethod
    def from_path_func(
        cls,
        path: str | os.PathLike,
        fnames: Sequence[Any],
        label_func: Callable[[Path], Any],
        valid_pct: float = 0.2,
        seed: int | None = None,
        item_tfms: Tfms = None,
        batch_tfms: Tfms = None,
        img_cls: type = PILImage,
        **kwargs: Any,
    ) -> ImageDataLoaders:
        """Labels from `label_func(path_of_file)`; any function works, lambdas included."""
        dblock = DataBlock(
            blocks=(ImageBlock(img_cls), CategoryBlock),
            splitter=RandomSplitter(valid_pct, seed),
            get_y=lambda o: label_func(Path(o)),
            item_tfms=item_tfms,
            batch_tfms=batch_tfms,
        )
        return cls._build(dblock, list(fnames), path, **kwargs)

    @classmethod
    def from_name_func(
        cls,
        path: str | os.PathLike,
        fnames: Sequence[Any],
        label_func: Callable[[str], Any] | Callable[[Path], Any],
        valid_pct: float = 0.2,
        seed: int | None = None,
        item_tfms: Tfms = None,
        batch_tfms: Tfms = None,
        **kwargs: Any,
    ) -> ImageDataLoaders:
        """Labels from `label_func` of each file's name (a str, e.g. 'Abyssinian_1.jpg'), as the book
        writes it, or of its `Path`, as the course notes write it (`item.name`, `.stem`, `.parent`).

        Which one is decided once, on the first item: the name is tried first; if that raises an
        AttributeError or TypeError, the Path is tried, and whichever works is used for every item.
        A function that fails both ways is an error naming the item and both failures.

        >>> def is_cat(x): return x[0].isupper()  # the name
        >>> def is_cat(item): return item.name[0].isupper()  # or the path
        >>> dls = ImageDataLoaders.from_name_func(path, fnames, is_cat, item_tfms=Resize(224))
        """
        dblock = DataBlock(
            blocks=(ImageBlock, CategoryBlock),
            splitter=RandomSplitter(valid_pct, seed),
            get_y=NameOrPathLabel(label_func),
            item_tfms=item_tfms,
            batch_tfms=batch_tfms,
        )
        return cls._build(dblock, list(fnames), path, **kwargs)

    @classmethod
    def from_name_re(
        cls, path: str | os.PathLike, fnames: Sequence[Any], pat: str, **kwargs: Any
    ) -> ImageDataLoaders:
        """Labels from the first group of regular expression `pat` matched in each file name."""
        return cls.from_name_func(path, fnames, RegexLabeller(pat), **kwargs)

    @classmethod
    def from_df(
        cls,
        df: pd.DataFrame,
        path: str | os.PathLike = ".",
        valid_pct: float = 0.2,
        seed: int | None = None,
        fn_col: int | str = 0,
        folder: str | None = None,
        suff: str = "",
        label_col: int | str = 1,
        label_delim: str | None = None,
        y_block: Any = None,
        valid_col: int | str | None = None,
        item_tfms: Tfms = None,
        batch_tfms: Tfms = None,
        img_cls: type = PILImage,
        **kwargs: Any,
    ) -> ImageDataLoaders:
        """File names and labels from a table; several labels per row (split by `label_delim`) make a
        multi-label problem. `valid_col` names a boolean column marking validation rows."""
        _check_cols(df, [c for c in (fn_col, label_col, valid_col) if c is not None])
        if y_block is None:
            y_block = MultiCategoryBlock if label_delim is not None else CategoryBlock
        pref = f"{Path(path) / folder if folder else Path(path)}{os.sep}"
        splitter = RandomSplitter(valid_pct, seed) if valid_col is None else ColSplitter(valid_col)
        dblock = DataBlock(
            blocks=(ImageBlock(img_cls), y_block),
            get_x=ColReader(fn_col, pref=pref, suff=suff),
            get_y=ColReader(label_col, label_delim=label_delim),
            splitter=splitter,
            item_tfms=item_tfms,
            batch_tfms=batch_tfms,
        )
        return cls._build(dblock, df, path, **kwargs)

    @classmethod
    def from_csv(
        cls,
        path: str | os.PathLike,
        csv_fname: str = "labels.csv",
        header: str | int | None = "infer",
        delimiter: str | None = None,
        **kwargs: Any,
    ) -> ImageDataLoaders:
        """`from_df` on `path/csv_fname`."""
        csv = Path(path) / csv_fname
        if not csv.exists():
            raise DataError(f"from_csv: no file {csv}; give csv_fname relative to {path}")
        import pandas as pd  # here: `load_learner` imports this module, and predicting needs no pandas

        df = pd.read_csv(csv, header=header, **({} if delimiter is None else {"delimiter": delimiter}))
        return cls.from_df(df, path=path, **kwargs)

    @classmethod
    def from_lists(
        cls,
        path: str | os.PathLike,
        fnames: Sequence[Any],
        labels: Sequence[Any],
        valid_pct: float = 0.2,
        seed: int | None = None,
        y_block: Any = CategoryBlock,
        item_tfms: Tfms = None,
        batch_tfms: Tfms = None,
        **kwargs: Any,
    ) -> ImageDataLoaders:
        """Two parallel lists: files and their labels."""
        if len(fnames) != len(labels):
            raise DataError(
                f"from_lists: {len(fnames)} files but {len(labels)} labels; give one label per file"
            )
        dblock = DataBlock(
            blocks=(ImageBlock, y_block),
            get_x=lambda i: fnames[i],
            get_y=lambda i: labels[i],
            splitter=RandomSplitter(valid_pct, seed),
            item_tfms=item_tfms,
            batch_tfms=batch_tfms,
        )
        return cls._build(dblock, list(range(len(fnames))), path, **kwargs)


class NameOrPathLabel:
    """`label_func` of a file's name, or of its Path when it was written for one: decided on the first
    item and then kept (`takes` is "name" or "path" once decided). See `ImageDataLoaders.from_name_func`.

    >>> NameOrPathLabel(lambda item: item.stem)("images/cat_1.jpg"), NameOrPathLabel(str.upper)("a/b.jpg")
    ('cat_1', 'B.JPG')
    """

    def __init__(self, label_func: Callable[[Any], Any]) -> None:
        self.label_func, self.takes = label_func, None
        self.__name__ = getattr(label_func, "__name__", type(label_func).__name__)  # names it in errors

    def __call__(self, o: str | os.PathLike) -> Any:
        path = Path(o)
        if self.takes == "name":
            return self.label_func(path.name)
        if self.takes == "path":
            return self.label_func(path)
        try:
            label, self.takes = self.label_func(path.name), "name"
        except (AttributeError, TypeError) as on_name:
            try:
                label, self.takes = self.label_func(path), "path"
            except Exception as on_path:  # `_call` turns this into a DataError naming the item
                raise TypeError(
                    f"label function {self.__name__} fails on the name {path.name!r} "
                    f"({type(on_name).__name__}: {on_name}) and on the path ({type(on_path).__name__}: "
                    f"{on_path}); it must take one of them"
                ) from on_path
        return label


def _check_cols(df: pd.DataFrame, cols: Sequence[int | str]) -> None:
    for c in cols:
        ok = c < len(df.columns) if isinstance(c, int) else c in df.columns
        if not ok:
            raise DataError(f"no column {c!r} in the table; its columns are {list(df.columns)}")


class SegmentationDataLoaders(TfmdDataLoaders):
    """Images with a mask per image."""

    @classmethod
    def from_label_func(
        cls,
        path: str | os.PathLike,
        fnames: Sequence[Any],
        label_func: Callable[[Path], Any],
        valid_pct: float = 0.2,
        seed: int | None = None,
        codes: Sequence[str] | None = None,
        item_tfms: Tfms = None,
        batch_tfms: Tfms = None,
        **kwargs: Any,
    ) -> SegmentationDataLoaders:
        """Masks at `label_func(image_path)`; `codes` names the classes.

        >>> label_func = lambda o: masks / o.name
        >>> dls = SegmentationDataLoaders.from_label_func(path, fnames, label_func, codes=codes)
        """
        dblock = DataBlock(
            blocks=(ImageBlock, MaskBlock(codes)),
            splitter=RandomSplitter(valid_pct, seed),
            get_y=lambda o: label_func(Path(o)),
            item_tfms=item_tfms,
            batch_tfms=batch_tfms,
        )
        return cls.from_datasets(dblock.datasets(list(fnames)), dblock, path=path, **kwargs)
