"""Gathering work that arrives together into batches, processed off the event loop by one thread.

A request `submit`s one item and awaits its result; a worker thread takes whatever is waiting (up
to `max_batch` items), waits at most `max_wait_s` after the oldest item arrived for more to join,
and hands the batch to `process` in one call. Under load, items pile up while a batch is processed
and the next batch is taken at once, so the wait only applies to a lone request on an idle server.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class _Waiting(Generic[Item]):
    item: Item
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    arrived: float = field(default_factory=time.monotonic)


class MicroBatcher(Generic[Item, Result]):
    """Runs `process(items) -> results` (one result per item, same order) on batches of submitted items.

    `on_batch(size)` is told the size of each batch (for metrics). An exception raised by `process`
    fails every item of that batch with it; the worker goes on with the next batch.
    """

    def __init__(
        self,
        process: Callable[[list[Item]], Sequence[Result]],
        *,
        max_batch: int,
        max_wait_s: float,
        name: str = "batcher",
        on_batch: Callable[[int], None] | None = None,
    ):
        self._process = process
        self._max_batch = max_batch
        self._max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._waiting: deque[_Waiting[Item]] = deque()
        self._condition = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Items submitted and not yet taken into a batch."""
        with self._condition:
            return len(self._waiting)

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        waiting = _Waiting(item, loop.create_future(), loop)
        with self._condition:
            if self._stopped:
                raise RuntimeError("the batcher is stopped")
            self._waiting.append(waiting)
            self._condition.notify()
        return await waiting.future

    def stop(self) -> None:
        with self._condition:
            self._stopped = True
            self._condition.notify()
        self._thread.join(timeout=30)
        with self._condition:
            left, self._waiting = list(self._waiting), deque()
        for waiting in left:
            waiting.loop.call_soon_threadsafe(_fail, waiting.future, RuntimeError("the server is shutting down"))

    def _take_batch(self) -> list[_Waiting[Item]] | None:
        with self._condition:
            while not self._waiting and not self._stopped:
                self._condition.wait()
            if self._stopped:
                return None
            deadline = self._waiting[0].arrived + self._max_wait_s
            while len(self._waiting) < self._max_batch and not self._stopped:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
            count = min(self._max_batch, len(self._waiting))
            return [self._waiting.popleft() for _ in range(count)]

    def _work(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            if self._on_batch is not None:
                self._on_batch(len(batch))
            try:
                results = self._process([waiting.item for waiting in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"batch of {len(batch)} items gave {len(results)} results")
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting request
                for waiting in batch:
                    waiting.loop.call_soon_threadsafe(_fail, waiting.future, exc)
                continue
            for waiting, result in zip(batch, results):
                waiting.loop.call_soon_threadsafe(_resolve, waiting.future, result)


def _resolve(future: asyncio.Future, result: object) -> None:
    if not future.done():  # the request may have been cancelled (client gone)
        future.set_result(result)


def _fail(future: asyncio.Future, exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
