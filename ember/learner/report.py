"""`learn.report()`: one self-contained HTML page about a learner and its training.

The page has the model and its final metrics, the data (sizes, blocks, vocabulary, a batch), the last
`lr_find` curve, the loss and metric curves of every fit, and for a single-label classifier its
confusion matrix, most confused pairs, top losses and most uncertain items (an application may give
its own sections instead: `AppSpec.report_sections` in `ember.learner.app`). Images are PNG data URIs
and the style is inline, so the one file can be mailed, attached to a CI run or opened offline.

>>> learn.fine_tune(1); learn.report("report.html")  # doctest: +SKIP
PosixPath('report.html')
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import html
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any, NamedTuple

from ember.core.utils import atomic_write
from ember.data.block import TfmdDataLoaders
from ember.learner.app import app_of
from ember.learner.interpret import ClassificationInterpretation, is_single_label

if TYPE_CHECKING:
    from ember.learner.learner import Learner

__all__ = ["Section", "classifier_sections", "html_image", "html_table", "write_report"]

MAX_VOCAB_SHOWN = 50  # a vocabulary longer than this is cut, with its full length said
MAX_CONFUSION_CLASSES = 40  # beyond this a confusion matrix plot is unreadable: the table stays


class Section(NamedTuple):
    """One part of the page: an anchor id, a heading, and its body (already escaped HTML)."""

    id: str
    title: str
    body: str


def write_report(learn: Learner, path: str | Path) -> Path:
    """Write the report of `learn` to `path` (atomically: an error leaves no partial file) and return it.

    >>> write_report(learn, "runs/pets.html")  # doctest: +SKIP
    PosixPath('runs/pets.html')
    """
    path = Path(path)
    with _closing_new_figures():
        sections = [s for s in _sections(learn) if s is not None]
    page = _page(f"Training report: {_model_name(learn)}", sections)
    with atomic_write(path, "wb") as f:
        f.write(page.encode("utf-8"))
    return path


def _sections(learn: Learner) -> Iterator[Section | None]:
    yield _summary_section(learn)
    yield _data_section(learn)
    yield _lr_find_section(learn)
    yield _training_section(learn)
    found = app_of(learn)
    app_sections = found[0].report_sections if found is not None else None
    yield from (app_sections or classifier_sections)(learn)


# ---- the sections ------------------------------------------------------------------------------------
def _summary_section(learn: Learner) -> Section:
    n_params = sum(p.numel() for p in learn.model.parameters())
    n_train = sum(p.numel() for p in learn.model.parameters() if p.requires_grad)
    rows = [
        ("model", _model_name(learn)),
        ("parameters", f"{n_params:,} ({n_train:,} trainable)"),
        ("loss function", type(learn.loss_func).__name__),
        ("optimizer", getattr(learn.opt_func, "__name__", type(learn.opt_func).__name__)),
        ("metrics", ", ".join(m.name for m in learn.metrics) or "none"),
        ("device", str(learn.dls.device)),
    ]
    history = learn.recorder.history
    final = (
        html_table(["metric", "value"], _final_metrics(learn))
        if history
        else "<p>No epoch trained yet: the model is as it was built or loaded.</p>"
    )
    return Section(
        "summary",
        "Model and final metrics",
        html_table(["", ""], rows) + "\n<h3>Final metrics</h3>\n" + final,
    )


def _final_metrics(learn: Learner) -> list[tuple[str, str]]:
    # The last validation of the validation set (not a later get_preds or predict), as export keeps it.
    last = learn.recorder.history[-1]
    rows = [("train_loss", _fmt(last["train_loss"]))]
    rows += [(k, _fmt(v)) for k, v in learn.recorder.final_metrics.items()]
    return [*rows, ("epochs trained", str(learn.epochs_trained)), ("fits", str(last["fit"]))]


def _data_section(learn: Learner) -> Section:
    dls = learn.dls
    rows = [
        ("training items", _count(getattr(dls, "train_ds", None), dls.train)),
        ("validation items", _count(getattr(dls, "valid_ds", None), dls.valid) if len(dls) > 1 else "none"),
        ("batch size", _fmt(getattr(dls.train, "bs", None))),
    ]
    body = ""
    if isinstance(dls, TfmdDataLoaders):
        rows += _block_rows(dls)
        body = "\n<h3>A training batch</h3>\n" + html_image(
            dls.show_batch(max_n=9), "a grid of training items"
        )
    return Section("data", "Data", html_table(["", ""], rows) + body)


def _count(ds: Any, dl: Any) -> str:
    if ds is not None and hasattr(ds, "__len__"):
        return f"{len(ds):,}"
    return f"{len(dl):,} batches" if hasattr(dl, "__len__") else "unknown"


def _block_rows(dls: TfmdDataLoaders) -> list[tuple[str, str]]:
    blocks, n_inp = dls.datasets.blocks, dls.datasets.n_inp
    rows = [("input blocks", _reprs(blocks[:n_inp])), ("target blocks", _reprs(blocks[n_inp:]) or "none")]
    vocab = dls.vocab
    if vocab:
        shown = ", ".join(str(v) for v in vocab[:MAX_VOCAB_SHOWN])
        more = f", ... ({len(vocab)} in all)" if len(vocab) > MAX_VOCAB_SHOWN else ""
        rows.append(("vocabulary", shown + more))
    if dls.c is not None:
        rows.append(("model outputs (classes)", str(dls.c)))
    return rows


def _reprs(objs: Sequence[Any]) -> str:
    return ", ".join(repr(o) for o in objs)


def _lr_find_section(learn: Learner) -> Section | None:
    res = learn.lr_find_result
    if res is None:
        return None
    rows = [(name, f"{lr:.2e}") for name, lr in res.suggestions._asdict().items()]
    body = html_image(res.plot(), "loss against learning rate from lr_find") + html_table(
        ["suggestion", "learning rate"], rows
    )
    return Section("lr-find", "Learning rate finder", body)


def _training_section(learn: Learner) -> Section | None:
    history = learn.recorder.history
    if not history:
        return None
    fig = learn.recorder.plot_metrics()
    header = list(history[0])
    rows = [[_fmt_cell(k, h.get(k)) for k in header] for h in history]
    note = "<p>Epochs are counted across fits; a dashed line marks the start of a new fit.</p>"
    return Section(
        "training",
        "Training",
        html_image(fig, "loss and metrics per epoch") + note + html_table(header, rows),
    )


def classifier_sections(learn: Learner) -> Iterator[Section]:
    """The confusion matrix, most confused pairs, top losses and most uncertain items of a single-label
    classifier on its validation set; nothing for other learners. An application's `report_sections`."""
    interp = _interpretation(learn)
    if interp is None:  # regression, multi-label, no validation set: nothing to confuse
        return
    c = len(interp.vocab)
    cm = "<p>Too many classes to draw; see the table below.</p>"
    if c <= MAX_CONFUSION_CLASSES:
        side = min(12.0, max(4.0, c * 0.6 + 2))
        cm = html_image(interp.plot_confusion_matrix(figsize=(side, side)), "confusion matrix")
    pairs = interp.most_confused()[:20]
    confused = html_table(["actual", "predicted", "count"], pairs) if pairs else "<p>No confusion at all.</p>"
    yield Section(
        "confusion", "Confusion matrix (validation set)", cm + "\n<h3>Most confused</h3>\n" + confused
    )
    yield Section("top-losses", "Top losses", _top_losses(interp))
    yield Section("uncertain", "Most uncertain", _most_uncertain(interp))


