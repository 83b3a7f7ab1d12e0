"""Shared background work never ends in an exception of its own (kopf re-raises those at shutdown and the
process would exit 1); each waiter gets the outcome instead."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from helmops import tasks
from helmops.api.objects import HelmApp
from helmops.api.parse import parse_helmapp
from helmops.controller.apply import ChartFetches
from helmops.desired.release import DesiredError, FetchedChart
from helmops.sources.cache import SingleFlight


async def test_a_failing_shared_task_holds_its_exception_for_the_waiters() -> None:
    async def boom() -> int:
        raise DesiredError("tag list exceeds the 8 MiB limit")

    task = tasks.shared(boom)
    with pytest.raises(DesiredError, match="8 MiB"):
        await tasks.outcome(task)
    value, exc = task.result()  # what kopf calls at shutdown: no exception
    assert value is None and isinstance(exc, DesiredError)


async def test_a_cancelled_waiter_does_not_cancel_the_shared_work() -> None:
    gate = asyncio.Event()

    async def work() -> str:
        await gate.wait()
        return "chart"

    task = tasks.shared(work)
    waiter = asyncio.ensure_future(tasks.outcome(task))
    await asyncio.sleep(0)
    waiter.cancel()
    gate.set()
    assert await tasks.outcome(task) == "chart"


async def test_single_flight_work_that_fails_leaves_no_failed_task() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    started: list[asyncio.Task[Any]] = []

    async def work() -> str:
        current = asyncio.current_task()
        assert current is not None
        started.append(current)
        raise ValueError("index too large")

    with pytest.raises(ValueError, match="too large"):
        await flight.do("k", work)
    assert started and started[0].done() and not started[0].cancelled()
    value, exc = started[0].result()  # the shared task itself ends normally, holding the error
    assert value is None and isinstance(exc, ValueError)
    assert len(flight) == 0


class Fetcher:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[str] = []
        self.fail = fail
        self.gate = asyncio.Event()

    async def fetch(self, helmapp: HelmApp) -> FetchedChart:
        version = str(helmapp.spec.helm.version or "")
        self.calls.append(version)
        await self.gate.wait()
        if self.fail:
            raise DesiredError("chart not found", retryable=True)
        return FetchedChart("hello", version, "sha256:1", Path("/c.tgz"))


def _app(version: str) -> HelmApp:
    return parse_helmapp({"spec": {"helm": {"repo": "http://r/", "chart": "hello", "version": version}}})


async def test_chart_fetches_fetch_each_reference_once_and_share_errors() -> None:
    f = Fetcher(fail=True)
    charts = ChartFetches(f)
    f.gate.set()
    for _ in range(2):
        with pytest.raises(DesiredError, match="not found"):
            await charts.get(_app("1.0.0"))
    assert f.calls == ["1.0.0"]  # the error is shared, not fetched again
    ok = Fetcher()
    charts = ChartFetches(ok)
    ok.gate.set()
    assert (await charts.get(_app("1.0.0"))).version == "1.0.0"
    assert (await charts.get(_app("2.0.0"))).version == "2.0.0"
    assert (await charts.get(_app("1.0.0"))).version == "1.0.0"
    assert ok.calls == ["1.0.0", "2.0.0"]


async def test_chart_fetches_do_not_outlive_their_reconcile() -> None:
    f = Fetcher()
    charts = ChartFetches(f)
    waiter = asyncio.ensure_future(charts.get(_app("1.0.0")))
    await asyncio.sleep(0)
    waiter.cancel()  # the worker is cancelled (shutdown)
    charts.cancel()  # the reconcile's finally
    await asyncio.sleep(0)
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert pending == []
