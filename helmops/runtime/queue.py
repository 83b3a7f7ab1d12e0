"""A level-triggered work queue: per-key dedup, delayed requeue, one worker per key at a time, and turns
handed out fairly between tenants (namespaces)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K")


def namespace_of(key: object) -> Hashable:
    """The tenant of a ``(namespace, name)`` key; any other key shares one tenant (plain FIFO)."""
    if isinstance(key, tuple) and key and isinstance(key[0], Hashable):
        return key[0]
    return None


class WorkQueue(Generic[K]):
    """Like client-go's rate-limited queue: a key is queued at most once; a key added while it is being
    processed is processed again afterwards; ``add_after`` keeps the earliest pending time.

    Unlike client-go's FIFO, ready keys wait per tenant (``tenant_of``, by default the namespace of a
    ``(namespace, name)`` key) and ``get`` serves the tenants round-robin, FIFO within one tenant: a namespace
    that queues hundreds of HelmApps delays another namespace's HelmApp by at most one turn per tenant.
    ``max_per_tenant`` caps the keys of one tenant being processed at once (a reconcile waiting for a helm
    slot still occupies its worker, so without it one tenant's slow releases could take every worker).
    """

    def __init__(self, tenant_of: Callable[[K], Hashable] = namespace_of, *, max_per_tenant: int | None = None) -> None:
        self._tenant_of = tenant_of
        self._max_per_tenant = max_per_tenant if max_per_tenant and max_per_tenant > 0 else None
        self._busy: dict[Hashable, int] = {}
        #: tenants with ready keys, in the order their turn comes (a served tenant moves to the end).
        self._turns: OrderedDict[Hashable, deque[K]] = OrderedDict()
        self._getters: deque[asyncio.Future[None]] = deque()
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
            self._turns.setdefault(self._tenant_of(key), deque()).append(key)
            self._wake()

    def _wake(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return

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

    def _next_tenant(self) -> Hashable | None:
        for tenant in self._turns:
            if self._max_per_tenant is None or self._busy.get(tenant, 0) < self._max_per_tenant:
                return tenant
        return None

    def _has_turn(self) -> bool:
        return bool(self._turns) and (self._max_per_tenant is None or self._next_tenant() is not None)

    async def get(self) -> K:
        while not self._has_turn():
            getter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except asyncio.CancelledError:
                with contextlib.suppress(ValueError):
                    self._getters.remove(getter)
                if getter.done() and not getter.cancelled() and self._has_turn():
                    self._wake()  # pass the wake-up on to another worker
                raise
        tenant = self._next_tenant()
        keys = self._turns[tenant]
        key = keys.popleft()
        if keys:
            self._turns.move_to_end(tenant)
        else:
            del self._turns[tenant]
        self._queued.discard(key)
        self._processing.add(key)
        self._busy[tenant] = self._busy.get(tenant, 0) + 1
        if self._has_turn():
            self._wake()  # more ready keys: another idle worker may take one
        return key

    def done(self, key: K) -> None:
        if key in self._processing:
            tenant = self._tenant_of(key)
            n = self._busy.get(tenant, 0) - 1
            if n > 0:
                self._busy[tenant] = n
            else:
                self._busy.pop(tenant, None)
            if self._turns:
                self._wake()  # the tenant may have been at its cap with keys waiting
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
