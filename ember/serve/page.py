"""The served model's web page. For an image classifier: drop or pick an image, see its preview, the label
and a bar per class. For a model whose answer is a picture ("picture": a segmentation, an image-to-image
model): the same drop zone, the picture answered, and its legend when it names classes (each one's colour
and share). For a model that takes JSON (a recommender): a form with the application's fields, and the
answer.

The HTML, CSS and JavaScript are package files (`ember/serve/static/`), sent in one response with no
external asset (it works offline). The drop zone is a button, so the keyboard opens the file picker with
Enter or Space; results are announced from an `aria-live` region. The model's name, vocabulary and input
size are written in by the server, every value HTML-escaped.

>>> html = render_page({"arch": "resnet18", "vocab": ["cat", "dog"], "input_size": [224, 224]}, 10)
>>> "resnet18" in html
True
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import re
from importlib.resources import files
from typing import Any

__all__ = ["content_security_policy", "render_page"]

TOP_K = 5  # bars shown when the model has more classes than this
VOCAB_IN_SUMMARY = 8  # up to this many classes are named under the title
VOCAB_SHOWN = 50  # classes listed in "About the model"; the rest are counted


@functools.cache
def _static(name: str) -> str:
    return files("ember.serve").joinpath("static", name).read_text(encoding="utf-8")


def _script(kind: str) -> str:
    if kind == "image":
        return _static("upload.js") + _static("image.js").replace("__TOP_K__", str(TOP_K))
    if kind == "picture":
        return _static("upload.js") + _static("picture.js")
    return _static("form.js")


def render_page(
    info: dict[str, Any],
    max_upload_mb: float,
    kind: str = "image",
    fields: tuple[str, ...] = (),
    example: str = "",
    about: str = "",
) -> str:
    """The page for a model described by `info` (an export's metadata) whose requests are of `kind`
    ("image", "picture" for images answered with a picture, or "json" with the keys `fields`); `about`
    says what an answer holds. Every value is HTML-escaped."""
    arch, vocab = str(info.get("arch") or "model"), [str(v) for v in info.get("vocab") or []]
    size = _size(info.get("input_size"))
    if kind in ("image", "picture"):
        classes = f"{len(vocab)} classes" + (
            f" ({', '.join(vocab)})" if len(vocab) <= VOCAB_IN_SUMMARY else ""
        )
        parts = [classes] if vocab or kind == "image" else []  # an image-to-image model has no classes
        parts += [f"input {size}", *([info["task"]] if info.get("task") else [])]
        summary = " · ".join(parts)
        main = _static(f"{kind}.html").format(
            max_bytes=int(max_upload_mb * 2**20), max_mb=f"{max_upload_mb:g}", n_classes=len(vocab)
        )
    else:
        summary = str(info.get("task") or "")
        inputs = "\n".join(
            f'      <label>{name} <input name="{name}" required autocomplete="off"></label>'
            for name in map(html.escape, fields)
        )
        main = _static("form.html").format(inputs=inputs)
    return _static("page.html").format(
        title=html.escape(f"{arch} · ember"),
        arch=html.escape(arch),
        summary=html.escape(summary),
        main=main,
        details=_details(info, arch, vocab, size),
        example=_example(kind, example, about),
        style=_static("page.css"),
        script=_script(kind),
    )


def _example(kind: str, example: str, about: str) -> str:
    """The footer's example request (none for a classifier, whose page says it all)."""
    if not example or kind == "image":
        return ""
    text = f" For example: <code>{html.escape(example)}</code>"
    if kind == "picture":
        text += "; add <code>?format=png</code> for the PNG alone."
    return text + (" " + re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(about)) if about else "")


def content_security_policy(kind: str = "image") -> str:
    """Only this page's own script and style, images from the file picked, requests to this server."""
    return (
        f"default-src 'none'; script-src '{_sha256(_script(kind))}'; "
        f"style-src '{_sha256(_static('page.css'))}'; "
        "img-src blob: data:; connect-src 'self'; base-uri 'none'; form-action 'none'"
    )


def _details(info: dict[str, Any], arch: str, vocab: list[str], size: str) -> str:
    shown = ", ".join(vocab[:VOCAB_SHOWN]) + (
        f", … ({len(vocab)} in all)" if len(vocab) > VOCAB_SHOWN else ""
    )
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in (info.get("metrics") or {}).items())
    rows = [
        ("Architecture", arch),
        ("Task", info.get("task") or "—"),
        ("Input size", size),
        ("Vocabulary", shown or "—"),
        ("Metrics", metrics or "—"),
        ("Exported", f"{info.get('created', '—')} with ember {info.get('ember_version', '?')}"),
    ]
    return "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in rows)


def _size(input_size: Any) -> str:
    if not input_size:
        return "any size"
    h, w = input_size if isinstance(input_size, list | tuple) else (input_size, input_size)
    return f"{w}×{h} px"


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