def _interpretation(learn: Learner) -> ClassificationInterpretation | None:
    if len(learn.dls) < 2 or len(learn.dls.valid) == 0 or not hasattr(learn.loss_func, "reduction"):
        return None
    probs, targs, losses = learn.get_preds(with_loss=True)
    if not is_single_label(probs, targs):
        return None
    return ClassificationInterpretation(learn, learn.dls.valid, None, probs, targs, losses)


def _top_losses(interp: ClassificationInterpretation, k: int = 9) -> str:
    caption = "<p>Titles: predicted/actual / loss / probability of the prediction.</p>"
    if _inputs_drawable(interp):
        return caption + html_image(interp.plot_top_losses(k), "the validation items with the largest losses")
    losses, idxs = interp.top_losses(k)
    probs = interp.probs.max(1).values.tolist()
    rows = [
        [i, *_pred_actual(interp, i), f"{loss:.4f}", f"{probs[i]:.4f}"]
        for loss, i in zip(losses.tolist(), idxs.tolist())
    ]
    return html_table(["item", "predicted", "actual", "loss", "probability"], rows)


def _most_uncertain(interp: ClassificationInterpretation, k: int = 9) -> str:
    caption = (
        "<p>The smallest gaps between the two most probable classes. Titles: predicted/actual / top two.</p>"
    )
    if _inputs_drawable(interp):
        return caption + html_image(
            interp.plot_most_uncertain(k), "the validation items the model is least sure of"
        )
    idxs = interp.most_uncertain(k).tolist()
    top2 = interp.probs.topk(2, dim=1).values.tolist()
    rows = [[i, *_pred_actual(interp, i), f"{top2[i][0]:.4f}", f"{top2[i][1]:.4f}"] for i in idxs]
    return html_table(["item", "predicted", "actual", "top probability", "second"], rows)


