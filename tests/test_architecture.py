"""The layers: the core (`core`, `data`, `learner`, `callbacks`) names no application and no image kind,
and every module stays small enough to read.

Read with `ast`, not imported: a test of what the code says, not of what happens to be loaded.
The rules, precisely:
- an application is one of APPS; a core module imports none (absolute or relative) and has no string
  constant naming one (`"ember.vision.data"`, for `importlib`), docstrings aside; the safe loader alone
  (TABLE_ALLOWED) imports `ember.apps`, the table of applications, which names them for it;
- images are vision's: the core imports no PIL (but for PIL_ALLOWED), has no string constant that is a
  vision kind's tag (`"image"`, `"mask"`, `"points"`), and no identifier that is one of the names a
  public `ember.vision` module exports (`IMAGE`, `get_image_files`, `ImageBlock`, `show_image`, ...) or
  has `pil` as a word (`is_pil`); docstrings and comments may still mention images as examples;
- no module of `ember/` is longer than MAX_LINES lines.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import ember

ROOT = Path(ember.__file__).parent
CORE = ("core", "data", "learner", "callbacks")
APPS = ("vision", "collab", "generative", "serve", "cli", "apps", "tabular", "text")
VISION_KINDS = ("image", "mask", "points")
MAX_LINES = 400

# The one place the core may use PIL, and why: a file format, not a kind of value in a pipeline.
PIL_ALLOWED = {"data/builtin.py": "writes the built-in data sets' digits and faces as PNG files"}

# The one place the core reads the table of applications, and why: the safe loader must find an
# application only through that table, which is kept outside the core (the design).
TABLE_ALLOWED = {"learner/export.py": "load_learner finds an export's application only through ember.apps"}

_APP_MODULE = re.compile(rf"\bember\.({'|'.join(APPS)})\b")


def _modules(*folders: str) -> list[Path]:
    return sorted(p for f in folders for p in (ROOT / f).rglob("*.py"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are docstrings (of the module, a class or a function)."""
    owners = [
        n
        for n in ast.walk(tree)
        if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    return {
        id(o.body[0].value)
        for o in owners
        if o.body and isinstance(o.body[0], ast.Expr) and isinstance(o.body[0].value, ast.Constant)
    }


def _strings(tree: ast.AST) -> Iterator[ast.Constant]:
    """The string constants that are not docstrings."""
    docs = _docstrings(tree)
    for n in ast.walk(tree):
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs:
            yield n


def _imported(path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The absolute module names an import statement names (relative imports resolved)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level == 0:
        return [node.module or ""]
    package = ["ember", *path.relative_to(ROOT).parent.parts]
    base = ".".join(package[: len(package) - node.level + 1])
    return [f"{base}.{node.module}" if node.module else base]


def _identifiers(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Every name the code defines or uses: variables, attributes, functions, classes, arguments, imports."""
    for n in ast.walk(tree):
        if isinstance(n, ast.Name):
            yield n.lineno, n.id
        elif isinstance(n, ast.Attribute):
            yield n.lineno, n.attr
        elif isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            yield n.lineno, n.name
        elif isinstance(n, ast.arg):
            yield n.lineno, n.arg
        elif isinstance(n, ast.alias):
            yield n.lineno, (n.asname or n.name).split(".")[-1]


def _words(identifier: str) -> list[str]:
    """`get_image_files` -> get, image, files; `PILImage` -> pil, image; `IMAGE_SIZE` -> image, size."""
    return [w.lower() for w in re.findall(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+", identifier)]


def _exported_by_vision() -> set[str]:
    """The names in the `__all__` of every public module of ember/vision (read, not imported), but for
    those the core exports too (vision passes on `ClassificationInterpretation`, it does not own it)."""
    return _exported("vision") - _exported(*CORE)


def _exported(*folders: str) -> set[str]:
    names: set[str] = set()
    for path in _modules(*folders):
        if any(part.startswith("_") and part != "__init__.py" for part in path.relative_to(ROOT).parts):
            continue  # a private module's helpers (`hw`, `uniform`) are not an application's vocabulary
        for n in ast.walk(ast.parse(path.read_text())):
            target = n.targets[0] if isinstance(n, ast.Assign) else getattr(n, "target", None)
            if isinstance(target, ast.Name) and target.id == "__all__" and isinstance(n.value, ast.List):
                names |= {e.value for e in n.value.elts if isinstance(e, ast.Constant)}
    return names


def _names_an_app(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    found = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Import | ast.ImportFrom):
            found += [
                f"{_rel(path)}:{n.lineno}: imports {m}"
                for m in _imported(path, n)
                if _APP_MODULE.match(m) and not (m == "ember.apps" and _rel(path) in TABLE_ALLOWED)
            ]
    for s in _strings(tree):
        if _APP_MODULE.search(s.value):
            found.append(f"{_rel(path)}:{s.lineno}: the string {s.value[:60]!r} names an application")
    return found


def _names_an_image_kind(path: Path, vision_names: set[str]) -> list[str]:
    tree, rel = ast.parse(path.read_text()), _rel(path)
    found = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Import | ast.ImportFrom) and rel not in PIL_ALLOWED:
            found += [
                f"{rel}:{n.lineno}: imports {m}" for m in _imported(path, n) if m.split(".")[0] == "PIL"
            ]
    for s in _strings(tree):
        if s.value.strip().lower() in VISION_KINDS:
            found.append(f"{rel}:{s.lineno}: the string {s.value!r} is a vision kind")
    for line, name in _identifiers(tree):
        if name in vision_names:
            found.append(f"{rel}:{line}: the name {name!r} is ember.vision's")
        elif "pil" in _words(name):
            found.append(f"{rel}:{line}: the name {name!r} is about PIL images")
    return sorted(set(found))


@pytest.mark.parametrize("layer", CORE)
def test_the_core_imports_no_application_and_names_none(layer):
    offenders = [o for p in _modules(layer) for o in _names_an_app(p)]
    assert not offenders, f"ember/{layer} depends on an application:\n" + "\n".join(offenders)


@pytest.mark.parametrize("layer", CORE)
def test_the_core_knows_no_image_kinds(layer):
    vision_names = _exported_by_vision()
    offenders = [o for p in _modules(layer) for o in _names_an_image_kind(p, vision_names)]
    assert not offenders, (
        f"ember/{layer} knows about images, which are ember.vision's (see this file's docstring for the "
        "rule; an application adds its kinds and their drawing through the blocks):\n" + "\n".join(offenders)
    )


def test_no_module_is_longer_than_400_lines():
    lengths = {_rel(p): len(p.read_text().splitlines()) for p in sorted(ROOT.rglob("*.py"))}
    long = [f"{name}: {n} lines" for name, n in lengths.items() if n > MAX_LINES]
    assert not long, f"modules over {MAX_LINES} lines (split them, one concept a module):\n" + "\n".join(long)


def test_the_rules_catch_what_they_are_for(tmp_path, monkeypatch):
    """The checks above would be worthless if they could not fail: a core module that does what they
    forbid is caught by each."""
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)  # ember/ itself is only read
    (tmp_path / "data").mkdir()
    bad = tmp_path / "data" / "bad_example.py"
    (tmp_path / "vision").mkdir()
    (tmp_path / "vision" / "core.py").write_text('__all__ = ["get_image_files"]\n')
    (tmp_path / "vision" / "_helpers.py").write_text('__all__ = ["uniform"]\n')
    bad.write_text(
        '"""Mentions ember.vision and images in a docstring: fine."""\n'
        "from PIL import Image\n"
        "from ..vision import augment\n"
        "import importlib, random\n"
        "def is_pil(kind):\n"
        '    if kind == "mask":\n'
        '        return importlib.import_module("ember.collab.data")\n'
        "    return get_image_files, random.uniform\n"
    )
    assert [o.split(": ", 1)[1] for o in _names_an_app(bad)] == [
        "imports ember.vision",
        "the string 'ember.collab.data' names an application",
    ]
    assert [o.split(": ", 1)[1] for o in _names_an_image_kind(bad, _exported_by_vision())] == [
        "imports PIL",
        "the name 'is_pil' is about PIL images",
        "the string 'mask' is a vision kind",
        "the name 'get_image_files' is ember.vision's",
    ]  # by line; `random.uniform` is not vision's: `uniform` is in a private module's __all__
    assert _words("PILImage") == ["pil", "image"] and "pil" not in _words("compile_pipeline")
