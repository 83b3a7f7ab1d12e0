"""Helm process slots shared fairly between tenants (a tenant is a HelmApp's namespace).

A plain semaphore serves waiters first come, first served: a tenant that creates a few HelmApps with slow
hooks and a long ``timeoutSeconds`` can hold every helm slot for as long as that timeout, and every other
namespace waits behind it. Here waiters queue per tenant, a freed slot goes to the next tenant in
round-robin order (FIFO inside one tenant), and one tenant never holds more than ``per_tenant`` slots at
once, so with two or more slots someone else can always get one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator


def default_per_tenant(slots: int) -> int:
    """One slot short of all of them: a single tenant can never fill the controller."""
    return max(1, slots - 1)


class HelmSlots:
    """``slots`` helm processes at once in total, at most ``per_tenant`` of them for one tenant.

    Not thread-safe: use it from one event loop (the controller's).
    """

    def __init__(self, slots: int, *, per_tenant: int | None = None) -> None:
        self.slots = max(1, slots)
        cap = per_tenant if per_tenant is not None and per_tenant > 0 else default_per_tenant(self.slots)
        self.per_tenant = min(cap, self.slots)
        self._held: dict[str, int] = {}
        self._in_use = 0
        #: tenants with waiters, in the order their turn comes (a served tenant moves to the end).
        self._turns: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()

    @property
    def in_use(self) -> int:
        return self._in_use

    def held(self, tenant: str) -> int:
        return self._held.get(tenant, 0)

    def waiting(self, tenant: str | None = None) -> int:
        """Waiters (of one tenant, or of all)."""
        if tenant is not None:
            return sum(1 for f in self._turns.get(tenant, ()) if not f.done())
        return sum(1 for q in self._turns.values() for f in q if not f.done())

    def _grant(self, tenant: str) -> None:
        self._held[tenant] = self._held.get(tenant, 0) + 1
        self._in_use += 1

    def _may_take(self, tenant: str) -> bool:
        return self._in_use < self.slots and self._held.get(tenant, 0) < self.per_tenant

    async def acquire(self, tenant: str) -> None:
        # Fast path only when nobody of this tenant queues ahead (FIFO per tenant); other tenants' waiters
        # that could use a free slot would already have been given it by _dispatch.
        if tenant not in self._turns and self._may_take(tenant):
            self._grant(tenant)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._turns.setdefault(tenant, deque()).append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(tenant)  # granted, but the waiter went away before using it
            else:
                self._forget(tenant, fut)
            raise

    def _forget(self, tenant: str, fut: asyncio.Future[None]) -> None:
        q = self._turns.get(tenant)
        if q is None:
            return
        with contextlib.suppress(ValueError):
            q.remove(fut)
        if not q:
            del self._turns[tenant]

    def release(self, tenant: str) -> None:
        n = self._held.get(tenant, 0)
        if n <= 0:
            raise RuntimeError(f"helm slot released for tenant {tenant!r} that holds none")
        if n == 1:
            del self._held[tenant]
        else:
            self._held[tenant] = n - 1
        self._in_use -= 1
        self._dispatch()

    def _dispatch(self) -> None:
        """Hands free slots to waiting tenants in round-robin order, skipping tenants at their cap."""
        while self._in_use < self.slots:
            chosen: str | None = None
            for tenant, q in list(self._turns.items()):
                while q and q[0].done():  # cancelled waiters
                    q.popleft()
                if not q:
                    del self._turns[tenant]
                    continue
                if self._held.get(tenant, 0) < self.per_tenant:
                    chosen = tenant
                    break
            if chosen is None:
                return
            q = self._turns[chosen]
            q.popleft().set_result(None)
            self._grant(chosen)
            if q:
                self._turns.move_to_end(chosen)
            else:
                del self._turns[chosen]

    @contextlib.asynccontextmanager
    async def slot(self, tenant: str) -> AsyncIterator[None]:
        await self.acquire(tenant)
        try:
            yield
        finally:
            self.release(tenant)


__all__ = ["HelmSlots", "default_per_tenant"]
