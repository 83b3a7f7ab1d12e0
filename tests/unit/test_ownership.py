"""Ownership that cannot be forged or assumed: the decision (pure) and the reconciler against fakes.

A release this HelmApp did not create is never upgraded, recovered or uninstalled unless takeOwnership adopts
it; clean-up only ever considers releases the controller's ledger recorded, so a Secret a tenant plants in its
own namespace with another HelmApp's owner label is never listed, let alone acted on.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kube_fake import KubeFake

from helmops.api.objects import HelmApp
from helmops.controller.ledger import (
    MAX_PER_CLUSTER,
    Entry,
    Ledger,
    LedgerConflict,
    LedgerFull,
    MemoryLedgerStore,
    ledger_name,
    parse,
    render,
)
from helmops.controller.reconciler import Reconciler, ReconcilerConfig
from helmops.desired.release import FetchedChart, Values
from helmops.helm.driver import ReleaseOutcome, ReleaseSpec
from helmops.kubeio.kube import FINALIZER
from helmops.reconcile.release import FINGERPRINT_LABEL, OWNER_LABEL, ReleaseInfo, ownership
from tests.unit.test_controller_reconciler import BasicSpec

KEY = ("team", "app")
NOW = datetime.now(tz=UTC)
SYSTEM = "helmops-system"


def _rel(name: str = "app", ns: str = "target", owner: str | None = None, status: str = "deployed") -> ReleaseInfo:
    labels = {"owner": "helm", "name": name, "status": status}
    if owner:
        labels[OWNER_LABEL] = owner
    return ReleaseInfo(name, ns, 3, status, None, NOW, labels)


# --- the decision ----------------------------------------------------------------------------------------
def test_absent_and_own_release_are_allowed() -> None:
    assert ownership(None, *KEY, recorded=False, take_ownership=False).allowed
    mine = ownership(_rel(owner="team.app"), *KEY, recorded=False, take_ownership=False)
    assert mine.allowed and not mine.adopt


def test_unlabelled_release_is_refused_with_the_hint() -> None:
    o = ownership(_rel(), *KEY, recorded=False, take_ownership=False)
    assert not o.allowed
    assert o.refusal == (
        "release app in namespace target exists and was not installed by this HelmApp; "
        "set spec.helm.takeOwnership to adopt it"
    )


def test_foreign_label_is_refused_even_with_take_ownership() -> None:
    for take in (False, True):
        o = ownership(_rel(owner="other.app"), *KEY, recorded=True, take_ownership=take)
        assert not o.allowed and o.owner == "other.app" and "belongs to another HelmApp (other.app)" in o.refusal


def test_take_ownership_adopts_an_unlabelled_release() -> None:
    o = ownership(_rel(), *KEY, recorded=False, take_ownership=True)
    assert o.allowed and o.adopt


def test_ledger_recorded_unlabelled_release_is_ours() -> None:
    o = ownership(_rel(), *KEY, recorded=True, take_ownership=False)
    assert o.allowed and not o.adopt


# --- the ledger --------------------------------------------------------------------------------------------
async def test_ledger_records_forgets_and_drops() -> None:
    store = MemoryLedgerStore()
    ledger = Ledger(store, SYSTEM)
    e1, e2 = Entry("local", "t", "a"), Entry("local", "t", "b")
    await ledger.record("uid-1", "team/app", e1)
    await ledger.record("uid-1", "team/app", e2)
    await ledger.record("uid-1", "team/app", e1)  # idempotent
    data, annotations, _ = store.maps[(SYSTEM, ledger_name("uid-1"))]
    assert parse(data) == {e1, e2} and annotations["helmops.cattle.io/helmapp"] == "team/app"
    # a fresh process (new leader) reads the same entries
    assert await Ledger(store, SYSTEM).entries("uid-1") == {e1, e2}
    await ledger.forget("uid-1", "team/app", e1)
    assert await Ledger(store, SYSTEM).entries("uid-1") == {e2}
    await ledger.drop("uid-1")
    assert store.maps == {}


async def test_ledger_is_bounded_per_cluster() -> None:
    ledger = Ledger(MemoryLedgerStore(), SYSTEM)
    for i in range(MAX_PER_CLUSTER):
        await ledger.record("u", "team/app", Entry("local", "t", f"r{i}"))
    with pytest.raises(LedgerFull, match="limit"):
        await ledger.record("u", "team/app", Entry("local", "t", "one-more"))
    await ledger.record("u", "team/app", Entry("other", "t", "r0"))  # another cluster has room


async def test_ledger_rereads_after_a_conflict() -> None:
    store = MemoryLedgerStore()
    a, b = Ledger(store, SYSTEM), Ledger(store, SYSTEM)
    await a.record("u", "team/app", Entry("local", "t", "x"))
    await b.record("u", "team/app", Entry("local", "t", "y"))  # a's cached copy is now stale
    await a.record("u", "team/app", Entry("local", "t", "z"))
    assert await Ledger(store, SYSTEM).entries("u") == {Entry("local", "t", n) for n in "xyz"}


class CountingStore(MemoryLedgerStore):
    def __init__(self, list_fails: bool = False) -> None:
        super().__init__()
        self.reads = self.lists = 0
        self.list_fails = list_fails

    async def read_ledger(self, namespace: str, name: str) -> tuple[dict[str, str], str] | None:
        self.reads += 1
        return await super().read_ledger(namespace, name)

    async def list_ledgers(self, namespace: str) -> dict[str, tuple[dict[str, str], str]]:
        self.lists += 1
        if self.list_fails:
            raise OSError("connection refused")
        return await super().list_ledgers(namespace)


async def test_ledger_reads_every_ledger_with_one_list() -> None:
    store = CountingStore()
    await Ledger(store, SYSTEM).record("old", "team/old", Entry("local", "t", "r"))
    await store.write_ledger("elsewhere", ledger_name("new-1"), render([Entry("x", "y", "z")]), {}, None)
    ledger = Ledger(store, SYSTEM)  # a restarted controller
    store.reads = store.lists = 0
    assert await ledger.entries("old") == {Entry("local", "t", "r")}
    for uid in ("new-1", "new-2", "new-3"):  # HelmApps created since: no ledger, and no read to learn it
        assert await ledger.entries(uid) == frozenset()
    assert (store.lists, store.reads) == (1, 0)
    await ledger.record("new-1", "team/new-1", Entry("local", "t", "n"))
    assert await Ledger(store, SYSTEM).entries("new-1") == {Entry("local", "t", "n")}
    ledger.evict("new-2")  # the snapshot no longer says which ledgers exist: reads from now on
    await ledger.entries("new-2")
    assert store.reads == 1


async def test_ledger_falls_back_to_reads_when_the_list_fails() -> None:
    store = CountingStore(list_fails=True)
    await store.write_ledger(SYSTEM, ledger_name("u"), render([Entry("local", "t", "r")]), {}, None)
    ledger = Ledger(store, SYSTEM)
    assert await ledger.entries("u") == {Entry("local", "t", "r")}
    assert await ledger.entries("v") == frozenset()
    assert (store.lists, store.reads) == (1, 2)


def test_malformed_ledger_data_is_ignored() -> None:
    assert parse({"releases": "not json"}) == frozenset()
    assert parse({"releases": '[["c","n"],[1,2,3],["c","n","r"]]'}) == {Entry("c", "n", "r")}
    assert parse(render([Entry("c", "n", "r")])) == {Entry("c", "n", "r")}


async def test_memory_store_detects_conflicts() -> None:
    store = MemoryLedgerStore()
    await store.write_ledger(SYSTEM, "x", {}, {}, None)
    with pytest.raises(LedgerConflict):
        await store.write_ledger(SYSTEM, "x", {}, {}, None)


# --- the reconciler against fakes ------------------------------------------------------------------------
class FakeKube(KubeFake):
    def __init__(self, obj: dict[str, Any]) -> None:
        self.obj: dict[str, Any] | None = obj
        self.events: list[tuple[str, str]] = []

    async def get_helmapp(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.obj) if self.obj and (namespace, name) == KEY else None

    async def add_finalizer(self, obj: Mapping[str, Any]) -> None:
        assert self.obj is not None
        self.obj["metadata"].setdefault("finalizers", []).append(FINALIZER)

    async def remove_finalizer(self, obj: Mapping[str, Any]) -> None:
        self.obj = None

    async def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any] | None:
        assert self.obj is not None
        self.obj["status"] = dict(patch["status"])
        return self.obj

    async def event(self, obj: Mapping[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
        self.events.append((reason, message))

    async def ensure_namespace_metadata(self, *_: Any) -> bool:
        return False


class Releases:
    """Helm storage of one cluster, all namespaces, and the helm that changes it."""

    def __init__(self) -> None:
        self.releases: dict[tuple[str, str], ReleaseInfo] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.take_ownership: list[bool] = []

    async def read(self, namespace: str, name: str) -> ReleaseInfo | None:
        return self.releases.get((namespace, name))

    def holds(self, namespace: str, name: str) -> bool:
        return False

    async def install_or_upgrade(self, spec: ReleaseSpec) -> ReleaseOutcome:
        self.calls.append(("upgrade", spec.namespace, spec.name))
        self.take_ownership.append(spec.take_ownership)
        old = self.releases.get((spec.namespace, spec.name))
        rev = old.revision + 1 if old else 1
        labels = {"owner": "helm", "name": spec.name, "status": "deployed", **spec.labels}
        info = ReleaseInfo(spec.name, spec.namespace, rev, "deployed", spec.labels[FINGERPRINT_LABEL], NOW, labels)
        self.releases[(spec.namespace, spec.name)] = info
        return ReleaseOutcome(rev, "deployed")

    async def uninstall(self, name: str, namespace: str, **_: Any) -> None:
        self.calls.append(("uninstall", namespace, name))
        self.releases.pop((namespace, name), None)

    async def recover(self, name: str, namespace: str, **_: Any) -> None:
        self.calls.append(("recover", namespace, name))


class Charts:
    async def fetch(self, helmapp: HelmApp) -> FetchedChart:
        return FetchedChart("hello", "1.0.0", "sha256:1", Path("/c.tgz"))


class NoValues:
    async def render_values(self, helmapp: HelmApp, release_namespace: str) -> Values:
        return Values({}, "sha256:none")


def _obj(uid: str = "uid-app", **helm: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "app", "namespace": "team", "generation": 1, "resourceVersion": "1", "uid": uid},
        "spec": {"defaultNamespace": "target", "helm": {"repo": "http://r/", "chart": "hello", **helm}},
    }


def _setup(
    obj: dict[str, Any], store: MemoryLedgerStore | None = None
) -> tuple[Reconciler, FakeKube, Releases, MemoryLedgerStore]:
    kube, rels, store = FakeKube(obj), Releases(), store or MemoryLedgerStore()
    r = Reconciler(
        kube,
        rels,
        rels,
        BasicSpec(),
        Charts(),
        NoValues(),  # type: ignore[arg-type]
        ReconcilerConfig(resync_seconds=600, own_namespace=SYSTEM),
        ledger=Ledger(store, SYSTEM),
    )
    return r, kube, rels, store


def _cond(kube: FakeKube, ctype: str) -> dict[str, Any]:
    assert kube.obj is not None
    return next(c for c in kube.obj["status"]["conditions"] if c["type"] == ctype)


def _delete(kube: FakeKube) -> None:
    assert kube.obj is not None
    kube.obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"


def _entries(store: MemoryLedgerStore, uid: str = "uid-app") -> frozenset[Entry]:
    found = store.maps.get((SYSTEM, ledger_name(uid)))
    return parse(found[0]) if found else frozenset()


@pytest.mark.parametrize("service_account", [None, "deployer"])
async def test_unlabelled_release_is_refused_untouched_and_survives_deletion(service_account: str | None) -> None:
    obj = _obj()
    if service_account:
        obj["spec"]["serviceAccount"] = service_account
    r, kube, rels, store = _setup(obj)
    plain = _rel()
    rels.releases[("target", "app")] = plain
    await r.reconcile(KEY)
    acc = _cond(kube, "Accepted")
    assert (
        acc["status"] == "False" and "was not installed by this HelmApp; set spec.helm.takeOwnership" in acc["message"]
    )
    assert ("ReleaseNotOwned", acc["message"].split(": ", 1)[1]) in kube.events
    assert rels.calls == [] and _entries(store) == frozenset()
    _delete(kube)
    assert await r.reconcile(KEY) is None
    assert rels.calls == [] and rels.releases[("target", "app")] is plain and kube.obj is None


async def test_foreign_labelled_release_is_refused() -> None:
    r, kube, rels, _ = _setup(_obj(takeOwnership=True))
    rels.releases[("target", "app")] = _rel(owner="other.app")
    await r.reconcile(KEY)
    assert "belongs to another HelmApp (other.app)" in _cond(kube, "Accepted")["message"]
    assert rels.calls == [] and "ReleaseNotOwned" in [e[0] for e in kube.events]


async def test_take_ownership_adopts_and_records() -> None:
    r, kube, rels, store = _setup(_obj(takeOwnership=True))
    rels.releases[("target", "app")] = _rel()
    await r.reconcile(KEY)
    assert rels.calls == [("upgrade", "target", "app")] and rels.take_ownership == [True]
    assert rels.releases[("target", "app")].labels[OWNER_LABEL] == "team.app"
    assert _entries(store) == {Entry("local", "target", "app")}
    assert _cond(kube, "Ready")["status"] == "True"
    _delete(kube)
    assert await r.reconcile(KEY) is None
    assert rels.calls[-1] == ("uninstall", "target", "app") and store.maps == {}


async def test_upgrade_takes_resources_only_with_take_ownership() -> None:
    r, _kube, rels, _ = _setup(_obj())
    await r.reconcile(KEY)
    rels.releases[("target", "app")] = _rel(owner="team.app")  # fingerprint differs: an upgrade
    await r.reconcile(KEY)
    assert [c[0] for c in rels.calls] == ["upgrade", "upgrade"] and rels.take_ownership == [False, False]


async def test_install_is_recorded_before_helm_runs() -> None:
    r, _kube, rels, store = _setup(_obj())
    seen: list[frozenset[Entry]] = []
    inner = rels.install_or_upgrade

    async def spy(spec: ReleaseSpec) -> ReleaseOutcome:
        seen.append(_entries(store))
        return await inner(spec)

    rels.install_or_upgrade = spy  # type: ignore[method-assign]
    await r.reconcile(KEY)
    assert seen == [{Entry("local", "target", "app")}]


async def test_rename_uninstalls_the_old_release_from_the_ledger() -> None:
    obj = _obj(releaseName="before")
    r, kube, rels, store = _setup(obj)
    await r.reconcile(KEY)
    assert kube.obj is not None
    kube.obj["spec"]["helm"]["releaseName"] = "after"
    await r.reconcile(KEY)
    assert rels.calls == [
        ("upgrade", "target", "before"),
        ("upgrade", "target", "after"),
        ("uninstall", "target", "before"),
    ]
    assert _entries(store) == {Entry("local", "target", "after")}
    assert [e[0] for e in kube.events][-1] == "Uninstalled"


async def test_planted_secret_is_never_listed_and_deletion_completes() -> None:
    """A tenant plants a 'release' in its own namespace labelled for this HelmApp: neither the reconcile nor
    the deletion looks at it (no label search), so deletion completes and the plant is untouched."""
    r, kube, rels, store = _setup(_obj())
    await r.reconcile(KEY)
    planted = _rel("bait", "tenant-b", owner="team.app")
    rels.releases[("tenant-b", "bait")] = planted
    await r.reconcile(KEY)
    _delete(kube)
    assert await r.reconcile(KEY) is None and kube.obj is None
    assert ("uninstall", "tenant-b", "bait") not in rels.calls and rels.releases[("tenant-b", "bait")] is planted
    assert store.maps == {}


async def test_ledger_entry_relabelled_for_another_helmapp_is_not_uninstalled() -> None:
    r, kube, rels, store = _setup(_obj(releaseName="before"))
    await r.reconcile(KEY)
    # another HelmApp adopted it since (its label now names that HelmApp)
    rels.releases[("target", "before")] = _rel("before", owner="other.app")
    assert kube.obj is not None
    kube.obj["spec"]["helm"]["releaseName"] = "after"
    await r.reconcile(KEY)
    assert ("uninstall", "target", "before") not in rels.calls
    assert _entries(store) == {Entry("local", "target", "after")}


async def test_current_release_labelled_ours_is_migrated_into_the_ledger() -> None:
    r, _kube, rels, store = _setup(_obj())
    await r.reconcile(KEY)
    store.maps.clear()  # as if installed by a helmops without the ledger
    r2, _, _, _ = _setup(_obj(), store)
    r2.driver = r2.releases = rels
    await r2.reconcile(KEY)
    assert _entries(store) == {Entry("local", "target", "app")} and [c[0] for c in rels.calls] == ["upgrade"]


async def test_full_ledger_refuses_with_a_condition() -> None:
    store = MemoryLedgerStore()
    ledger = Ledger(store, SYSTEM)
    for i in range(MAX_PER_CLUSTER):
        await ledger.record("uid-app", "team/app", Entry("local", "target", f"stuck{i}"))
    r, kube, rels, _ = _setup(_obj(), store)
    await r.reconcile(KEY)
    assert rels.calls == [] and "limit" in _cond(kube, "Accepted")["message"]
    assert "TooManyReleases" in [e[0] for e in kube.events]


# --- the Kubernetes side of the ledger ---------------------------------------------------------------------
class FakeCore:
    """CoreV1Api's ConfigMap calls, with the API server's answers (404 without the namespace, 409 on a stale
    resourceVersion)."""

    def __init__(self) -> None:
        self.namespaces: set[str] = set()
        self.maps: dict[tuple[str, str], Any] = {}
        self.version = 0

    def _api_error(self, status: int) -> Exception:
        from kubernetes.aio.client.exceptions import ApiException

        return ApiException(status=status, reason="x")

    async def create_namespace(self, body: Mapping[str, Any]) -> None:
        self.namespaces.add(body["metadata"]["name"])

    async def read_namespaced_config_map(self, name: str, namespace: str) -> Any:
        if (namespace, name) not in self.maps:
            raise self._api_error(404)
        return self.maps[(namespace, name)]

    def _store(self, namespace: str, name: str, body: Mapping[str, Any]) -> Any:
        from types import SimpleNamespace

        self.version += 1
        meta = SimpleNamespace(resource_version=str(self.version), labels=body["metadata"]["labels"])
        obj = SimpleNamespace(metadata=meta, data=dict(body["data"]))
        self.maps[(namespace, name)] = obj
        return obj

    async def create_namespaced_config_map(self, namespace: str, body: Mapping[str, Any]) -> Any:
        if namespace not in self.namespaces:
            raise self._api_error(404)
        if (namespace, body["metadata"]["name"]) in self.maps:
            raise self._api_error(409)
        return self._store(namespace, body["metadata"]["name"], body)

    async def replace_namespaced_config_map(self, name: str, namespace: str, body: Mapping[str, Any]) -> Any:
        have = self.maps.get((namespace, name))
        if have is None:
            raise self._api_error(404)
        if have.metadata.resource_version != body["metadata"]["resourceVersion"]:
            raise self._api_error(409)
        return self._store(namespace, name, body)

    async def delete_namespaced_config_map(self, name: str, namespace: str) -> None:
        if self.maps.pop((namespace, name), None) is None:
            raise self._api_error(404)


def _kube_with(core: FakeCore) -> Any:
    from helmops.kubeio.kube import Kube

    kube = Kube.__new__(Kube)
    kube.core = core
    return kube


async def test_kube_ledger_store_creates_its_namespace_and_detects_conflicts() -> None:
    core = FakeCore()
    ledger = Ledger(_kube_with(core), SYSTEM)
    await ledger.record("u", "team/app", Entry("local", "t", "a"))
    assert SYSTEM in core.namespaces  # created when missing (outside a cluster)
    cm = core.maps[(SYSTEM, ledger_name("u"))]
    assert cm.metadata.labels["helmops.cattle.io/ledger"] == "true" and parse(cm.data) == {Entry("local", "t", "a")}
    # another writer changed it: the stale write conflicts, is re-read and retried
    other = Ledger(_kube_with(core), SYSTEM)
    await other.record("u", "team/app", Entry("local", "t", "b"))
    await ledger.record("u", "team/app", Entry("local", "t", "c"))
    assert parse(core.maps[(SYSTEM, ledger_name("u"))].data) == {Entry("local", "t", n) for n in "abc"}
    await ledger.drop("u")
    await ledger.drop("u")  # already gone is fine
    assert core.maps == {}


async def test_drift_correction_never_rolls_back_a_release_that_is_not_this_helmapps() -> None:
    class Drifted:
        """The drift monitor reports drift on the release of this HelmApp's name."""

        def drifted(self, key: tuple[str, str], cluster: str) -> str:
            return "configmap.v1 target/app modified /data/x"

        def cleared(self, key: tuple[str, str], cluster: str) -> None:
            raise AssertionError("nothing was corrected")

        def attach(self, cluster: str, api: object, busy: object) -> None:
            pass

    obj = _obj()
    obj["spec"]["correctDrift"] = {"enabled": True}
    r, kube, rels, _store = _setup(obj)
    r.drift = Drifted()
    rels.releases[("target", "app")] = _rel()  # plain helm's release, same name: refused by the reconcile
    await r.reconcile(KEY)
    assert rels.calls == []  # no rollback (nor anything else)
    assert "ReleaseNotOwned" in [reason for reason, _ in kube.events]
