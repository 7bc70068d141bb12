"""`collab_learner` and `CollabLearner`: a Learner that predicts, recommends and explains by name.

What an unknown user or item predicts: it maps to the reserved index 0, whose embedding row starts at
zero and is never trained (no training row maps to it). With `EmbeddingDotBias` an unknown user
therefore contributes nothing, so (unknown user, known item) predicts `sigmoid_range(item bias)`, the
item's rating for an "average" user; an unknown item likewise gives the user's bias alone; and when
both are unknown the prediction is the middle of `y_range` (0 without a `y_range`). With `EmbeddingNN`
the unknown side's embedding is a zero vector fed to the network.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import pandas as pd
import torch
from torch import Tensor

from ember.collab.data import CollabDataLoaders
from ember.collab.interpret import cosine_neighbours, pca
from ember.collab.models import EmbeddingDotBias, EmbeddingNN, emb_sz_rule
from ember.core.utils import eval_mode
from ember.learner.learner import Learner
from ember.losses import MSELossFlat

__all__ = ["CollabLearner", "collab_learner"]


class CollabLearner(Learner):
    """A `Learner` on `CollabDataLoaders` that takes users and items by name.

    >>> learn.predict(user=15, item="Star Wars: Episode IV - A New Hope")  # doctest: +SKIP
    >>> learn.recommend(15, n=5)  # doctest: +SKIP
    """

    def __init__(self, dls: CollabDataLoaders, model: torch.nn.Module, **kwargs: Any) -> None:
        if not isinstance(dls, CollabDataLoaders):
            raise TypeError(f"CollabLearner needs CollabDataLoaders, got {type(dls).__name__}; use Learner")
        super().__init__(dls, model, **kwargs)
        self.dls: CollabDataLoaders = dls

    # ---- prediction by name ----------------------------------------------------------------------
    def predict(self, user: Any, item: Any) -> float:  # type: ignore[override]
        """The predicted rating of `item` by `user` (both by name), a float.

        >>> learn.predict(15, "Star Wars (1977)")  # doctest: +SKIP
        """
        pairs = pd.DataFrame({self.dls.user_name: [user], self.dls.item_name: [item]})
        return float(self.predict_pairs(pairs)[0])

    def predict_pairs(self, pairs: pd.DataFrame, bs: int = 65536) -> Tensor:
        """Predicted ratings `(n,)` for a table with the user and item columns (other columns ignored).
        Unknown names use the reserved index (see the module docs), with a warning that counts them.

        >>> pairs = pd.DataFrame({"userId": [15, 15], "title": ["Heat", "Up"]})
        >>> learn.predict_pairs(pairs)  # doctest: +SKIP
        """
        x = self.dls.encode(pairs)  # (n, 2)
        _warn_unknown(x, self.dls.user_name, self.dls.item_name)
        return torch.cat([self._scores(x[i : i + bs]) for i in range(0, len(x), bs)] or [torch.empty(0)])

    def _scores(self, x: Tensor) -> Tensor:
        """The model's outputs for index pairs `x` `(n, 2)` as `(n,)` floats on the CPU."""
        with eval_mode(self.model), torch.no_grad():
            out = self.model(x.to(self.dls.device))  # (n, 1)
        act = getattr(self.loss_func, "activation", None)
        out = act(out) if act is not None else out
        return out.float().reshape(-1).cpu()

    def recommend(self, user: Any, n: int = 10, exclude: Iterable | None = None) -> pd.DataFrame:
        """The `n` items with the highest predicted rating for `user` that they have not rated (in the
        table the loaders were built from) and not in `exclude`; columns: item name, `prediction`.
        An unknown user gets the items ranked by bias alone.

        >>> learn.recommend(15, n=5)  # doctest: +SKIP
        """
        items = torch.arange(1, len(self.dls.items))  # every real item, not the reserved row 0
        x = torch.stack([self.dls.users.encode([user]).expand_as(items), items], dim=1)  # (n_items - 1, 2)
        scores = self._scores(x)  # (n_items - 1,)
        seen = self.dls.items.encode([*self.dls.rated_by(user), *(exclude or [])])
        seen = seen[seen > 0] - 1  # positions in `items`
        scores[seen] = -torch.inf
        top = scores.topk(min(n, len(scores) - len(seen.unique())))
        names = self.dls.items.decode(items[top.indices])
        return pd.DataFrame({self.dls.item_name: names, "prediction": top.values.tolist()})

    # ---- interpretation --------------------------------------------------------------------------
    def item_factors(self) -> Tensor:
        """Every item's latent factors `(n_items, n_factors)` (row 0 is the reserved one), detached."""
        if isinstance(self.model, EmbeddingDotBias):
            return self.model.i_weight.weight.detach().cpu()
        if isinstance(self.model, EmbeddingNN):
            return self.model.embeds[1].weight.detach().cpu()
        raise TypeError(
            f"item_factors knows EmbeddingDotBias and EmbeddingNN, not {type(self.model).__name__}"
        )

    def items_by_bias(self, n: int = 5, largest: bool = True) -> list:
        """The names of the `n` items with the largest (or, `largest=False`, smallest) learned bias.

        >>> learn.items_by_bias(5, largest=False)  # doctest: +SKIP
        """
        if not isinstance(self.model, EmbeddingDotBias):
            raise TypeError(f"only EmbeddingDotBias has item biases, not {type(self.model).__name__}")
        bias = self.model.i_bias.weight.detach().cpu()[1:, 0]  # (n_items - 1,): skip the reserved row
        idx = bias.topk(min(n, len(bias)), largest=largest).indices + 1
        return self.dls.items.decode(idx)

    def most_similar(self, item: Any, n: int = 5) -> pd.DataFrame:
        """The `n` items whose factors are closest to `item`'s by cosine similarity.

        >>> learn.most_similar("Silence of the Lambs, The")  # doctest: +SKIP
        """
        i = int(self.dls.items.encode_known([item])[0])
        idx, sims = cosine_neighbours(self.item_factors(), i, n, skip=1)
        return pd.DataFrame({self.dls.item_name: self.dls.items.decode(idx), "similarity": sims.tolist()})

    def plot_item_pca(self, n: int = 50, items: list | None = None, components: tuple[int, int] = (0, 1)):
        """Scatter plot of item factors on two of their first three principal components, labelled by
        name. The components are those of the 1,000 most-rated items (plus any `items` given);
        `items` defaults to the `n` most-rated.

        >>> learn.plot_item_pca(n=50, components=(0, 2))  # doctest: +SKIP
        """
        import matplotlib.pyplot as plt

        popular = self.dls.most_rated(1000)
        shown = items if items is not None else popular[:n]
        in_popular = set(popular)
        names = popular + [it for it in shown if it not in in_popular]
        coords = pca(self.item_factors()[self.dls.items.encode_known(names)], 3)  # (len(names), 3)
        rows = [names.index(it) for it in shown]
        xs, ys = coords[rows, components[0]].tolist(), coords[rows, components[1]].tolist()
        fig, ax = plt.subplots(figsize=(12, 12))
        ax.scatter(xs, ys)
        for name, x, y in zip(shown, xs, ys):
            ax.text(x, y, str(name), fontsize=9)
        ax.set_xlabel(f"component {components[0]}")
        ax.set_ylabel(f"component {components[1]}")
        return fig


