"""What every attribution method starts from: the model, its input batch, and which output to explain."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from ember.core.utils import eval_mode
from ember.interpret.errors import UnknownTargetError, listing
from ember.learner.contracts import CanMakeTestLoader, require

Target = int | str | Sequence[int | str] | Tensor | None


def model_of(learn: Any) -> nn.Module:
    """A Learner's model, or the model itself (the functions take either)."""
    return learn if isinstance(learn, nn.Module) else learn.model


def input_batch(learn: Any, item: Any, xb: Tensor | None, method: str) -> tuple[Tensor, bool]:
    """`(xb, one_item)`: the ready batch `xb` on the model's device, or `item` (what `learn.predict`
    takes) through the validation transforms as a batch of one."""
    model = model_of(learn)
    device = next(model.parameters()).device
    if xb is not None:
        if item is not None:
            raise ValueError(f"{method}: pass an item or a ready batch xb=..., not both")
        return xb.to(device), False
    if item is None:
        raise ValueError(f"{method}: nothing to explain; pass an item (a file, an image) or xb=<a batch>")
    if isinstance(learn, nn.Module):
        raise ValueError(
            f"{method}: a bare model cannot read {type(item).__name__} items; pass the Learner, or the "
            "model's ready input batch as xb=..."
        )
    require(
        learn.dls, CanMakeTestLoader, method, f"pass the model's ready input batch: {method}(learn, xb=...)"
    )
    xb = learn.dls.test_dl([item], with_getters=False).one_batch()[0]
    return xb.to(device), True


def vocab_of(learn: Any) -> list | None:
    vocab = None if isinstance(learn, nn.Module) else getattr(learn.dls, "vocab", None)
    return list(vocab) if vocab is not None else None


def target_indices(learn: Any, out: Tensor, target: Target) -> Tensor:
    """The output index to explain for each of the `n` rows of `out` (n, k): the largest output
    (the predicted class) when `target` is None; an int is an output index, a str a label of
    `learn.dls.vocab`; one target for the whole batch, or one per row."""
    n, k = out.shape
    if target is None:
        return out.argmax(1)
    if isinstance(target, Tensor):
        target = target.tolist()
    targets = list(target) if isinstance(target, Sequence) and not isinstance(target, str) else [target] * n
    if len(targets) != n:
        raise ValueError(f"{len(targets)} targets for a batch of {n}; give one target, or one per item")
    vocab = vocab_of(learn)
    return torch.tensor([_index(t, vocab, k) for t in targets], device=out.device)


def _index(t: int | str, vocab: list | None, k: int) -> int:
    names = [str(v) for v in vocab] if vocab is not None else None
    if isinstance(t, str):
        if names is None or t not in names:
            known = f"the vocabulary is {listing(names, 10, 10)}" if names else "the data has no vocabulary"
            raise UnknownTargetError(
                f"target {t!r} is not a class of this model: {known}. Pass a label from learn.dls.vocab, "
                f"or an output index 0..{k - 1}"
            )
        return names.index(t)
    if not -k <= int(t) < k:
        labels = f" ({listing(names, 10, 10)})" if names else ""
        raise UnknownTargetError(
            f"target {t} is outside the model's {k} outputs: pass an index 0..{k - 1}{labels}, or a label"
        )
    return int(t) % k


def scores(out: Tensor, idx: Tensor) -> Tensor:
    """The explained output of each row: `out[i, idx[i]]` (n,)."""
    return out.gather(1, idx[:, None])[:, 0]


def flat_output(out: Any) -> Tensor:
    """The model's output as (n, k): a regression's (n,) becomes (n, 1)."""
    if not isinstance(out, Tensor):
        raise TypeError(
            f"the model returns a {type(out).__name__}; attribution needs one tensor of outputs (n, k). "
            "Wrap the model so that it returns the output to explain"
        )
    return out.reshape(len(out), -1)


@contextlib.contextmanager
def explaining(model: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout, BatchNorm's running statistics, so each item is explained on its own)
    with gradients on, also inside a `torch.no_grad()` block. Each module's mode is restored after (a
    frozen model may keep some BatchNorm layers in eval mode while the rest trains)."""
    with eval_mode(model), torch.enable_grad():
        yield
