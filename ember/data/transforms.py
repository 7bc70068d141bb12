"""Transforms of a data pipeline, the `Pipeline` that runs them in order, and the kinds of values.

Every value in an item travels with its *kind*, a string tag set by its block. The core declares the
kinds it knows (`"category"`, `"multicategory"`, `"regression"`, `"other"`); an application declares its
own with `register_kind` (vision: `"image"`, `"mask"`, `"points"`, in `ember.vision.kinds`). A transform
reads the kinds to treat each value right (vision's `Resize` resamples an image bilinearly, its mask with
nearest neighbour, and moves its points); the core only passes the tags along and checks that each is
declared. This is plain data, not type dispatch: grep for `kinds` to see every place that branches on it.

Item transforms run per item on the CPU; batch transforms run per batch on the batch's device. Both share
one protocol:

>>> class Double(Transform):
...     def encodes(self, values, kinds, split_idx):
...         return tuple(v * 2 if k == REGRESSION else v for v, k in zip(values, kinds))
"""

from __future__ import annotations

from collections.abc import Sequence

from ember.data.errors import DataError

__all__ = [
    "CATEGORY",
    "MULTI_CATEGORY",
    "OTHER",
    "REGRESSION",
    "Pipeline",
    "Transform",
    "register_kind",
    "registered_kinds",
    "with_kind",
]

_KINDS: dict[str, str] = {}


def register_kind(tag: str, what: str) -> str:
    """Declare a kind of value, with what it is, and return its tag: how an application adds its kinds.

    >>> TEXT = register_kind("text", "a string, then a tensor of token ids")  # doctest: +SKIP
    >>> TransformBlock(type_tfms=[tokenize], kind=TEXT)  # doctest: +SKIP

    Declaring a tag again with the same description is fine (a module imported twice); with another
    description it is an error, as two applications would be reading each other's values.
    """
    if _KINDS.get(tag, what) != what:
        raise ValueError(f"register_kind: the kind {tag!r} is already declared as {_KINDS[tag]!r}")
    _KINDS[tag] = what
    return tag


def registered_kinds() -> dict[str, str]:
    """Every declared kind and what it is."""
    return dict(_KINDS)


CATEGORY = register_kind("category", "one label, then its index in the vocabulary")
MULTI_CATEGORY = register_kind("multicategory", "a list of labels, then a one-hot vector")
REGRESSION = register_kind("regression", "one or more numbers, then a float tensor")
OTHER = register_kind("other", "anything no transform looks at")

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

    >>> pipe = Pipeline([Double()], kinds=(CATEGORY, REGRESSION), split_idx=0)
    >>> pipe(("cat", 2.0))
    ('cat', 4.0)

    Every kind must be declared (`register_kind`): a misspelt one would pass every transform untouched.
    """

    def __init__(self, tfms: Sequence[Transform], kinds: Sequence[str], split_idx: int) -> None:
        for k in kinds:
            _check_kind(k)
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


def _check_kind(kind: str) -> None:
    if kind not in _KINDS:
        raise DataError(
            f"unknown kind {kind!r}; the declared kinds are {sorted(_KINDS)}. A block's kind is declared "
            "with ember.data.transforms.register_kind (an application's module does it when imported)"
        )


def with_kind(kinds: tuple[str, ...], kind: str) -> list[int]:
    """Indices of the values of one kind: `with_kind((CATEGORY, REGRESSION), REGRESSION) == [1]`."""
    return [i for i, k in enumerate(kinds) if k == kind]
