"""Getting items and labels: files under a folder, labels from paths, names and table columns.

(`get_image_files` is vision's: `ember.vision.core`.)
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ember.core.utils import plain
from ember.data.errors import DataError

__all__ = [
    "ColReader",
    "RegexLabeller",
    "get_files",
    "parent_label",
    "using_attr",
]


def _norm_exts(extensions: Iterable[str] | None) -> set[str] | None:
    return (
        None
        if extensions is None
        else {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    )


def get_files(
    path: str | os.PathLike,
    extensions: Iterable[str] | None = None,
    recurse: bool = True,
    folders: Sequence[str] | None = None,
    followlinks: bool = True,
) -> list[Path]:
    """Files under `path` with one of `extensions` (any file when None), sorted; hidden files and
    folders (names starting with '.') are skipped. `folders` limits the search to those sub-folders.

    >>> get_files("data/pets", extensions=[".jpg"])  # doctest: +SKIP
    """
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"get_files: {path} is not a folder (absolute: {path.absolute()}); check the path")
    exts = _norm_exts(extensions)
    roots = [path / f for f in folders] if folders else [path]
    found: list[Path] = []
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root, followlinks=followlinks):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if recurse else []
            found += [Path(dirpath) / f for f in filenames if not f.startswith(".") and _ext_ok(f, exts)]
    return sorted(found)


def _ext_ok(name: str, exts: set[str] | None) -> bool:
    return exts is None or os.path.splitext(name)[1].lower() in exts


def parent_label(o: str | os.PathLike) -> str:
    """The name of the folder holding `o`: `parent_label('train/cat/1.jpg') == 'cat'`."""
    return Path(o).parent.name


class RegexLabeller:
    """Label from the first group of `pat` searched in the file name (the whole path when `match`).

    >>> RegexLabeller(r"^(.+)_\\d+\\.jpg$")("images/great_pyrenees_17.jpg")
    'great_pyrenees'
    """

    def __init__(self, pat: str, match: bool = False) -> None:
        self.pat, self.match = re.compile(pat), match

    def __repr__(self) -> str:
        return f"RegexLabeller({self.pat.pattern!r})"

    def __call__(self, o: Any) -> str:
        s = str(o) if self.match else Path(o).name if isinstance(o, str | os.PathLike) else str(o)
        m = self.pat.match(s) if self.match else self.pat.search(s)
        if m is None or not m.groups():
            raise DataError(
                f"RegexLabeller: pattern {self.pat.pattern!r} does not match {s!r} (from {plain(o)}); "
                "fix the pattern or remove the file"
            )
        return m.group(1)


class ColReader:
    """Read column(s) `cols` of a table row, with a prefix and suffix, split by `label_delim` if given.

    >>> ColReader("fname", pref="images/", suff=".jpg")({"fname": "cat"})
    'images/cat.jpg'
    """

    def __init__(
        self,
        cols: int | str | Sequence[int | str],
        pref: str | os.PathLike = "",
        suff: str = "",
        label_delim: str | None = None,
    ) -> None:
        self.cols = list(cols) if isinstance(cols, list | tuple) else [cols]
        self.pref = f"{pref}{os.sep}" if isinstance(pref, Path) else pref
        self.suff, self.label_delim = suff, label_delim

    def _read(self, row: Any, col: int | str) -> Any:
        try:
            v = row.iloc[col] if isinstance(col, int) and hasattr(row, "iloc") else row[col]
        except (KeyError, IndexError) as e:
            cols = list(row.index) if hasattr(row, "index") else list(row)
            raise DataError(f"ColReader: no column {col!r} in the table; its columns are {cols}") from e
        if self.pref or self.suff:
            v = f"{self.pref}{v}{self.suff}"
        if self.label_delim is not None:
            v = [] if v != v or v == "" else str(v).split(self.label_delim)  # v != v: NaN, no labels
        return v

    def __repr__(self) -> str:
        return f"ColReader({self.cols[0] if len(self.cols) == 1 else self.cols!r})"

    def __call__(self, row: Any) -> Any:
        vals = [self._read(row, c) for c in self.cols]
        return vals[0] if len(vals) == 1 else vals


def using_attr(f: Callable[[Any], Any], attr: str) -> Callable[[Any], Any]:
    """`f` applied to attribute `attr` of its argument: `using_attr(labeller, 'name')`."""

    def _get(o: Any) -> Any:
        return f(getattr(o, attr))

    return _get
