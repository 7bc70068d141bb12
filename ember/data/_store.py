"""Where data sets live on disk, and how a finished folder appears there in one step.

Both the downloader (`external.py`) and the built-in data sets (`builtin.py`) build a folder in a scratch
place beside its final name and rename it into place, so an interrupted run never leaves a half-written
folder under a name that a later call would trust.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__: list[str] = []  # private helpers; the public names live in external.py and builtin.py

StrPath = str | os.PathLike


def data_dir(data: StrPath | None) -> Path:
    """`data`, or `~/.ember/data` when it is None: where unpacked data sets go."""
    return Path(data).expanduser() if data is not None else Path.home() / ".ember" / "data"


def archive_dir(archive: StrPath | None) -> Path:
    """`archive`, or `~/.ember/archive` when it is None: where downloaded archives are kept."""
    return Path(archive).expanduser() if archive is not None else Path.home() / ".ember" / "archive"


def build_atomically(dest: Path, build: Callable[[Path], Path], replace: bool = False) -> Path:
    """Run `build(scratch)` in a fresh folder beside `dest`; the folder it returns becomes `dest` in one
    rename (replacing an older `dest` when `replace`). Whatever happens, the scratch folder is removed.

    >>> def make(scratch):
    ...     (scratch / "out").mkdir(); (scratch / "out" / "a.txt").write_text("hi")
    ...     return scratch / "out"
    >>> build_atomically(Path("data/demo"), make)  # data/demo/a.txt, or nothing at all
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Hidden and suffixed, so a scratch folder left by a killed process is never mistaken for a data set.
    scratch = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        built = build(scratch)
        if dest.exists():
            if not replace:
                return dest  # another process finished first; its copy is complete
            os.replace(dest, scratch / ".replaced")  # removed with the scratch folder below
        os.replace(built, dest)
        return dest
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
