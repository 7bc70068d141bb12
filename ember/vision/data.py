"""The course's `ImageDataLoaders` and `SegmentationDataLoaders` factories (the blocks are in `blocks.py`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from ember.data.block import DataBlock, TfmdDataLoaders
from ember.data.blocks import CategoryBlock, MultiCategoryBlock
from ember.data.errors import DataError
from ember.data.getters import ColReader, RegexLabeller, parent_label
from ember.data.splitters import ColSplitter, GrandparentSplitter, RandomSplitter
from ember.data.transforms import Transform
from ember.vision.blocks import ImageBlock, MaskBlock
from ember.vision.core import PILImage, get_image_files

__all__ = ["ImageDataLoaders", "SegmentationDataLoaders"]

if TYPE_CHECKING:
    import pandas as pd

Tfms = Transform | Sequence[Transform] | None


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
            get_y=_SameSizeMask(label_func),
            item_tfms=item_tfms,
            batch_tfms=batch_tfms,
        )
        return cls.from_datasets(dblock.datasets(list(fnames)), dblock, path=path, **kwargs)


class _SameSizeMask:
    """`label_func(image_path)`, after checking from both files' headers (no pixels decoded) that the mask
    is the image's size: Resize would otherwise stretch one onto the other without a word."""

    def __init__(self, label_func: Callable[[Path], Any]) -> None:
        self.label_func = label_func
        self.__name__ = getattr(label_func, "__name__", type(label_func).__name__)  # names it in errors

    def __call__(self, o: Any) -> Any:
        mask = self.label_func(Path(o))
        if isinstance(mask, str | os.PathLike) and Path(mask).is_file():
            image_size, mask_size = _upright_size(Path(o)), _upright_size(Path(mask))
            if image_size != mask_size:
                raise DataError(
                    f"the image {o} is {image_size[0]}x{image_size[1]} but its mask {mask} is "
                    f"{mask_size[0]}x{mask_size[1]} (width x height): a mask must label every pixel of its "
                    "image. Check that label_func pairs the right files, or resize the masks with "
                    "nearest-neighbour sampling"
                )
        return mask


def _upright_size(file: Path) -> tuple[int, int]:
    with Image.open(file) as img:  # reads the header only
        w, h = img.size
        return (h, w) if img.getexif().get(0x0112, 1) >= 5 else (w, h)  # EXIF 5..8: a quarter turn
