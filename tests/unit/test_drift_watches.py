"""Drift watches: bounded event lines, reconnects that never lose an event silently, and the monitor comparing
the one object an event carries (no cluster: the stream and the watch calls are faked)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from test_day2_drift import FakeMonitor, _helmapp, _release_secret, live_cm

from helmops.drift import monitor as monitor_mod
from helmops.drift import watchers
from helmops.kubeio import watch as kwatch
from helmops.kubeio.mapping import Resource
from helmops.kubeio.watch import OVERSIZED, WatchEvent, WatchExpired

CONFIGMAPS = Resource("", "v1", "ConfigMap", "configmaps", True)


class _Content:
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def iter_any(self) -> AsyncIterator[bytes]:
        for c in self._chunks:
            yield c


async def _collect(chunks: list[bytes]) -> list[bytes | None]:
    return [line async for line in kwatch._lines(_Content(chunks))]


def test_lines_are_split_across_chunks_and_over_long_ones_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kwatch, "MAX_EVENT_BYTES", 10)
    got = asyncio.run(_collect([b'{"a":', b"1}\n\n", b"x" * 8, b"y" * 8, b"z\n", b'{"b":2}\n', b"0123456789abc\n"]))
    assert got == [b'{"a":1}', None, b'{"b":2}', None]


class _Resp:
    def __init__(self, status: int, lines: list[dict[str, Any]]) -> None:
        self.status, self.reason = status, "x"
        self.response = self
        self.content = _Content([json.dumps(x).encode() + b"\n" for x in lines])
        self.released = False

    def release(self) -> None:
        self.released = True


class _Api:
    def __init__(self, resp: _Resp) -> None:
        self.resp = resp
        self.queries: list[Any] = []

    async def param_serialize(self, method: str, path: str, **kw: Any) -> tuple[Any, ...]:
        self.queries.append(dict(kw["query_params"]))
        return method, path, {}, None, None

    async def call_api(self, method: str, url: str, **kw: Any) -> _Resp:
        return self.resp


def test_watch_events_parse_and_410_means_list_again() -> None:
    cm = {"metadata": {"name": "a", "resourceVersion": "7"}}
    api = _Api(_Resp(200, [{"type": "MODIFIED", "object": cm}, {"type": "BOOKMARK", "object": {"metadata": {}}}]))

    async def events() -> list[WatchEvent]:
        return [e async for e in kwatch.watch_events(api, "/api/v1/configmaps", "sel", "5")]

    got = asyncio.run(events())
    assert [(e.type, e.resource_version) for e in got] == [("MODIFIED", "7"), ("BOOKMARK", "")]
    assert api.queries[0]["resourceVersion"] == "5" and api.queries[0]["labelSelector"] == "sel"
    assert api.resp.released
    with pytest.raises(WatchExpired):
        asyncio.run(_expired())


async def _expired() -> None:
    api = _Api(_Resp(200, [{"type": "ERROR", "object": {"code": 410}}]))
    async for _ in kwatch.watch_events(api, "/api/v1/configmaps", "sel", "5"):
        pass


def test_kind_watches_reconnect_and_say_when_events_may_be_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    script: list[Any] = [
        [WatchEvent("MODIFIED", {"metadata": {"resourceVersion": "2"}})],  # then the stream ends normally
        WatchExpired("gone"),
        RuntimeError("connection refused"),
        [WatchEvent("BOOKMARK", {"metadata": {"resourceVersion": "9"}})],
    ]
    versions: list[str] = []
    starts: list[str] = []

    async def current(api: Any, path: str, selector: str) -> str:
        starts.append(path)
        return "1"

    async def events(api: Any, path: str, selector: str, rv: str) -> AsyncIterator[WatchEvent]:
        versions.append(rv)
        step = script.pop(0) if script else None
        if step is None:
            await asyncio.sleep(3600)
        if isinstance(step, Exception):
            raise step
        for e in step or []:
            yield e

    monkeypatch.setattr(watchers, "current_resource_version", current)
    monkeypatch.setattr(watchers, "watch_events", events)
    monkeypatch.setattr(watchers, "RETRY_FIRST", 0.01)
    seen: list[str] = []

    async def go() -> None:
        w = watchers.KindWatches(None, lambda res, e: seen.append(e.type), "sel")
        w.sync([CONFIGMAPS])
        for _ in range(100):
            await asyncio.sleep(0.01)
            if len(versions) >= 5:
                break
        await w.stop()

    asyncio.run(go())
    # MODIFIED delivered; the normal end resumes from "2"; 410 → list again and "anything may have changed";
    # a failure → retried, and once back, "anything may have changed" again; bookmarks are not delivered.
    assert seen == ["MODIFIED", OVERSIZED, OVERSIZED]
    assert versions[:4] == ["1", "2", "1", "1"]
    assert len(starts) == 3


def test_kind_watches_are_capped_per_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    async def never(*_a: Any) -> str:
        await asyncio.sleep(3600)
        return ""

    monkeypatch.setattr(watchers, "current_resource_version", never)

    async def go() -> None:
        w = watchers.KindWatches(None, lambda res, e: None, "sel", max_kinds=3)
        kinds = [Resource("example.com", "v1", f"K{i}", f"k{i}s", True) for i in range(10)]
        w.sync(kinds)
        assert len(w.watched) == 3
        w.sync(kinds[:1])
        assert w.watched == frozenset(kinds[:1])
        await w.stop()
        assert not w.watched

    asyncio.run(go())


def test_monitor_checks_soon_only_when_an_event_changes_what_drifted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(monitor_mod, "WATCH_DEBOUNCE", 0.01)
    monkeypatch.setattr(monitor_mod, "WATCH_MIN_INTERVAL", 0.0)
    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  message: hi\n"
    live = {"ConfigMap": [live_cm(message="hi") | {"metadata": {"name": "web", "namespace": "t"}}]}

    async def go() -> None:
        m = FakeMonitor([_release_secret("t", "r", "apps.h", 1, manifest)], live)
        m.update(_helmapp("h", diff={"comparePatches": [{"kind": "ConfigMap", "jsonPointers": ["/data/replicas"]}]}))
        await m.check()
        base = len(m.calls)
        same = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "web", "namespace": "t"}}
        # unchanged, an ignored field, another object: no check
        m.on_event(CONFIGMAPS, WatchEvent("MODIFIED", {**same, "data": {"message": "hi"}}))
        m.on_event(CONFIGMAPS, WatchEvent("MODIFIED", {**same, "data": {"message": "hi", "replicas": "3"}}))
        m.on_event(CONFIGMAPS, WatchEvent("MODIFIED", {**same, "metadata": {"name": "x", "namespace": "t"}}))
        await asyncio.sleep(0.05)
        assert len(m.calls) == base
        # an edit: one check soon (a burst of events: still one)
        live["ConfigMap"][0]["data"] = {"message": "edited"}
        for _ in range(5):
            m.on_event(CONFIGMAPS, WatchEvent("MODIFIED", {**same, "data": {"message": "edited"}}))
        await asyncio.sleep(0.1)
        assert len(m.calls) == base + 2
        assert m.modified(("apps", "h"))
        # deleted: compared as missing, which differs from "modified": checked again
        live["ConfigMap"] = []
        m.on_event(CONFIGMAPS, WatchEvent("DELETED", same))
        await asyncio.sleep(0.1)
        assert [x.missing for x in m.modified(("apps", "h"))] == [True]
        # a gap in the stream: checked again whatever the event
        m.on_event(CONFIGMAPS, WatchEvent(OVERSIZED, None))
        await asyncio.sleep(0.1)
        assert len(m.calls) == base + 6
        await m.stop()

    asyncio.run(go())


def test_day2_keeps_one_monitor_per_downstream_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    import random
    from types import SimpleNamespace

    from helmops.runtime import day2 as day2_mod
    from helmops.runtime.day2 import Day2
    from helmops.runtime.queue import WorkQueue
    from helmops.runtime.settings import Settings

    monkeypatch.setattr(day2_mod, "MAX_DOWNSTREAM_MONITORS", 2)

    async def go() -> None:
        settings = Settings(drift_check_seconds=60.0, drift_watch=False)
        driver = SimpleNamespace(holds=lambda ns, name: False)
        d = Day2(settings, None, None, driver, object(), WorkQueue(), rng=random.Random(1))
        d.observe({"metadata": {"namespace": "apps", "name": "h"}, "spec": {"defaultNamespace": "t"}})
        d.attach("apps/far", object(), driver.holds)
        assert not d._downstream  # not started: nothing attached
        d.start()
        api = object()
        d.attach("local", api, driver.holds)
        assert not d._downstream  # the local cluster has its own monitor already
        d.attach("apps/far", api, driver.holds)
        far = d._downstream["apps/far"]
        assert far.cluster == "apps/far" and far.api is api
        assert ("apps", "h") in far._tracked  # knows the HelmApps seen before it started
        d.attach("apps/far", api, driver.holds)
        assert d._downstream["apps/far"] is far
        d.attach("apps/far", object(), driver.holds)  # the connection was rebuilt: a new monitor
        assert d._downstream["apps/far"] is not far
        # what a downstream monitor found is read for that cluster only
        d._downstream["apps/far"]._tracked[("apps", "h")].modified = (
            monitor_mod.Modified(monitor_mod.ObjectRef("v1", "ConfigMap", "t", "web"), missing=True),
        )
        assert d.drifted(("apps", "h"), "apps/far") == "configmap.v1 t/web missing"
        assert d.drifted(("apps", "h"), "local") == "" and d.drifted(("apps", "h"), "apps/other") == ""
        d.cleared(("apps", "h"), "apps/far")
        assert d.drifted(("apps", "h"), "apps/far") == ""
        # bounded: the least recently reconciled cluster's monitor is stopped
        d.attach("apps/b", object(), driver.holds)
        d.attach("apps/c", object(), driver.holds)
        assert list(d._downstream) == ["apps/b", "apps/c"]
        d.forget(("apps", "h"))
        assert all(("apps", "h") not in m._tracked for m in d._downstream.values())
        await d.stop()
        assert not d._downstream

    asyncio.run(go())
