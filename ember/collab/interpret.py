"""Looking inside learned factors: principal components and nearest neighbours by cosine similarity.

These are plain functions on tensors (ember has no tensor subclasses), so the course's
`learn.model.weight(items).pca(3)` is written `pca(learn.model.weight(items), 3)`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["cosine_neighbours", "pca"]


def pca(x: Tensor, k: int = 3) -> Tensor:
    """The rows of `x` `(n, d)` projected on their first `k` principal components, `(n, k)`.

    Each component's sign is chosen so its largest-magnitude loading is positive (an SVD's signs are
    otherwise arbitrary), so the same factors always give the same picture.

    >>> pca(torch.randn(100, 50), 3).shape
    torch.Size([100, 3])
    """
    if not 1 <= k <= min(x.shape):
        raise ValueError(
            f"pca: k must be between 1 and {min(x.shape)} for a {tuple(x.shape)} tensor, got {k}"
        )
    centred = x.float() - x.float().mean(0)  # (n, d)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)  # vh: (min(n, d), d), rows = components
    comps = vh[:k]  # (k, d)
    signs = comps.gather(1, comps.abs().argmax(1, keepdim=True)).sign()  # (k, 1)
    return centred @ (comps * signs).T  # (n, k)


def cosine_neighbours(x: Tensor, i: int, n: int = 5, skip: int = 0) -> tuple[Tensor, Tensor]:
    """The `n` rows of `x` most similar to row `i` by cosine similarity, not counting row `i` itself
    or rows below `skip`: `(indices, similarities)`, most similar first.

    >>> x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    >>> cosine_neighbours(x, 0, n=1)[0].tolist()
    [1]
    """
    sims = F.cosine_similarity(x[i].unsqueeze(0), x, dim=1)  # (n_rows,)
    sims[i] = -torch.inf
    sims[:skip] = -torch.inf
    top = sims.topk(min(n, int(torch.isfinite(sims).sum())))
    return top.indices, top.values