def _warn_unknown(x: Tensor, user_name: str, item_name: str) -> None:
    n_users, n_items = int((x[:, 0] == 0).sum()), int((x[:, 1] == 0).sum())
    if n_users or n_items:
        warnings.warn(
            f"{n_users} of {len(x)} pair(s) have a {user_name!r} and {n_items} an {item_name!r} not seen in "
            "training; they use the reserved index 0 (see ember.collab.learner for what that predicts)",
            stacklevel=3,
        )


def _emb_szs(dls: CollabDataLoaders, overrides: dict[str, int] | None) -> list[tuple[int, int]]:
    """`(n_categories, width)` for the user then the item column, by `emb_sz_rule` unless overridden."""
    overrides = overrides or {}
    unknown = set(overrides) - {dls.user_name, dls.item_name}
    if unknown:
        raise KeyError(
            f"emb_szs names {sorted(unknown)}; the columns are {dls.user_name!r}, {dls.item_name!r}"
        )
    vocabs = (dls.users, dls.items)
    return [(len(v), overrides.get(v.column, emb_sz_rule(len(v)))) for v in vocabs]


def _check_y_range(y_range: tuple[float, float] | None, dls: CollabDataLoaders) -> None:
    if y_range is None:
        return
    lo, hi = y_range
    if lo >= hi:
        raise ValueError(f"y_range must be (low, high) with low < high, got {y_range}")
    r_lo, r_hi = dls.rating_range
    if r_lo < lo or r_hi > hi:
        bad = r_lo if r_lo < lo else r_hi
        pad = 0.1 * (r_hi - r_lo) or 0.5
        raise ValueError(
            f"y_range {y_range} does not contain the ratings: {dls.rating_name!r} has the value {bad} "
            f"(ratings span {r_lo:g} to {r_hi:g}); reach a little past both ends, e.g. "
            f"({r_lo - pad:.2f}, {r_hi + pad:.2f})"
        )


