"""Collaborative filtering's entry in the core's extension point (`ember.learner.app`): how a
`CollabLearner` is exported, loaded, served, reported and shown.

The export holds the model's recipe, both vocabularies (names in index order, the reserved '#na#'
left out), the column names and the loss; `load_learner` gives back a `CollabLearner` without the
ratings, whose `predict(user, item)` maps a name it never saw to '#na#'. Served, `POST /predict` takes
`{"user": ..., "item": ...}` (or a list of them) and answers the rating.

>>> learn = load_learner("ratings.pkl")  # doctest: +SKIP
>>> learn.predict(15, "Heat (1995)")  # doctest: +SKIP
3.91
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch.utils.data import TensorDataset

from ember.collab.data import CollabDataLoaders
from ember.collab.learner import CollabLearner
from ember.collab.models import EmbeddingDotBias, EmbeddingNN
from ember.collab.vocab import CollabVocab
from ember.core.serial import ConfigError, from_config, to_config
from ember.data.loaders import DataLoader
from ember.learner.app import AppSpec, InputRejected, RequestIO, register_app
from ember.learner.export import ExportError, model_recipe
from ember.learner.learner import Learner
from ember.learner.report import Section, html_image, html_table

__all__ = ["COLLAB", "RATINGS_IO"]

_MODELS = {"EmbeddingDotBias": EmbeddingDotBias, "EmbeddingNN": EmbeddingNN}


def _task(learn: Learner) -> str | None:
    return "collab" if isinstance(learn.dls, CollabDataLoaders) else None


# ---- export and loading ------------------------------------------------------------------------------
def _describe(learn: Learner) -> dict[str, Any]:
    dls: CollabDataLoaders = learn.dls
    try:
        loss = to_config(learn.loss_func)
    except ConfigError as e:
        raise ExportError(f"learn.export: {e}") from e
    recipe = model_recipe(learn)
    return {
        "model": recipe,
        "users": {"column": dls.user_name, "names": dls.users.items[1:]},  # index 0, '#na#', is implied
        "items": {"column": dls.item_name, "names": dls.items.items[1:]},
        "rating_name": dls.rating_name,
        "rating_range": list(dls.rating_range),
        "loss_func": loss,
        "info": {"arch": recipe["type"], "task": "collaborative filtering", "vocab": None, "n_out": 1,
                 "input_size": None, "columns": [dls.user_name, dls.item_name, dls.rating_name]},
    }  # fmt: skip


def _build(cfg: dict[str, Any], folder: Path, device: torch.device) -> CollabLearner:
    recipe = dict(cfg["model"])
    cls = _MODELS.get(recipe.pop("type", None))
    if cls is None:
        raise ValueError(
            f"no collaborative-filtering model {cfg['model'].get('type')!r} (known: {list(_MODELS)})"
        )
    users, items = _vocab(cfg["users"]), _vocab(cfg["items"])
    empty = TensorDataset(torch.zeros(0, 2, dtype=torch.long), torch.zeros(0, 1))
    dls = CollabDataLoaders(
        DataLoader(empty, 4096, device=device),  # no ratings travel with the model: only the names
        users=users, items=items, rating_name=cfg["rating_name"], rating_range=tuple(cfg["rating_range"]),
        rated=pd.DataFrame({users.column: [], items.column: []}), device=device, path=folder,
    )  # fmt: skip
    learn = CollabLearner(
        dls, cls(**recipe), loss_func=from_config(cfg["loss_func"]), path=folder, quiet=True
    )
    learn.model_config = cfg["model"]
    return learn


def _vocab(cfg: dict[str, Any]) -> CollabVocab:
    vocab = CollabVocab(cfg["names"], cfg["column"])
    if vocab.items[1:] != cfg["names"]:  # sorting again must give the exported order: row i is name i
        raise ValueError(f"the {cfg['column']!r} names are not in the order the model's rows need")
    return vocab


# ---- serving: {"user": ..., "item": ...} in, the rating out ------------------------------------------
def _read(data: Any, max_pixels: int, name: str) -> tuple[Any, Any]:
    if not isinstance(data, dict) or "user" not in data or "item" not in data:
        raise InputRejected(
            f'{name} must be a JSON object with the keys "user" and "item", e.g. {{"user": 15, "item": '
            f'"Heat (1995)"}}; got {str(data)[:80]}'
        )
    return data["user"], data["item"]


def _rate(learn: CollabLearner, pairs: list[tuple[Any, Any]]) -> list[dict[str, Any]]:
    dls = learn.dls
    table = pd.DataFrame({dls.user_name: [u for u, _ in pairs], dls.item_name: [i for _, i in pairs]})
    x = dls.encode(table)  # (n, 2); 0 where a name is unknown
    with warnings.catch_warnings():  # each answer says what was unknown instead
        warnings.simplefilter("ignore")
        ratings = learn.predict_pairs(table).tolist()
    return [
        {"rating": round(r, 6), "user": u, "item": i,  # the answer first: the page shows it largest
         "unknown": [k for k, j in (("user", 0), ("item", 1)) if int(xi[j]) == 0]}
        for (u, i), r, xi in zip(pairs, ratings, x)
    ]  # fmt: skip


RATINGS_IO = RequestIO(
    kind="json",
    read=_read,
    predict=_rate,
    fields=("user", "item"),
    example="""curl -H 'Content-Type: application/json' -d '{"user": 15, "item": "Heat"}' URL/predict""",
)


# ---- report and show_results ---------------------------------------------------------------------------
def _report_sections(learn: CollabLearner) -> list[Section]:
    if len(learn.dls) < 2 or len(learn.dls.valid) == 0:
        return []
    preds, targs = (t.reshape(-1).float() for t in learn.get_preds())
    rmse = float(((preds - targs) ** 2).mean().sqrt())
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    keep = torch.randperm(len(preds), generator=torch.Generator().manual_seed(0))[:5000]
    ax.scatter(targs[keep], preds[keep], s=4, alpha=0.3)
    ax.set_xlabel("actual rating")
    ax.set_ylabel("predicted rating")
    worst = (preds - targs).abs().topk(min(10, len(preds))).indices
    x = learn.dls.valid_ds.tensors[0][worst]
    rows = learn.dls.decode(x).assign(actual=targs[worst].tolist(), predicted=preds[worst].tolist())
    body = (
        f"<p>RMSE on the {len(preds):,} validation ratings: {rmse:.4f}</p>"
        + html_image(fig, "predicted against actual ratings")
        + "\n<h3>Largest errors</h3>\n"
        + html_table(list(rows.columns), rows.round(3).values.tolist())
    )
    return [Section("ratings", "Predicted and actual ratings (validation set)", body)]


def _show_results(learn: CollabLearner, ds_idx: int, max_n: int) -> pd.DataFrame:
    """The first `max_n` rows of split `ds_idx` with their names, rating and prediction, printed."""
    x, y = learn.dls[ds_idx].one_batch()
    x, y = x[:max_n], y[:max_n]
    table = learn.dls.decode(x, y)
    table["prediction"] = learn._scores(x).tolist()
    print(table.to_string())
    return table


COLLAB = AppSpec(
    name="collab",
    task=_task,
    describe=_describe,
    build=_build,
    request_io=RATINGS_IO,
    report_sections=_report_sections,
    show_results=_show_results,
)
register_app(COLLAB)
