"""Plain-text tables for terminals and logs: columns padded to their widest cell, numbers right-aligned.

>>> print(text_table(["task", "accuracy"], [["digits", 0.981], ["faces", 1.0]]))
task    accuracy
------  --------
digits     0.981
faces        1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["text_table"]


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """`header` and `rows` as aligned text; an int or float cell is right-aligned, anything else left."""
    cells = [[str(c) for c in header], *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells if i < len(r)) for i in range(len(header))]
    numeric = [all(_is_number(r[i]) for r in rows if i < len(r)) and rows for i in range(len(header))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(r, widths, numeric)).rstrip()

    return "\n".join([line(cells[0]), line(["-" * w for w in widths]), *map(line, cells[1:])])


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)
