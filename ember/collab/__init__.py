"""ember.collab: collaborative filtering, learning latent factors for users and items from ratings.

The lesson's recipe, with `ratings` a table of user, item and rating columns:

    from ember.collab.all import *
    dls = CollabDataLoaders.from_df(ratings, item_name="title", bs=64)
    learn = collab_learner(dls, n_factors=50, y_range=(0, 5.5))
    learn.fit_one_cycle(5, 5e-3, wd=0.1)

Fast settings, about 8x quicker on a CPU for the same validation RMSE on MovieLens (100k ratings):
`bs=384, val_bs=4096`, `n_factors=16`, `fit_one_cycle(5, 1e-2, wd=0.3)`. Batches are slices of
pre-built tensors, so what costs time is the optimizer, which updates every embedding row at every
step: fewer, larger steps and narrower tables cut it (see bench/README.md for the figures).
"""

import ember.collab.app  # noqa: E402, F401, I001  registers collab with export, load_learner, the server and the report
from ember.collab.data import CollabDataLoaders
from ember.collab.interpret import cosine_neighbours, pca
from ember.collab.learner import CollabLearner, collab_learner
from ember.collab.models import EmbeddingDotBias, EmbeddingNN, emb_sz_rule
from ember.collab.vocab import CollabVocab

__all__ = [
    "CollabDataLoaders",
    "CollabLearner",
    "CollabVocab",
    "EmbeddingDotBias",
    "EmbeddingNN",
    "collab_learner",
    "cosine_neighbours",
    "emb_sz_rule",
    "pca",
]
