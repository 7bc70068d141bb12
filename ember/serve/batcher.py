"""Micro-batching: requests that arrive together share one forward pass, run off the event loop.

One worker thread runs every forward, so the model is never used by two threads at once. While it
runs, new requests queue up; the next forward takes all of them (up to `max_batch`), after waiting at
most `max_wait_ms` for more to arrive. With `max_batch=1` each request gets a forward of its own.

>>> async def main():
...     batcher = MicroBatcher(lambda xs: [x * 2 for x in xs], max_batch=16, max_wait_ms=2)
...     await batcher.start()
...     results = await asyncio.gather(*(batcher.submit(i) for i in range(4)))
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

__all__ = ["MicroBatcher"]

In = TypeVar("In")
Out = TypeVar("Out")


class MicroBatcher(Generic[In, Out]):
    """Call `fn(items) -> results` (one result per item, in order) on batches of submitted items.

    Start it with `await batcher.start()` inside the running event loop, then `await batcher.submit(x)`
    from any request; `await batcher.stop()` at shut-down.
    """

    def __init__(self, fn: Callable[[list[In]], list[Out]], max_batch: int = 16, max_wait_ms: float = 2.0):
        if max_batch < 1:
            raise ValueError(f"MicroBatcher: max_batch must be at least 1, got {max_batch}")
        self.fn, self.max_batch, self.max_wait = fn, max_batch, max_wait_ms / 1000
        self.batch_sizes: list[int] = []  # every forward's batch size, for tests and benchmarks
        self._queue: asyncio.Queue[tuple[In, asyncio.Future[Out]]] | None = None
        self._task: asyncio.Task | None = None
        self._pool: ThreadPoolExecutor | None = None

    async def start(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ember-forward")
        self._queue = asyncio.Queue()
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

    async def submit(self, item: In) -> Out:
        """The result for `item`, computed in a batch with whatever else is waiting."""
        if self._queue is None:
            raise RuntimeError("MicroBatcher.submit before start(): start it in the app's lifespan")
        fut: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, fut))
        return await fut

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
        live = [(x, f) for x, f in batch if not f.done()]  # a client that went away cancels its future
        if not live:
            return
        self.batch_sizes.append(len(live))
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._pool, self.fn, [x for x, _ in live])
            if len(results) != len(live):
                raise RuntimeError(f"the batch function gave {len(results)} results for {len(live)} items")
        except Exception as e:  # handed to every waiting request; the loop itself keeps serving
            for _, f in live:
                _set(f, exception=e)
            return
        for (_, f), r in zip(live, results):
            _set(f, result=r)


def _set(fut: asyncio.Future, result: Any = None, exception: BaseException | None = None) -> None:
    if fut.done():
        return
    if exception is not None:
        fut.set_exception(exception)
    else:
        fut.set_result(result)
