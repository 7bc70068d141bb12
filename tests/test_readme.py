"""The README's Python examples run as written, on the built-in data.

Each ```python block is run in a fresh interpreter in an empty folder. A block that does not start with
`from ember` continues the one before it (the README says so), so such a chain runs as one script. Chains
that train are marked slow: they run in CI, with the epochs the README shows.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

README = Path(__file__).parent.parent / "README.md"
TRAINS = re.compile(r"\.(fit|fit_one_cycle|fine_tune|lr_find)\(")


def python_blocks(text: str) -> list[tuple[str, str]]:
    """(section heading, code) of every ```python block, indented ones (inside a list) dedented."""
    blocks = []
    fence = re.compile(r"^(?P<indent> *)```python\n(?P<code>.*?)^(?P=indent)```$", re.S | re.M)
    for m in fence.finditer(text):
        headings = re.findall(r"^## (.+)$", text[: m.start()], re.M)
        blocks.append((headings[-1] if headings else "", textwrap.dedent(m["code"])))
    return blocks


def chains(text: str) -> list[tuple[str, str]]:
    """The blocks joined into scripts: a block starting with `from ember` starts a new one."""
    out: list[tuple[str, str]] = []
    for heading, code in python_blocks(text):
        if code.lstrip().startswith("from ember") or not out:
            out.append((heading, code))
        else:
            out[-1] = (out[-1][0], out[-1][1] + "\n" + code)
    return out


CHAINS = chains(README.read_text())


def test_the_readme_has_python_examples_and_every_one_compiles():
    assert len(python_blocks(README.read_text())) >= 8
    for heading, code in CHAINS:
        compile(code, f"README.md ({heading})", "exec")


@pytest.mark.parametrize(
    "code",
    [
        pytest.param(code, id=heading, marks=[pytest.mark.slow] if TRAINS.search(code) else [])
        for heading, code in CHAINS
    ],
)
def test_a_readme_example_runs_as_written(code, tmp_path):
    env = {**os.environ, "MPLBACKEND": "Agg"}  # plots draw off screen
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, f"{code}\n---\n{result.stderr[-3000:]}"
