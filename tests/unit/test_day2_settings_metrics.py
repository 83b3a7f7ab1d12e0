"""Day-2 settings (resync period and its deprecated alias, drift timing) and the fleet_helmapp_* gauges."""

from __future__ import annotations

from typing import Any

from helmops.runtime import metrics
from helmops.runtime.day2 import resource_counts
from helmops.runtime.settings import from_env, resync_period


def test_resync_period_go_duration_seconds_and_alias() -> None:
    assert resync_period({}) == 600.0
    assert resync_period({"HELMOPS_RESYNC_PERIOD": "15m"}) == 900.0
    assert resync_period({"HELMOPS_RESYNC_PERIOD": "45"}) == 45.0
    assert resync_period({"HELMOPS_RESYNC_SECONDS": "120"}) == 120.0  # deprecated alias
    assert resync_period({"HELMOPS_RESYNC_PERIOD": "1h", "HELMOPS_RESYNC_SECONDS": "120"}) == 3600.0
    assert resync_period({"HELMOPS_RESYNC_PERIOD": "nonsense"}) == 600.0
    assert resync_period({"HELMOPS_RESYNC_PERIOD": "0"}) == 600.0


def test_drift_settings() -> None:
    s = from_env({})
    # the watches coalesce an edit's events, so the delay is 1s (Fleet's agent: 5s)
    assert (s.drift_check_seconds, s.drift_delay_seconds, s.resync_seconds, s.drift_watch) == (60.0, 1.0, 600.0, True)
    s = from_env(
        {
            "HELMOPS_DRIFT_CHECK_PERIOD": "0",
            "HELMOPS_DRIFT_DELAY": "2s",
            "HELMOPS_RESYNC_PERIOD": "2m",
            "HELMOPS_DRIFT_WATCH": "false",
        }
    )
    assert (s.drift_check_seconds, s.drift_delay_seconds, s.resync_seconds, s.drift_watch) == (0.0, 2.0, 120.0, False)


