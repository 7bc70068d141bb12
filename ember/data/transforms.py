"""Transforms of a data pipeline, and the `Pipeline` that runs them in order.

Every value in an item travels with its *kind*, a string set by its block (`"image"`, `"mask"`,
`"points"`, `"category"`, ...). A transform reads the kinds to treat each value right: `Resize`
resamples an image bilinearly, its mask with nearest neighbour, and moves its points. This is plain
data, not type dispatch: grep for `kinds` to see every place that branches on it.

Item transforms run per item on the CPU (PIL images, small tensors); batch transforms run per batch
on the batch's device. Both share one protocol:

>>> class Double(Transform):
...     def encodes(self, values, kinds, split_idx):
...         return tuple(v * 2 if k == "regression" else v for v, k in zip(values, kinds))
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "CATEGORY",
    "IMAGE",
    "MASK",
    "MULTI_CATEGORY",
    "OTHER",
    "POINTS",
    "REGRESSION",
    "Pipeline",
    "Transform",
    "with_kind",
]

IMAGE, MASK, POINTS = "image", "mask", "points"
CATEGORY, MULTI_CATEGORY, REGRESSION, OTHER = "category", "multicategory", "regression", "other"

TRAIN, VALID = 0, 1


class Transform:
    """Base class. Subclasses implement `encodes` (and `decodes` when the change can be undone).

    `order` sorts transforms within a pipeline (lower first). `split_idx` restricts a transform to
    the training set (0) or the validation set (1); None runs it on both. `encodes` also receives the
    split, for transforms that behave differently on each (a random crop on training, a centre crop on
    validation).
    """

    order: int = 0
    split_idx: int | None = None

    def encodes(self, values: tuple, kinds: tuple[str, ...], split_idx: int) -> tuple:
        raise NotImplementedError(f"{type(self).__name__} must define encodes(values, kinds, split_idx)")

    def decodes(self, values: tuple, kinds: tuple[str, ...]) -> tuple:
        """Undo `encodes` for display; the default leaves values as they are."""
        return values

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Pipeline:
    """Transforms sorted by `order`, applied to one split's items or batches.

    >>> pipe = Pipeline([Double()], kinds=("image", "regression"), split_idx=0)  # doctest: +SKIP
    >>> pipe((img, 2.0))  # doctest: +SKIP
    """

    def __init__(self, tfms: Sequence[Transform], kinds: Sequence[str], split_idx: int) -> None:
        self.kinds, self.split_idx = tuple(kinds), split_idx
        self.tfms = [t for t in sorted(tfms, key=lambda t: t.order) if t.split_idx in (None, split_idx)]

    def __call__(self, values: Sequence) -> tuple:
        values = tuple(values)  # torch's collate gives a list
        for t in self.tfms:
            try:
                values = t.encodes(values, self.kinds, self.split_idx)
            except Exception as e:
                e.add_note(f"(in transform {t!r})")
                raise
        return values

    def decode(self, values: tuple) -> tuple:
        """Undo the transforms, last first, as far as each can be undone."""
        for t in reversed(self.tfms):
            values = t.decodes(values, self.kinds)
        return values

    def __repr__(self) -> str:
        return f"Pipeline({', '.join(map(repr, self.tfms))})"


def with_kind(kinds: tuple[str, ...], kind: str) -> list[int]:
    """Indices of the values of one kind: `with_kind(("image", "mask"), "mask") == [1]`."""
    return [i for i, k in enumerate(kinds) if k == kind]
