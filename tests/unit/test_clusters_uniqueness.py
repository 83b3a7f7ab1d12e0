"""Two Fleet Clusters reaching one cluster: the later is refused, nothing goes through it (issue 18, item 1).

The rule (:mod:`helmops.clusters.uniqueness`) with fake identities, ``Connections.get`` wiring it, and the
reconciler with two cluster names sharing one release store (one API server): no upgrade, uninstall or
clean-up ever runs through the duplicate."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest

from helmops.clusters import connections as connections_mod
from helmops.clusters.connections import Connection, Connections
from helmops.clusters.uniqueness import VERDICT_TTL, Claim, DuplicateCluster, Uniqueness, earliest
from tests.unit.test_clusters_reconcile import KEY, Conn, FakeConnections, _cluster, _deployed, _setup, _status


def _obj(name: str, created: str, ns: str = "ns", secret: bool = True) -> dict[str, Any]:
    spec = {"kubeConfigSecret": f"kc-{name}"} if secret else {}
    return {"metadata": {"name": name, "namespace": ns, "creationTimestamp": created}, "spec": spec}


class Ids:
    """Fake identities of Cluster objects (by name) and of the local cluster; counts the probes."""

    def __init__(self, ids: dict[str, str | None], local: str | None = "mgmt-uid") -> None:
        self.ids, self.local, self.probes = ids, local, 0
        self.clusters: list[dict[str, Any]] = []
        self.now = 1000.0

    async def identity_of(self, cluster: Mapping[str, Any]) -> str | None:
        self.probes += 1
        return self.ids.get(cluster["metadata"]["name"])

    async def local_identity(self) -> str | None:
        return self.local

    async def list_clusters(self, namespace: str) -> list[dict[str, Any]]:
        return [c for c in copy.deepcopy(self.clusters) if c["metadata"]["namespace"] == namespace]

    def checker(self) -> Uniqueness:
        return Uniqueness(self.identity_of, self.local_identity, self.list_clusters, clock=lambda: self.now)


def test_earliest_orders_local_then_creation_then_name() -> None:
    me = Claim.of(_obj("b", "2026-01-01T00:00:05Z"))
    older = Claim.of(_obj("a", "2026-01-01T00:00:01Z"))
    same_second = Claim.of(_obj("aa", "2026-01-01T00:00:05Z"))
    newer = Claim.of(_obj("0", "2026-01-02T00:00:00Z"))
    local = Claim(0, "", "local", "ns")
    others: dict[Claim, str | None] = {older: "x", same_second: "x", newer: "x"}
    assert earliest(me, "x", others) == older
    assert earliest(me, "x", {same_second: "x", newer: "x"}) == same_second  # same second: the name decides
    assert earliest(me, "x", {newer: "x"}) is None  # a newer Cluster never refuses an older one
    assert earliest(me, "x", {older: "y", local: "x"}) == local  # the controller's own cluster comes first
    assert earliest(me, "x", {older: None}) is None  # unknown identity: not a duplicate of anything


async def test_later_cluster_is_refused_naming_both_and_the_first_is_not() -> None:
    ids = Ids({"a": "uid-1", "b": "uid-1", "c": "uid-2"})
    a, b, c = _obj("a", "2026-01-01T00:00:01Z"), _obj("b", "2026-01-01T00:00:02Z"), _obj("c", "2026-01-01T00:00:00Z")
    ids.clusters = [a, b, c]
    check = ids.checker()
    await check.check(a, "uid-1")
    await check.check(c, "uid-2")
    with pytest.raises(DuplicateCluster) as err:
        await check.check(b, "uid-1")
    assert err.value.original == ("ns", "a") and err.value.reason == "DuplicateCluster"
    msg = err.value.message
    assert msg.startswith(
        "cluster b in namespace ns: refused, it reaches the same cluster as cluster a in namespace ns"
    )
    assert "kube-system namespace UID uid-1" in msg and "nothing is installed, upgraded or uninstalled" in msg


async def test_a_cluster_in_another_namespace_is_not_a_duplicate() -> None:
    ids = Ids({"a": "uid-1", "b": "uid-1"})
    a, b = _obj("a", "2026-01-01T00:00:01Z", ns="one"), _obj("b", "2026-01-01T00:00:02Z", ns="two")
    ids.clusters = [a, b]
    await ids.checker().check(b, "uid-1")


async def test_a_cluster_reaching_the_management_cluster_duplicates_local_unless_named_local() -> None:
    ids = Ids({}, local="mgmt-uid")
    mgmt, local = _obj("mgmt", "2026-01-01T00:00:01Z"), _obj("local", "2026-01-01T00:00:09Z")
    ids.clusters = [mgmt, local]
    check = ids.checker()
    with pytest.raises(DuplicateCluster) as err:
        await check.check(mgmt, "mgmt-uid")
    assert "the local cluster (the controller's own) in namespace ns" in err.value.message
    await check.check(local, "mgmt-uid")  # Fleet's fleet-local/local with a kubeconfig Secret is the local cluster


async def test_verdict_is_cached_then_looked_at_again() -> None:
    ids = Ids({"a": "uid-1"})
    a, b = _obj("a", "2026-01-01T00:00:01Z"), _obj("b", "2026-01-01T00:00:02Z")
    ids.clusters = [a, b]
    check = ids.checker()
    with pytest.raises(DuplicateCluster):
        await check.check(b, "uid-1")
    probes = ids.probes
    with pytest.raises(DuplicateCluster):
        await check.check(b, "uid-1")
    assert ids.probes == probes  # cached
    ids.clusters = [b]  # the original was deleted
    ids.now += VERDICT_TTL + 1
    await check.check(b, "uid-1")


async def test_unknown_identity_is_never_refused_and_lists_nothing() -> None:
    ids = Ids({"a": "uid-1"})
    ids.clusters = [_obj("a", "2026-01-01T00:00:01Z")]
    await ids.checker().check(_obj("b", "2026-01-01T00:00:02Z"), None)
    assert ids.probes == 0


async def test_connections_get_refuses_the_later_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """The wiring: the identity is read once per connection and the check runs on every ``get``."""
    conns = Connections(object(), object())  # type: ignore[arg-type]
    a, b = _obj("a", "2026-01-01T00:00:01Z"), _obj("b", "2026-01-01T00:00:02Z")
    made: dict[str, Connection] = {}
    reads: list[str] = []

    async def connection(cluster: Mapping[str, Any]) -> Connection:
        name = cluster["metadata"]["name"]
        if name not in made:
            made[name] = Connection(name, "ns", object(), object())  # type: ignore[arg-type]
        return made[name]

    async def read_identity(core: Any, where: str) -> str | None:
        reads.append(where)
        return "mgmt-uid" if where == "the local cluster" else "uid-1"

    async def list_clusters(namespace: str) -> list[dict[str, Any]]:
        return [a, b]

    monkeypatch.setattr(conns, "_connection", connection)
    monkeypatch.setattr(conns, "_list_clusters", list_clusters)
    monkeypatch.setattr(connections_mod, "read_identity", read_identity)
    assert (await conns.get(a)).name == "a"
    with pytest.raises(DuplicateCluster):
        await conns.get(b)
    with pytest.raises(DuplicateCluster):
        await conns.get(b)
    assert sorted(reads) == ["ns/a", "ns/b", "the local cluster"]  # once each


# --- the reconciler: a and b are one API server (one release store) ------------------------------------------
class SharedConnections(FakeConnections):
    """``a`` and ``b`` reach the same store; ``b`` is refused as a duplicate while ``refuse`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.stores["b"] = self.stores["a"]
        self.refuse = True

    async def get(self, cluster: Mapping[str, Any]) -> Conn:
        name = cluster["metadata"]["name"]
        if name == "b" and self.refuse:
            raise DuplicateCluster(
                "cluster b in namespace ns: refused, it reaches the same cluster as cluster a in namespace ns",
                original=("ns", "a"),
            )
        return await super().get(cluster)


def _shared(targets: list[dict[str, Any]]) -> tuple[Any, Any, SharedConnections]:
    r, kube, _ = _setup(targets)
    conns = SharedConnections()
    r.connect.clusters = conns  # type: ignore[assignment]
    return r, kube, conns


async def test_duplicate_is_refused_with_a_condition_and_an_event_and_nothing_runs_through_it() -> None:
    r, kube, conns = _shared([{"clusterSelector": {}}])
    await r.reconcile(KEY)
    store = conns.stores["a"]
    assert store.calls == ["upgrade"]  # once, through a
    st = _status(kube)
    assert st["display"]["readyBundleDeployments"] == "1/2"
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert "cluster b in namespace ns: refused" in ready["message"] and "cluster a in namespace ns" in ready["message"]
    assert any(reason == "DuplicateCluster" and "cluster a" in msg for reason, msg in kube.events)
    await r.reconcile(KEY)
    assert store.calls == ["upgrade"]


async def test_duplicate_no_longer_targeted_uninstalls_nothing_even_with_a_ledger_entry() -> None:
    """The data loss of issue 18: a release recorded under both names (as before the check existed); b
    leaves the targets; the release a still wants stays."""
    r, kube, conns = _shared([{"clusterSelector": {}}])
    conns.refuse = False  # before the check: both names deployed the same release
    await r.reconcile(KEY)
    store = conns.stores["a"]
    assert store.releases and store.calls == ["upgrade", "upgrade"]
    entries = await r.ledger.entries("u")
    assert {e.cluster for e in entries} == {"a", "b"}
    conns.refuse = True
    kube.clusters = [_cluster("a", "prod"), _cluster("b", "dev")]
    assert kube.obj is not None
    kube.obj["spec"]["targets"] = [{"clusterName": "a"}]
    await r.reconcile(KEY)
    assert "uninstall" not in store.calls and store.releases
    assert _deployed(kube) == ["a"]
    assert _status(kube)["display"]["readyBundleDeployments"] == "1/1"
    # deletion: uninstalled once, through a; the duplicate's entry does not hold the finalizer
    kube.obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert await r.reconcile(KEY) is None
    assert kube.obj is None and store.releases == {} and store.calls.count("uninstall") == 1