def _series(name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for fam in metrics.REGISTRY.collect():
        for sample in fam.samples:
            if sample.name == name:
                out.append((dict(sample.labels), sample.value))
    return out


def test_fleet_gauges_one_series_per_helmapp() -> None:
    values = {"ready_clusters": 1, "desired_ready_clusters": 1, "resources_ready": 3}
    metrics.set_helmapp("ns", "gauge-app", "http://repo/", "hello", "1.0.0", values)
    got = [s for s in _series("fleet_helmapp_ready_clusters") if s[0]["name"] == "gauge-app"]
    assert got == [
        ({"name": "gauge-app", "namespace": "ns", "repo": "http://repo/", "chart": "hello", "version": "1.0.0"}, 1.0)
    ]
    metrics.set_helmapp("ns", "gauge-app", "http://repo/", "hello", "1.0.1", values)
    got = [s for s in _series("fleet_helmapp_resources_ready") if s[0]["name"] == "gauge-app"]
    assert [(s[0]["version"], s[1]) for s in got] == [("1.0.1", 3.0)]  # the old version's series is gone
    metrics.remove_helmapp("ns", "gauge-app")
    for name in ("fleet_helmapp_ready_clusters", "fleet_helmapp_resources_missing"):
        assert not [s for s in _series(name) if s[0]["name"] == "gauge-app"]


def test_chart_cache_collector_reads_stats_at_scrape_time() -> None:
    stats = {"index_cache_hits": 3, "index_shared": 1, "index_requests": 2, "chart_downloads": 1, "cache_hits": 4}
    metrics.watch_chart_cache(lambda: stats)
    got = {(lab["cache"], lab["result"]): v for lab, v in _series("helmops_chart_cache_total")}
    assert got[("index", "hit")] == 4.0 and got[("index", "miss")] == 2.0
    assert got[("chart", "hit")] == 4.0 and got[("chart", "miss")] == 1.0
    stats["index_requests"] = 5
    got = {(lab["cache"], lab["result"]): v for lab, v in _series("helmops_chart_cache_total")}
    assert got[("index", "miss")] == 5.0


def test_resource_counts_from_status_or_drift() -> None:
    status = {"readyClusters": 1, "desiredReadyClusters": 1, "display": {"state": ""}}
    assert resource_counts(status, 3, 0, 0)["resources_ready"] == 3.0
    modified = {"readyClusters": 0, "desiredReadyClusters": 1, "display": {"state": "Modified"}}
    got = resource_counts(modified, 3, 1, 1)
    assert (got["resources_modified"], got["resources_missing"], got["resources_ready"]) == (1.0, 1.0, 1.0)
    counted = {"resourceCounts": {"desiredReady": 4, "ready": 2, "notReady": 2}}
    got = resource_counts(counted, 0, 0, 0)
    assert (got["resources_desired_ready"], got["resources_not_ready"]) == (4.0, 2.0)


def test_resync_requeue_gets_jitter_and_other_delays_do_not() -> None:
    import asyncio
    import random
    from types import SimpleNamespace

    from helmops.runtime.day2 import Day2
    from helmops.runtime.queue import WorkQueue
    from helmops.runtime.settings import Settings

    async def go() -> None:
        settings = Settings(resync_seconds=100.0)
        driver = SimpleNamespace(holds=lambda ns, name: False)
        d = Day2(settings, None, None, driver, object(), WorkQueue(), rng=random.Random(3))
        assert d.poller is None  # no helmops.sources behind this fetcher: polling off, said in the log
        assert d.drifted(("ns", "x")) == ""  # what the reconciler reads (controller.base.DriftFindings)
        delays = [d.after_reconcile(100.0) for _ in range(200)]
        assert all(d is not None and 90.0 <= d <= 110.0 for d in delays)
        assert len(set(delays)) > 150
        assert d.after_reconcile(2.0) == 2.0  # retries/waits keep their delay
        assert d.after_reconcile(None) is None
        await d.stop()

    asyncio.run(go())


def test_an_event_that_changed_only_the_status_reuses_the_parse() -> None:
    import asyncio
    import random
    from types import SimpleNamespace

    from helmops.runtime.day2 import Day2
    from helmops.runtime.queue import WorkQueue
    from helmops.runtime.settings import Settings

    async def go() -> None:
        driver = SimpleNamespace(holds=lambda ns, name: False)
        d = Day2(Settings(), None, None, driver, object(), WorkQueue(), rng=random.Random(3))
        meta = {"namespace": "ns", "name": "a", "uid": "u1", "generation": 1, "resourceVersion": "5"}
        body: dict[str, Any] = {"metadata": meta, "spec": {"helm": {"chart": "c"}}}
        first = d._parsed(body)
        again = d._parsed({**body, "metadata": {**meta, "resourceVersion": "6"}, "status": {"x": 1}})
        assert again is first
        labelled = d._parsed({**body, "metadata": {**meta, "labels": {"env": "prod"}}})
        assert labelled is not first and labelled.metadata.labels == {"env": "prod"}
        newer = d._parsed({"metadata": {**meta, "generation": 2}, "spec": {"helm": {"chart": "d"}}})
        assert newer.spec.helm is not None and newer.spec.helm.chart == "d"
        d.forget(("ns", "a"))
        assert d._parses == {}

    asyncio.run(go())


def test_kopf_keeps_no_diff_base() -> None:
    from helmops.runtime.kopfsettings import NoDiffBase, operator_settings

    ks = operator_settings()
    assert isinstance(ks.persistence.diffbase_storage, NoDiffBase)
    body: Any = {"metadata": {"name": "a"}, "spec": {"big": "x" * 1000}}
    assert ks.persistence.diffbase_storage.build(body=body) == {}
    assert ks.persistence.diffbase_storage.fetch(body=body) is None
