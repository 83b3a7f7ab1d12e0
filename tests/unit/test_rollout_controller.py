"""Rollout controls in the reconcile (helmops.controller.rollout), every boundary faked as in
test_clusters_reconcile: dependsOn per cluster with dependants queued on a dependency's change, and a
rolloutStrategy holding an upgrade back with a plain status message."""

from __future__ import annotations

from typing import Any

from helmops.api.parse import parse_helmapp
from tests.unit.test_clusters_reconcile import KEY, _setup, _status


def _ready_message(st: dict[str, Any]) -> str:
    return str(next(c for c in st["conditions"] if c["type"] == "Ready")["message"])


async def test_depends_on_waits_on_one_cluster_and_proceeds_on_the_other() -> None:
    r, kube, conns = _setup([{"clusterSelector": {}}], dependsOn=[{"name": "db"}])
    queued: list[tuple[str, str]] = []
    r.rollout_index.enqueue = queued.append
    r.rollout_index.record(("ns", "db"), {}, {"a": "Ready", "b": "NotReady"}, depends=False)
    delay = await r.reconcile(KEY)
    assert conns.stores["a"].calls == ["upgrade"] and conns.stores["b"].calls == []
    st = _status(kube)
    assert st["display"]["readyBundleDeployments"] == "1/2" and st["display"]["state"] == "WaitApplied"
    assert "dependent bundle(s) are not ready: [db]" in _ready_message(st)
    assert ("DependencyNotReady", "cluster b in namespace ns: dependent bundle(s) are not ready: [db]") in kube.events
    assert delay is not None and delay <= 30
    # the dependency becomes Ready on b: app is queued at once, and then deploys there
    r.rollout_index.record(("ns", "db"), {}, {"a": "Ready", "b": "Ready"}, depends=False)
    assert queued == [KEY]
    await r.reconcile(KEY)
    assert conns.stores["b"].calls == ["upgrade"]
    assert _status(kube)["display"]["readyBundleDeployments"] == "2/2"


async def test_missing_dependency_is_reported_not_waited_on_silently() -> None:
    r, kube, conns = _setup([{"clusterName": "a"}], dependsOn=[{"name": "db"}])
    await r.reconcile(KEY)
    assert conns.stores["a"].calls == []
    st = _status(kube)
    assert st["display"]["state"] == "ErrApplied"
    assert _ready_message(st).endswith(
        "list bundledeployments: no bundles matching labels "
        "fleet.cattle.io/bundle-name=db,fleet.cattle.io/bundle-namespace=ns in namespace ns"
    )


async def test_selector_matching_itself_does_not_deadlock() -> None:
    r, kube, conns = _setup([{"clusterName": "a"}], labels={"tier": "x"},
                            dependsOn=[{"selector": {"matchLabels": {"tier": "x"}}}])  # fmt: skip
    r.rollout_index.record(("ns", "db"), {"tier": "x"}, {"a": "Ready"}, depends=False)
    await r.reconcile(KEY)
    assert conns.stores["a"].calls == ["upgrade"]
    await r.reconcile(KEY)  # app is now in the index itself (tier=x, Ready on a): still not its own dependency
    assert _status(kube)["display"]["readyBundleDeployments"] == "1/1"


async def test_rollout_strategy_holds_the_second_cluster_until_the_first_is_ready() -> None:
    r, kube, conns = _setup([{"clusterSelector": {}}], rolloutStrategy={"maxUnavailable": "0%"})
    await r.reconcile(KEY)  # both new: installs are never gated by maxUnavailable
    assert conns.stores["a"].calls == ["upgrade"] and conns.stores["b"].calls == ["upgrade"]
    assert kube.obj is not None
    kube.obj["spec"]["helm"]["version"] = "2.0.0"
    delay = await r.reconcile(KEY)
    assert conns.stores["a"].calls == ["upgrade"] * 2 and conns.stores["b"].calls == ["upgrade"]
    st = _status(kube)
    assert st["display"]["state"] == "OutOfSync"
    assert "rollout: 1 of 2 clusters unavailable or being updated, limit 1 (rolloutStrategy.maxUnavailable)" in (
        _ready_message(st)
    )
    assert delay is not None and delay <= 5
    await r.reconcile(KEY)  # a is Ready on the new version: b goes
    assert conns.stores["b"].calls == ["upgrade"] * 2
    assert _status(kube)["display"]["readyBundleDeployments"] == "2/2"


