"""Background tasks that never end in an exception.

Work shared between callers (a chart fetch several clusters wait for, a single-flight index download) runs
as its own task so that one caller's cancellation does not cancel it for the others. Such a task may still
be running when the process stops, and kopf, at shutdown, re-raises the exception of every task still
alive then — so a fetch failing in that window turned a clean stop into exit code 1. The task therefore
captures its outcome, and each waiter re-raises it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

__all__ = ["outcome", "shared"]


async def _capture(work: Callable[[], Awaitable[T]]) -> tuple[T | None, Exception | None]:
    try:
        return await work(), None
    except Exception as exc:
        return None, exc


def shared(work: Callable[[], Awaitable[T]]) -> asyncio.Task[tuple[T | None, Exception | None]]:
    """``work()`` as a task whose result is ``(value, None)`` or ``(None, exception)``; see :func:`outcome`.
    ``work`` is called inside the task, so a task cancelled before it starts leaves no coroutine behind."""
    return asyncio.ensure_future(_capture(work))


async def outcome(task: asyncio.Task[tuple[T | None, Exception | None]]) -> T:
    """Waits for a :func:`shared` task without cancelling it when the waiter is cancelled; returns its value
    or raises its exception."""
    value, exc = await asyncio.shield(task)
    if exc is not None:
        raise exc
    return value  # type: ignore[return-value]
