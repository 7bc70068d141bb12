"""The training loop's events, the `Callback` base class and the cancel exceptions.

Every event is declared once, in `EVENTS`. A callback defining a method that looks like an event
(`before_*` / `after_*` / `cleanup*`) but is not one fails when its class is defined, so a misspelt
`after_bacth` is an error instead of a hook that silently never runs.

`cleanup` is the one event that runs whatever happens: last of all, when `fit`, `validate` or `get_preds`
ends, also when it ends by an error or a KeyboardInterrupt. A callback undoes there what it set up
(autocast, a progress bar, lr_find's trial weights), so the learner is usable after any exception.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ember.learner.learner import Learner

__all__ = [
    "EVENTS",
    "Callback",
    "CancelBatchException",
    "CancelEpochException",
    "CancelException",
    "CancelFitException",
    "CancelTrainException",
    "CancelValidException",
]

# In the order the loop emits them: fit > epoch > (train, validate) > batch.
EVENTS: tuple[str, ...] = (
    "before_fit",
    "before_epoch",
    "before_train",
    "before_batch",
    "after_pred",
    "after_loss",
    "before_backward",
    "after_backward",
    "after_step",
    "after_cancel_batch",
    "after_batch",
    "after_cancel_train",
    "after_train",
    "before_validate",
    "after_cancel_validate",
    "after_validate",
    "after_cancel_epoch",
    "after_epoch",
    "after_cancel_fit",
    "after_fit",
    "cleanup",
)


class CancelException(Exception):
    """Base of the exceptions a callback raises to skip the rest of a stage."""


class CancelBatchException(CancelException):
    """Skip the rest of this batch, the later hooks of the event that raised it included (its
    `after_cancel_batch` and `after_batch` still run). The wider cancels below are raised only once
    every hook of their event has run."""


class CancelTrainException(CancelException):
    """Skip the rest of this epoch's training pass."""


class CancelValidException(CancelException):
    """Skip this epoch's validation pass."""


class CancelEpochException(CancelException):
    """Skip the rest of this epoch."""


class CancelFitException(CancelException):
    """Stop training (`after_cancel_fit` and `after_fit` still run)."""


# From the widest stage to the narrowest: when hooks of one event cancel differently, the widest wins,
# whatever the order of the callbacks.
_WIDEST_FIRST = (
    CancelFitException,
    CancelEpochException,
    CancelTrainException,
    CancelValidException,
)


def widest_cancel(cancels: list[CancelException]) -> CancelException:
    """The cancel of the widest stage among `cancels` (a fit's cancel beats an epoch's, and so on)."""

    def rank(e: CancelException) -> int:
        return next((i for i, c in enumerate(_WIDEST_FIRST) if isinstance(e, c)), len(_WIDEST_FIRST))

    return min(cancels, key=rank)


def _snake(name: str) -> str:
    name = re.sub(r"Callback$", "", name) or name
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


class Callback:
    """Base class: subclass it, set `order`, define hook methods named after events (no arguments).

    The learner sets `self.learn` when the callback is added. Lower `order` runs first.

    >>> class PrintLoss(Callback):
    ...     def after_epoch(self):
    ...         print(self.learn.epoch, self.learn.recorder.log)
    """

    order: int = 0
    # True for a callback whose fit is a trial undone at its end (lr_find's LRFinder): the Recorder keeps
    # such a fit out of its history and CheckpointCallback writes nothing during it.
    undoes_fit: bool = False
    learn: Learner

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        for attr in vars(cls):
            if re.match(r"(before_|after_|cleanup)", attr) and attr not in EVENTS:
                raise TypeError(
                    f"{cls.__name__}.{attr} looks like an event hook but is not an event. "
                    f"Events are: {', '.join(EVENTS)}"
                )

    @property
    def name(self) -> str:
        """The class name in snake case without `Callback`: `SaveModelCallback` -> `save_model`."""
        return _snake(type(self).__name__)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(order={self.order})"
