"""Polling: which HelmApps poll, jitter, the restart-safe schedule, the Polled condition, one poll."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from helmops.api.parse import lenient_helmapp
from helmops.kubeio.kube import Kube
from helmops.kubeio.latest import LatestHelmApps
from helmops.polling import poller as polling
from helmops.polling.poller import (
    Poller,
    PollError,
)
from helmops.polling.schedule import (
    JITTER,
    LAST_POLL_ANNOTATION,
    jittered,
    last_polled,
    next_poll_delay,
    polled_condition,
    polling_interval,
    with_condition,
)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def app(version: str = "~1.0", interval: str | None = "30s", chart: str = "hello", **meta: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"helm": {"repo": "http://repo/", "chart": chart, "version": version}}
    if interval is not None:
        spec["pollingInterval"] = interval
    return {"metadata": {"namespace": "ns", "name": "a", **meta}, "spec": spec}


@pytest.mark.parametrize(
    ("version", "interval", "chart", "expected"),
    [
        ("~1.0", "30s", "hello", 30.0),
        ("", "1m", "hello", 60.0),
        ("*", "1m", "hello", 60.0),
        (">=1 <2", "90s", "hello", 90.0),
        ("1.2.3", "30s", "hello", 0.0),  # exact: never polled (as Fleet)
        ("v1.2.3", "30s", "hello", 0.0),
        ("~1.0", "0", "hello", 0.0),  # 0 = off
        ("~1.0", None, "hello", 0.0),  # unset = off
        ("~1.0", "soon", "hello", 0.0),  # invalid = off (validation reports it)
        ("", "30s", "https://host/charts/hello-1.0.0.tgz", 0.0),  # tarball
    ],
)
def test_polling_applies(version: str, interval: str | None, chart: str, expected: float) -> None:
    obj = app(version, interval, chart)
    if chart.startswith("https://"):
        obj["spec"]["helm"]["repo"] = ""
    assert polling_interval(lenient_helmapp(obj)) == expected


def test_annotation_when_the_crd_prunes_the_field() -> None:
    obj = app(interval=None, annotations={"helmops.cattle.io/polling-interval": "2m"})
    assert polling_interval(lenient_helmapp(obj)) == 120.0
    obj["spec"]["pollingInterval"] = "10s"  # the field wins
    assert polling_interval(lenient_helmapp(obj)) == 10.0


def test_paused_and_deleting_are_not_polled() -> None:
    paused = app()
    paused["spec"]["paused"] = True
    assert polling_interval(lenient_helmapp(paused)) == 0.0
    assert polling_interval(lenient_helmapp(app(deletionTimestamp="2026-01-01T00:00:00Z"))) == 0.0


def test_jitter_bounds_and_spread() -> None:
    assert jittered(100.0, 1.0) == pytest.approx(110.0)
    assert jittered(100.0, -1.0) == pytest.approx(90.0)
    assert jittered(100.0, 5.0) == pytest.approx(110.0)  # clamped
    rng = random.Random(7)
    delays = [next_poll_delay(60.0, None, NOW, rng.uniform(-1, 1)) for _ in range(1000)]
    assert all(60 * (1 - JITTER) <= d <= 60 * (1 + JITTER) for d in delays)
    # thousands of HelmApps created together do not poll in lockstep: spread over the whole ±10% window
    assert max(delays) - min(delays) > 60 * JITTER * 1.8
    assert len({round(d, 3) for d in delays}) > 900


def test_next_poll_is_derived_from_the_last_poll() -> None:
    # polled 20s ago, interval 60s: due in 40s (±6s), not a whole interval after a restart
    assert next_poll_delay(60.0, NOW - timedelta(seconds=20), NOW, 0.0) == pytest.approx(40.0)
    assert next_poll_delay(60.0, NOW - timedelta(seconds=20), NOW, 1.0) == pytest.approx(46.0)
    # overdue (the controller was down): poll at once
    assert next_poll_delay(60.0, NOW - timedelta(hours=3), NOW, 0.0) == 0.0
    # never polled: the first reconcile just resolved the version; one jittered interval
    assert next_poll_delay(60.0, None, NOW, -1.0) == pytest.approx(54.0)


def test_last_polled_from_status_or_annotation() -> None:
    obj = app()
    assert last_polled(lenient_helmapp(obj), obj.get("status")) is None
    obj["status"] = {"lastPollingTriggered": "2026-01-01T11:59:00Z"}
    assert last_polled(lenient_helmapp(obj), obj.get("status")) == NOW - timedelta(minutes=1)
    obj["metadata"]["annotations"] = {LAST_POLL_ANNOTATION: "2026-01-01T11:59:30Z"}
    assert last_polled(lenient_helmapp(obj), obj.get("status")) == NOW - timedelta(seconds=30)  # the later one
    del obj["status"]
    assert last_polled(lenient_helmapp(obj), obj.get("status")) == NOW - timedelta(seconds=30)
    obj["metadata"]["annotations"] = {LAST_POLL_ANNOTATION: "garbage"}
    assert last_polled(lenient_helmapp(obj), obj.get("status")) is None


def test_polled_condition_keeps_timestamps_while_unchanged() -> None:
    first = polled_condition(True, "", None, NOW)
    assert (first["type"], first["status"], first["reason"]) == ("Polled", "True", "")
    later = polled_condition(True, "", first, NOW + timedelta(minutes=5))
    assert later["lastTransitionTime"] == first["lastTransitionTime"]
    failed = polled_condition(False, "boom", later, NOW + timedelta(minutes=6))
    assert (failed["status"], failed["reason"], failed["message"]) == ("False", "FailedToGetNewChartVersion", "boom")
    assert failed["lastTransitionTime"] != first["lastTransitionTime"]
    conds = with_condition([{"type": "Ready", "status": "True"}, first], failed)
    assert [c["type"] for c in conds] == ["Ready", "Polled"] and conds[1]["status"] == "False"


class FakeCustom:
    def __init__(self, prune: bool = False) -> None:
        self.status_patches: list[dict[str, Any]] = []
        self.patches: list[dict[str, Any]] = []
        self.prune = prune

    async def patch_namespaced_custom_object_status(self, *args: Any, **kw: Any) -> dict[str, Any]:
        body = args[5]
        self.status_patches.append(body)
        status = dict(body["status"])
        if self.prune:
            status.pop("lastPollingTriggered")
        return {"status": status}

    async def patch_namespaced_custom_object(self, *args: Any, **kw: Any) -> dict[str, Any]:
        self.patches.append(args[5])
        return {}


class FakeKube(Kube):
    """The real status writer (``Kube.patch_status``) over a fake CustomObjectsApi."""

    def __init__(self, obj: dict[str, Any], prune: bool = False) -> None:  # no ApiClient: Kube's own __init__ skipped
        self.obj = obj
        self.custom = FakeCustom(prune)
        self.latest = LatestHelmApps()
        self.events: list[tuple[str, str, bool]] = []

    async def get_helmapp(self, ns: str, name: str, *, fresh: bool = False) -> dict[str, Any] | None:
        return self.obj

    async def event(self, obj: Any, reason: str, message: str, *, warning: bool = False) -> None:
        self.events.append((reason, message, warning))


class FakeResolver:
    def __init__(self, answer: str | Exception) -> None:
        self.answer = answer
        self.max_ages: list[float] = []

    async def resolve(self, helmapp: Any, max_age: float) -> str:
        self.max_ages.append(max_age)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def run_poll(
    obj: dict[str, Any], answer: str | Exception, prune: bool = False
) -> tuple[Any, FakeKube, list[Any], FakeResolver]:
    kube = FakeKube(obj, prune)
    queued: list[Any] = []
    resolver = FakeResolver(answer)

    async def go() -> Any:
        p = Poller(kube, resolver, queued.append, now=lambda: NOW)
        return await p.poll(("ns", "a"), 30.0)

    return asyncio.run(go()), kube, queued, resolver


def test_poll_new_version_enqueues_and_records() -> None:
    obj = {**app(), "status": {"version": "1.0.0", "conditions": [{"type": "Ready", "status": "True"}]}}
    obj["metadata"]["resourceVersion"] = "7"
    result, kube, queued, resolver = run_poll(obj, "1.0.1")
    assert result == "new_version" and queued == [("ns", "a")]
    assert resolver.max_ages == [15.0]  # shared index cache, at most half an interval old
    body = kube.custom.status_patches[0]
    assert body["metadata"]["resourceVersion"] == "7"  # the conditions list is replaced: guarded
    assert body["status"]["lastPollingTriggered"] == "2026-01-01T12:00:00Z"
    assert [c["type"] for c in body["status"]["conditions"]] == ["Ready", "Polled"]
    assert not kube.custom.patches  # the status field was kept: no annotation


def test_poll_unchanged_does_not_enqueue() -> None:
    result, _kube, queued, _ = run_poll({**app(), "status": {"version": "1.0.0"}}, "1.0.0")
    assert result == "unchanged" and queued == []


def test_unchanged_polled_condition_is_not_rewritten() -> None:
    polled = polled_condition(True, "", None, NOW - timedelta(hours=1))
    obj = {**app(), "status": {"version": "1.0.0", "conditions": [polled]}}
    _result, kube, _queued, _ = run_poll(obj, "1.0.0")
    assert kube.custom.status_patches == [{"status": {"lastPollingTriggered": "2026-01-01T12:00:00Z"}}]


def test_poll_failure_sets_polled_false_and_posts_an_event() -> None:
    result, kube, queued, _ = run_poll({**app(), "status": {"version": "1.0.0"}}, PollError("repo down"))
    assert result == "error" and queued == []
    assert kube.events[0][0] == "FailedToGetNewChartVersion" and kube.events[0][2] is True
    cond = kube.custom.status_patches[0]["status"]["conditions"][-1]
    assert (cond["type"], cond["status"]) == ("Polled", "False") and "repo down" in cond["message"]


def test_pruned_status_field_falls_back_to_the_annotation() -> None:
    _result, kube, _queued, _ = run_poll({**app(), "status": {"version": "1.0.0"}}, "1.0.0", prune=True)
    assert kube.custom.patches == [{"metadata": {"annotations": {LAST_POLL_ANNOTATION: "2026-01-01T12:00:00Z"}}}]


def test_poller_schedules_and_forgets() -> None:
    async def go() -> None:
        p = Poller(FakeKube(app()), FakeResolver("1"), lambda k: None, now=lambda: NOW, rng=random.Random(1))
        obj = app()
        obj["status"] = {"lastPollingTriggered": "2026-01-01T11:59:50Z"}
        p.update(lenient_helmapp(obj), obj.get("status"))
        due = p.due_in(("ns", "a"))
        assert due is not None and 20 * 0.9 - 1 <= due <= 20 * 1.1 + 1  # 30s ±10% after a poll 10s ago
        p.update(lenient_helmapp(obj), obj.get("status"))  # unchanged: not re-planned
        assert p.due_in(("ns", "a")) == pytest.approx(due, abs=0.5)
        exact = app(version="1.0.0")
        p.update(lenient_helmapp(exact))  # became an exact version: no more polling
        assert len(p) == 0
        p.close()

    asyncio.run(go())


def test_module_exports() -> None:
    assert set(polling.__all__) <= set(dir(polling))