async def test_cluster_not_ready_at_its_last_reconcile_counts_as_unavailable() -> None:
    r, kube, conns = _setup([{"clusterSelector": {}}], rolloutStrategy={"maxUnavailable": "0%"})
    await r.reconcile(KEY)
    r.rollout_index.record(KEY, {}, {"a": "Ready", "b": "NotReady"}, depends=False)
    assert kube.obj is not None
    kube.obj["spec"]["helm"]["version"] = "2.0.0"
    await r.reconcile(KEY)
    # b (already unavailable) is updated at once and uses the budget: a waits
    assert conns.stores["b"].calls == ["upgrade"] * 2 and conns.stores["a"].calls == ["upgrade"]


async def test_a_cluster_failing_before_the_barrier_does_not_stall_the_others() -> None:
    r, kube, conns = _setup([{"clusterSelector": {}}], rolloutStrategy={"maxUnavailable": 2})
    await r.reconcile(KEY)
    assert kube.obj is not None
    kube.obj["spec"]["helm"]["version"] = "2.0.0"
    conns.down.add("b")  # b never reaches the barrier: it leaves it, counted unavailable (1 of limit 2)
    await r.reconcile(KEY)
    assert conns.stores["a"].calls == ["upgrade"] * 2
    st = _status(kube)
    assert st["display"]["state"] == "ErrApplied" and "unreachable" in _ready_message(st)


async def test_barrier_gives_up_after_its_timeout(monkeypatch: Any) -> None:
    import asyncio

    from helmops.controller import rollout
    from helmops.desired.targets import resolve_targets
    from helmops.rollout.index import RolloutIndex
    from helmops.rollout.partitions import TargetState
    from tests.unit.test_clusters_reconcile import _cluster

    monkeypatch.setattr(rollout, "BARRIER_SECONDS", 0.05)
    app = {
        "metadata": {"name": "app", "namespace": "ns"},
        "spec": {"helm": {"chart": "c"}, "targets": [{"clusterSelector": {}}]},
    }
    targets = resolve_targets(parse_helmapp(app), [_cluster("a", "x"), _cluster("b", "y")])
    rnd = rollout.RolloutRound(KEY, None, RolloutIndex(), rollout.RolloutStrategy(maxUnavailable=1), targets, [])
    a = rnd._clusters["a"]
    why = await asyncio.wait_for(rnd.decide("a", TargetState(a, up_to_date=False)), 5)
    # b never came: counted unavailable, so it uses the whole budget of 1 and a is held
    assert why is not None and "1 of 2 clusters unavailable" in why


async def test_after_a_restart_not_ready_clusters_come_from_the_live_status() -> None:
    r, kube, conns = _setup([{"clusterSelector": {}}], rolloutStrategy={"maxUnavailable": "0%"})
    await r.reconcile(KEY)
    assert kube.obj is not None
    kube.obj["status"]["perClusterResourceCounts"] = {"ns/a": {"ready": 1}, "ns/b": {"ready": 0, "notReady": 1}}
    r.rollout_index.forget(KEY)  # as a new process: nothing remembered
    kube.obj["spec"]["helm"]["version"] = "2.0.0"
    await r.reconcile(KEY)
    # b was NotReady before the restart: it takes the budget, a waits (without the status, a would go first)
    assert conns.stores["b"].calls == ["upgrade"] * 2 and conns.stores["a"].calls == ["upgrade"]
