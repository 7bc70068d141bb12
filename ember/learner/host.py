"""The part of the Learner that holds its callbacks and emits the loop's events to them.

`Learner` is a `CallbackHost`: `learn.cbs`, `add_cbs`, `remove_cbs`, `added_cbs` / `removed_cbs` (for a
`with` block), `learn("event")` and `show_loop()` come from here; the loop itself is in `learner.py`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Self

from ember.callbacks.core import EVENTS, Callback, CancelBatchException, CancelException, widest_cancel
from ember.core.utils import listify

__all__ = ["CallbackHost"]


class CallbackHost:
    """Callbacks, ordered by their `order`, and the hooks each event runs.

    >>> with learn.added_cbs(GradientClip(1.0)):  # doctest: +SKIP
    ...     learn.fit(1)
    """

    cbs: list[Callback]
    _hooks: dict[str, list[tuple[Callback, Any]]]

    def add_cbs(self, cbs: Sequence[Callback]) -> Self:
        """Add callbacks (instances); each gets `cb.learn`, this learner."""
        for cb in cbs:
            if isinstance(cb, type):
                raise TypeError(f"got the class {cb.__name__}, not an instance: pass {cb.__name__}()")
            cb.learn = self
            self.cbs.append(cb)
        self._index_hooks()
        return self

    def add_cb(self, cb: Callback) -> Self:
        return self.add_cbs([cb])

    def remove_cbs(self, cbs: Sequence[Callback]) -> Self:
        for cb in cbs:
            self.cbs.remove(cb)
        self._index_hooks()
        return self

    def remove_cb(self, cb: Callback) -> Self:
        return self.remove_cbs([cb])

    @contextlib.contextmanager
    def added_cbs(self, cbs: Callback | Sequence[Callback] | None) -> Iterator[Self]:
        """Add callbacks for the duration of a `with` block."""
        cbs = listify(cbs)
        self.add_cbs(cbs)
        try:
            yield self
        finally:
            self.remove_cbs(cbs)

    @contextlib.contextmanager
    def removed_cbs(self, cbs: Callback | Sequence[Callback]) -> Iterator[Self]:
        """Leave callbacks out for the duration of a `with` block."""
        cbs = listify(cbs)
        self.remove_cbs(cbs)
        try:
            yield self
        finally:
            self.add_cbs(cbs)

    def _index_hooks(self) -> None:
        # Resolved once per change of callbacks, so emitting an event is a list walk.
        ordered = sorted(self.cbs, key=lambda cb: cb.order)
        self._hooks = {e: [(cb, getattr(cb, e)) for cb in ordered if hasattr(cb, e)] for e in EVENTS}

    def __call__(self, event: str) -> None:
        """Emit `event`: run every callback's hook for it, in order. A cancel of the fit, epoch, training
        or validation is raised once all of the event's hooks have run (the widest, if several cancel), so
        every callback sees the epoch that early stopping ended, whichever was listed first. A batch's
        cancel is raised at once: it skips the rest of the batch, the later hooks of its event included
        (GradientAccumulation keeps the unscale and the clipping off a partial sum that way)."""
        hooks = self._hooks.get(event)
        if hooks is None:
            raise ValueError(f"unknown event {event!r}. Events are: {', '.join(EVENTS)}")
        cancels = None
        for cb, hook in hooks:
            try:
                hook()
            except CancelBatchException:
                raise
            except CancelException as e:
                cancels = [*(cancels or []), e]
            except Exception as e:
                e.add_note(f"(raised in callback {type(cb).__name__}, event {event})")
                raise
        if cancels:
            raise widest_cancel(cancels)

    def show_loop(self) -> None:
        """Print the loop's events and the callbacks hooked to each."""
        for e in EVENTS:
            names = ", ".join(type(cb).__name__ for cb, _ in self._hooks[e])
            print(f"{e:<22} {names}")
