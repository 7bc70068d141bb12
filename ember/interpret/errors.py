"""What interpretation can be asked that a model cannot answer, each with a message saying what to do.

>>> gradcam(learn, "cat.jpg", layer="body.9")  # doctest: +SKIP
LayerNotFoundError: Sequential has no layer named 'body.9'; did you mean '0.7'? ...
"""

from __future__ import annotations

__all__ = ["LayerNotFoundError", "NoConvLayerError", "UnknownTargetError"]


class LayerNotFoundError(LookupError):
    """A layer, named by a dotted name, a conv index or a module, that the model does not have; the
    message lists the names it does have."""


class NoConvLayerError(ValueError):
    """Grad-CAM was asked of a model (or a layer) that puts out no convolutional feature maps."""


class UnknownTargetError(LookupError):
    """A target class that is not in the vocabulary, or an output index the model does not have."""


def listing(names: list[str], head: int = 4, tail: int = 8) -> str:
    """`names` quoted and joined; a long list keeps its first `head` and last `tail` (the deep layers
    at the end are the ones Grad-CAM usually wants), saying how many were left out.

    >>> listing([str(i) for i in range(20)], 2, 2)
    "'0', '1', ... (16 more) ..., '18', '19'"
    """
    if len(names) <= head + tail + 1:
        return ", ".join(repr(n) for n in names)
    shown = [
        *map(repr, names[:head]),
        f"... ({len(names) - head - tail} more) ...",
        *map(repr, names[-tail:]),
    ]
    return ", ".join(shown)