def collab_learner(
    dls: CollabDataLoaders,
    n_factors: int = 50,
    use_nn: bool = False,
    emb_szs: dict[str, int] | None = None,
    layers: list[int] | None = None,
    config: dict[str, Any] | None = None,
    y_range: tuple[float, float] | None = None,
    loss_func: Any = None,
    **kwargs: Any,
) -> CollabLearner:
    """A `CollabLearner` with `EmbeddingDotBias` (`n_factors` wide), or `EmbeddingNN` when `use_nn`.

    For the neural model, `emb_szs` overrides the `emb_sz_rule` widths by column name, `layers`
    defaults to `[100, 50]` and `config` holds its other arguments (`ps`, `embed_p`, `use_bn`). The
    loss defaults to `MSELossFlat()`; `kwargs` go to `Learner`. Predictions lie strictly inside
    `y_range` (a sigmoid), so let it reach a little past the highest rating, e.g. (0, 5.5) for 0.5-5.

    >>> learn = collab_learner(dls, n_factors=50, y_range=(0, 5.5))  # doctest: +SKIP
    >>> learn.fit_one_cycle(5, 5e-3, wd=0.1)  # doctest: +SKIP
    """
    _check_y_range(y_range, dls)
    yr = None if y_range is None else [float(y_range[0]), float(y_range[1])]
    if use_nn:
        szs = _emb_szs(dls, emb_szs)
        model: torch.nn.Module = EmbeddingNN(szs, layers or [100, 50], y_range=y_range, **(config or {}))
        recipe = {"type": "EmbeddingNN", "emb_szs": [list(s) for s in szs],
                  "layers": list(layers or [100, 50]), "y_range": yr, **(config or {})}  # fmt: skip
    else:
        if config or emb_szs or layers:
            raise ValueError("emb_szs, layers and config are for the neural model: pass use_nn=True")
        model = EmbeddingDotBias.from_vocabs(n_factors, dls.users, dls.items, y_range)
        recipe = {"type": "EmbeddingDotBias", "n_factors": n_factors, "n_users": len(dls.users),
                  "n_items": len(dls.items), "y_range": yr}  # fmt: skip
    learn = CollabLearner(
        dls, model, loss_func=loss_func if loss_func is not None else MSELossFlat(), **kwargs
    )
    learn.model_config = recipe  # what learn.export needs to rebuild the model (ember.collab.app)
    return learn
