"""Recommender models: dot product of latent factors plus biases, and a neural net on embeddings.

Row 0 of every embedding is the reserved "unknown" row (see `CollabVocab`). It starts at exactly zero
and no training row maps to it, so it gets no gradient and stays zero (weight decay keeps zero at zero).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ember.collab.vocab import CollabVocab
from ember.models.layers import Embedding, Module, SigmoidRange, sigmoid_range

__all__ = ["EmbeddingDotBias", "EmbeddingNN", "emb_sz_rule"]


def emb_sz_rule(n_cat: int) -> int:
    """The rule of thumb for an embedding's width given `n_cat` categories: `min(600, round(1.6 * n**0.56))`.

    >>> emb_sz_rule(672), emb_sz_rule(9067)
    (61, 263)
    """
    return min(600, round(1.6 * n_cat**0.56))


def _zero_reserved_row(*embs: nn.Embedding) -> None:
    with torch.no_grad():
        for e in embs:
            e.weight[0].zero_()


class EmbeddingDotBias(Module):
    """Rating = dot(user factors, item factors) + user bias + item bias, squashed into `y_range`.

    `x` is `(bs, 2)`: user index, item index; the output is `(bs, 1)`. Built by `from_vocabs`, it also
    looks users and items up by name (`bias`, `weight`).

    >>> model = EmbeddingDotBias(50, n_users=672, n_items=9067, y_range=(0, 5.5))
    >>> model(torch.tensor([[1, 2], [3, 4]])).shape
    torch.Size([2, 1])
    """

    def __init__(
        self, n_factors: int, n_users: int, n_items: int, y_range: tuple[float, float] | None = None
    ) -> None:
        self.u_weight, self.i_weight = Embedding(n_users, n_factors), Embedding(n_items, n_factors)
        self.u_bias, self.i_bias = Embedding(n_users, 1), Embedding(n_items, 1)
        _zero_reserved_row(self.u_weight, self.i_weight, self.u_bias, self.i_bias)
        self.y_range = y_range
        self.vocabs: tuple[CollabVocab, CollabVocab] | None = None  # (users, items), set by from_vocabs

    @classmethod
    def from_vocabs(
        cls,
        n_factors: int,
        users: CollabVocab,
        items: CollabVocab,
        y_range: tuple[float, float] | None = None,
    ) -> EmbeddingDotBias:
        """A model sized for the vocabularies, which it keeps to look names up.

        >>> model = EmbeddingDotBias.from_vocabs(50, dls.users, dls.items, (0, 5.5))  # doctest: +SKIP
        """
        model = cls(n_factors, len(users), len(items), y_range)
        model.vocabs = (users, items)
        return model

    def forward(self, x: Tensor) -> Tensor:
        users, items = x[:, 0], x[:, 1]  # (bs,), (bs,)
        dot = (self.u_weight(users) * self.i_weight(items)).sum(1, keepdim=True)  # (bs, 1)
        res = dot + self.u_bias(users) + self.i_bias(items)  # (bs, 1)
        return res if self.y_range is None else sigmoid_range(res, *self.y_range)

    def _indices(self, names: Sequence, is_item: bool) -> Tensor:
        if self.vocabs is None:
            raise ValueError(
                "this model has no vocabularies to look names up: build it with "
                "EmbeddingDotBias.from_vocabs(...) or collab_learner, or index its embeddings directly"
            )
        vocab = self.vocabs[1] if is_item else self.vocabs[0]
        return vocab.encode_known(list(names)).to(self.u_bias.weight.device)

    def bias(self, names: Sequence, is_item: bool = True) -> Tensor:
        """The learned biases of items (or users, with `is_item=False`) given by name, `(n,)`, detached.

        >>> learn.model.bias(["Star Wars: Episode IV - A New Hope"], is_item=True)  # doctest: +SKIP
        """
        layer = self.i_bias if is_item else self.u_bias
        return layer(self._indices(names, is_item)).squeeze(1).detach()

    def weight(self, names: Sequence, is_item: bool = True) -> Tensor:
        """The latent factors of items (or users) given by name, `(n, n_factors)`, detached."""
        layer = self.i_weight if is_item else self.u_weight
        return layer(self._indices(names, is_item)).detach()


class EmbeddingNN(Module):
    """A neural recommender: the embeddings of each id column, concatenated, through an MLP.

    `emb_szs` is one `(n_categories, width)` pair per column of `x` (user then item). Each hidden layer
    is Linear -> ReLU -> BatchNorm (`use_bn`) -> Dropout (`ps`, one per layer or one for all).

    >>> model = EmbeddingNN([(672, 62), (9067, 264)], layers=[100, 50], y_range=(0, 5.5))
    >>> model(torch.tensor([[1, 2], [3, 4]])).shape
    torch.Size([2, 1])
    """

    def __init__(
        self,
        emb_szs: Sequence[tuple[int, int]],
        layers: Sequence[int],
        ps: float | Sequence[float] = 0.0,
        embed_p: float = 0.0,
        y_range: tuple[float, float] | None = None,
        use_bn: bool = True,
    ) -> None:
        self.embeds = nn.ModuleList([Embedding(n, w) for n, w in emb_szs])
        _zero_reserved_row(*self.embeds)
        self.emb_drop = nn.Dropout(embed_p)
        ps = [ps] * len(layers) if isinstance(ps, int | float) else list(ps)
        if len(ps) != len(layers):
            raise ValueError(f"EmbeddingNN: got {len(ps)} dropout values for {len(layers)} layers")
        sizes = [sum(w for _, w in emb_szs), *layers]
        blocks: list[nn.Module] = []
        for n_in, n_out, p in zip(sizes[:-1], sizes[1:], ps):
            blocks += _hidden_layer(n_in, n_out, p, use_bn)
        blocks.append(nn.Linear(sizes[-1], 1))
        if y_range is not None:
            blocks.append(SigmoidRange(*y_range))
        self.layers = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        emb = torch.cat([e(x[:, i]) for i, e in enumerate(self.embeds)], dim=1)  # (bs, sum of widths)
        return self.layers(self.emb_drop(emb))  # (bs, 1)


def _hidden_layer(n_in: int, n_out: int, p: float, use_bn: bool) -> list[nn.Module]:
    layer: list[nn.Module] = [nn.Linear(n_in, n_out), nn.ReLU()]
    if use_bn:
        layer.append(nn.BatchNorm1d(n_out))
    if p > 0:
        layer.append(nn.Dropout(p))
    return layer