def _pred_actual(interp: ClassificationInterpretation, i: int) -> tuple[str, str]:
    return interp.vocab[int(interp.preds[i])], interp.vocab[int(interp.targs[i])]


def _inputs_drawable(interp: ClassificationInterpretation) -> bool:
    # Items are drawn by the input block's `show`; plain DataLoaders have no blocks to draw with.
    return isinstance(interp.learn.dls, TfmdDataLoaders) and hasattr(interp.dl, "dataset")


# ---- HTML --------------------------------------------------------------------------------------------
_PAGE = Template("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>$title</title>
<style>
body { font-family: system-ui, sans-serif; color: #222; line-height: 1.45;
       max-width: 60rem; margin: 0 auto; padding: 0.75rem; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.25rem; border-bottom: 1px solid #ccc; margin-top: 2rem; }
h3 { font-size: 1rem; }
nav a { margin-right: 0.75rem; white-space: nowrap; }
img { display: block; max-width: 100%; height: auto; margin: 0.5rem 0; }
.table { overflow-x: auto; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 0.2rem 0.6rem; border-bottom: 1px solid #e3e3e3; text-align: left; vertical-align: top; }
.meta { color: #666; font-size: 0.9rem; }
</style>
</head>
<body>
<h1>$title</h1>
<p class="meta">$meta</p>
<nav>$nav</nav>
$sections
</body>
</html>
""")


def _page(title: str, sections: list[Section]) -> str:
    nav = " ".join(f'<a href="#{s.id}">{html.escape(s.title)}</a>' for s in sections)
    body = "\n".join(
        f'<section id="{s.id}">\n<h2>{html.escape(s.title)}</h2>\n{s.body}\n</section>' for s in sections
    )
    meta = f"Written by ember on {datetime.datetime.now().isoformat(timespec='seconds')}"
    return _PAGE.substitute(title=html.escape(title), meta=html.escape(meta), nav=nav, sections=body)


def html_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header) if any(header) else ""
    thead = f"<thead><tr>{head}</tr></thead>" if head else ""
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f'<div class="table"><table>{thead}<tbody>{trs}</tbody></table></div>'


def html_image(fig: Any, alt: str) -> str:
    """A matplotlib figure as an inline PNG; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e-3 and v != 0 else f"{v:.4f}"
    return str(v)


def _fmt_cell(key: str, v: Any) -> str:
    if key == "time" and isinstance(v, float):
        m, s = divmod(round(v), 60)
        return f"{m:02d}:{s:02d}"
    if key == "lr" and isinstance(v, float):
        return f"{v:.2e}"
    return _fmt(v)


def _model_name(learn: Learner) -> str:
    arch = (learn.model_config or {}).get("arch")
    return str(arch) if arch else type(learn.model).__name__


@contextlib.contextmanager
def _closing_new_figures() -> Iterator[None]:
    """Draw without showing (headless, or a notebook with interactive plots), and close any figure a
    failing plot left open."""
    import matplotlib.pyplot as plt

    before = set(plt.get_fignums())
    try:
        with plt.ioff():
            yield
    finally:
        for num in set(plt.get_fignums()) - before:
            plt.close(num)
