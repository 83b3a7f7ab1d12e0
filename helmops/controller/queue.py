"""A level-triggered work queue: per-key dedup, delayed requeue, one worker per key at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")


class WorkQueue(Generic[K]):
    """Like client-go's rate-limited queue: a key is queued at most once; a key added while it is being
    processed is processed again afterwards; ``add_after`` keeps the earliest pending time."""

    def __init__(self) -> None:
        self._ready: asyncio.Queue[K] = asyncio.Queue()
        self._queued: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()
        self._timers: dict[K, tuple[float, asyncio.TimerHandle]] = {}
        self._closed = False

    def __len__(self) -> int:
        return len(self._queued)

    def add(self, key: K) -> None:
        if self._closed:
            return
        timer = self._timers.pop(key, None)
        if timer:
            timer[1].cancel()
        if key in self._processing:
            self._dirty.add(key)
            return
        if key not in self._queued:
            self._queued.add(key)
            self._ready.put_nowait(key)

    def add_after(self, key: K, delay: float) -> None:
        if self._closed:
            return
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + delay
        current = self._timers.get(key)
        if current and current[0] <= when:
            return
        if current:
            current[1].cancel()
        self._timers[key] = (when, loop.call_at(when, self._fire, key))

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def forget(self, key: K) -> None:
        timer = self._timers.pop(key, None)
        if timer:
            timer[1].cancel()

    async def get(self) -> K:
        key = await self._ready.get()
        self._queued.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def close(self) -> None:
        self._closed = True
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()


async def run_worker(
    queue: WorkQueue[K],
    handle: Callable[[K], Awaitable[float | None]],
    on_error: Callable[[K, BaseException], float],
) -> None:
    """Processes keys forever; ``handle`` returns a requeue delay (None = don't requeue)."""
    while True:
        key = await queue.get()
        try:
            try:
                delay = await handle(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = on_error(key, exc)
            if delay is not None:
                queue.add_after(key, delay)
        finally:
            queue.done(key)
