"""Micro-batching: requests that arrive together share one forward pass, run off the event loop.

One worker thread runs every forward, so the model is never used by two threads at once. While it
runs, new requests queue up; the next forward takes all of them (up to `max_batch`), after waiting at
most `max_wait_ms` for more to arrive. With `max_batch=1` each request gets a forward of its own.

The queue is bounded: with `max_queue` items waiting, `submit` raises `QueueFull` at once (the server
answers 503 with Retry-After) instead of letting waits and memory grow without end. A `timeout_s`
gives up on an item not answered in time (`TimedOut`); an item still queued is then dropped unrun.
A forward that fails on several items is run again one item at a time, so a bad item fails only
its own request.

>>> async def main():
...     batcher = MicroBatcher(lambda xs: [x * 2 for x in xs], max_batch=16, max_wait_ms=2)
...     await batcher.start()
...     results = await batcher.submit_many([0, 1, 2, 3])
...     await batcher.stop()
...     return results, batcher.batch_sizes
>>> asyncio.run(main())
([0, 2, 4, 6], [4])
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

__all__ = ["Busy", "MicroBatcher", "QueueFull", "TimedOut"]

In = TypeVar("In")
Out = TypeVar("Out")


class Busy(RuntimeError):
    """The server is too busy to answer this item now; try again in `retry_after_s` seconds."""

    retry_after_s = 1


class QueueFull(Busy):
    """`max_queue` items are already waiting for the model."""


class TimedOut(Busy):
    """The item was not answered within its `timeout_s`."""


class MicroBatcher(Generic[In, Out]):
    """Call `fn(items) -> results` (one result per item, in order) on batches of submitted items.

    Start it with `await batcher.start()` inside the running event loop, then `await batcher.submit(x)`
    from any request; `await batcher.stop()` at shut-down.
    """

    def __init__(
        self,
        fn: Callable[[list[In]], list[Out]],
        max_batch: int = 16,
        max_wait_ms: float = 2.0,
        max_queue: int = 64,
    ):
        for name, value in (("max_batch", max_batch), ("max_queue", max_queue)):
            if value < 1:
                raise ValueError(f"MicroBatcher: {name} must be positive, got {value}")
        self.fn, self.max_batch, self.max_wait, self.max_queue = fn, max_batch, max_wait_ms / 1000, max_queue
        self.batch_sizes: list[int] = []  # every forward's batch size, for tests and benchmarks
        self._queue: asyncio.Queue[tuple[In, asyncio.Future[Out]]] | None = None
        self._task: asyncio.Task | None = None
        self._pool: ThreadPoolExecutor | None = None

    @property
    def queued(self) -> int:
        """Items waiting for a forward (not counting the one running)."""
        return 0 if self._queue is None else self._queue.qsize()

    async def start(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ember-forward")
        self._queue = asyncio.Queue(self.max_queue)
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while self._queue is not None and not self._queue.empty():
            self._queue.get_nowait()[1].cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    async def submit(self, item: In, timeout_s: float | None = None) -> Out:
        """The result for `item`, computed in a batch with whatever else is waiting."""
        return (await self.submit_many([item], timeout_s))[0]

    async def submit_many(self, items: list[In], timeout_s: float | None = None) -> list[Out]:
        """The results for `items`, which enter the queue together or not at all (`QueueFull`)."""
        futures = self._enqueue(items)
        try:
            async with asyncio.timeout(timeout_s):
                return list(await asyncio.gather(*futures))
        except TimeoutError:
            raise TimedOut(f"not answered within {timeout_s:.3g} s: the server is busy; try again") from None
        finally:
            for f in futures:
                f.cancel()  # a no-op once answered; still queued, it is dropped without a forward

    def check_room(self, n: int) -> None:
        """Raise `QueueFull` unless `n` more items fit in the queue now (to refuse before costly work)."""
        if self.queued + n > self.max_queue:
            raise QueueFull(
                f"the queue is full ({self.queued} images are waiting, at most {self.max_queue}); "
                "try again shortly"
            )

    def _enqueue(self, items: list[In]) -> list[asyncio.Future[Out]]:
        if self._queue is None:
            raise RuntimeError("MicroBatcher.submit before start(): start it in the app's lifespan")
        self.check_room(len(items))
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Out]] = [loop.create_future() for _ in items]
        for item, fut in zip(items, futures):
            self._queue.put_nowait((item, fut))
        return futures

    async def _loop(self) -> None:
        while True:
            batch = await self._collect()
            await self._run(batch)

    async def _collect(self) -> list[tuple[In, asyncio.Future[Out]]]:
        """The first waiting request, everything queued behind it, and what arrives within max_wait."""
        assert self._queue is not None
        batch = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while len(batch) < self.max_batch:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), left))
            except TimeoutError:
                break
        return batch

    async def _run(self, batch: list[tuple[In, asyncio.Future[Out]]]) -> None:
        live = [(x, f) for x, f in batch if not f.done()]  # a request that went away cancelled its future
        if not live:
            return
        try:
            results = await self._forward([x for x, _ in live])
        except Exception as e:
            if len(live) == 1:  # handed to its request; the loop itself keeps serving
                _set(live[0][1], exception=e)
                return
            for item in live:  # which item broke the forward? each alone: only that one fails
                await self._run([item])
            return
        for (_, f), r in zip(live, results):
            _set(f, result=r)

    async def _forward(self, items: list[In]) -> list[Out]:
        self.batch_sizes.append(len(items))
        results = await asyncio.get_running_loop().run_in_executor(self._pool, self.fn, items)
        if len(results) != len(items):
            raise RuntimeError(f"the batch function gave {len(results)} results for {len(items)} items")
        return results


def _set(fut: asyncio.Future, result: Any = None, exception: BaseException | None = None) -> None:
    if fut.done():
        return
    if exception is not None:
        fut.set_exception(exception)
    else:
        fut.set_result(result)
