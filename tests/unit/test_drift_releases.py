"""Drift: release record events update the object index one release at a time, without listing anything
(helmops.drift.releases and DriftMonitor.on_release_event; the API is faked at its edges)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from typing import Any

import pytest
from test_day2_drift import FakeMonitor, _helmapp, _Obj, _release_secret, live_cm

from helmops.drift import monitor as monitor_mod
from helmops.drift import releases as releases_mod
from helmops.drift.releases import ReleaseEvents, ReleaseIndex, SecretView, secret_view
from helmops.kubeio.mapping import Resource
from helmops.kubeio.watch import OVERSIZED, WatchEvent
from helmops.reconcile.manifest import ObjectRef

SECRETS = monitor_mod.SECRETS
CONFIGMAPS = Resource("", "v1", "ConfigMap", "configmaps", True)
CLUSTERROLES = Resource("", "v1", "ClusterRole", "clusterroles", False)
CM = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  message: hi\n"
ROLE = "apiVersion: v1\nkind: ClusterRole\nmetadata:\n  name: {name}\n"
WIDGET = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n"
OWNER = ("apps", "h")


def record(ns: str, release: str, owner: str, revision: int, manifest: str, *, rv: str = "") -> dict[str, Any]:
    """A release Secret as a watch event carries it (parsed JSON)."""
    rel = {"name": release, "version": revision, "manifest": manifest}
    value = base64.b64encode(base64.b64encode(gzip.compress(json.dumps(rel).encode()))).decode()
    labels = {"owner": "helm", "name": release, "status": "deployed", "version": str(revision)}
    labels["helmops.cattle.io/helmapp"] = owner
    meta = {"namespace": ns, "name": f"sh.helm.release.v1.{release}.v{revision}", "labels": labels}
    return {"metadata": {**meta, "resourceVersion": rv or str(revision)}, "data": {"release": value}}


class FakeWatches:
    def __init__(self) -> None:
        self.synced: list[frozenset[Resource]] = []

    def sync(self, resources: Any) -> None:
        self.synced.append(frozenset(resources))

    async def stop(self) -> None:
        pass


def monitor(secrets: list[Any] | None = None, live: dict[str, Any] | None = None) -> Any:
    m = FakeMonitor(secrets or [], live or {})
    m.watches = FakeWatches()
    m.update(_helmapp("h"))
    return m


async def settle(m: Any) -> None:
    """Lets the release events' task apply everything waiting."""
    for _ in range(50):
        await asyncio.sleep(0)
        task = m._release_events._task
        if not len(m._release_events) and (task is None or task.done()):
            return
    raise AssertionError("release events not applied")


def indexed(m: Any) -> dict[ObjectRef, list[tuple[Any, int]]]:
    out: dict[ObjectRef, list[tuple[Any, int]]] = {}
    for ref, entries in m._index._objects.items():
        out[ref] = [(owner, man.revision) for owner, man, _ in entries]
    return out


def ref(name: str, ns: str = "t", kind: str = "ConfigMap") -> ObjectRef:
    return ObjectRef("v1", kind, ns, name)


def test_an_install_event_indexes_the_release_without_listing_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(monitor_mod, "WATCH_DEBOUNCE", 0.0)

    async def go() -> None:
        m = monitor(live={"ConfigMap": [live_cm(message="edited") | {"metadata": {"name": "web", "namespace": "t"}}]})
        m.on_release_event(SECRETS, WatchEvent("ADDED", record("t", "r", "apps.h", 1, CM.format(name="web"))))
        await settle(m)
        assert m.calls == []  # no list: neither the release Secrets nor the ConfigMaps
        assert indexed(m) == {ref("web"): [(OWNER, 1)]}
        assert m._soon is None  # and no full check coming
        assert m.watches.synced == [frozenset({CONFIGMAPS})]
        # the index is what the object watch compares with: an edit of the new release's object is noticed
        edited = {"metadata": {"name": "web", "namespace": "t"}, "data": {"message": "edited"}}
        m.on_event(CONFIGMAPS, WatchEvent("MODIFIED", edited))
        assert m._soon is not None
        await m.stop()

    asyncio.run(go())


def test_a_burst_of_installs_costs_no_list_and_the_next_check_decodes_nothing_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    n = 50
    events = [record("t", f"r{i}", "apps.h", 1, CM.format(name=f"cm{i}")) for i in range(n)]
    listed = [_release_secret("t", f"r{i}", "apps.h", 1, CM.format(name=f"cm{i}")) for i in range(n)]
    decoded: list[str] = []
    real = releases_mod._decode

    def counting(secret: SecretView) -> Any:
        decoded.append(secret.name)
        return real(secret)

    monkeypatch.setattr(releases_mod, "_decode", counting)

    async def go() -> None:
        m = monitor(listed)
        for e in events:
            m.on_release_event(SECRETS, WatchEvent("ADDED", e))
            await asyncio.sleep(0)
        await settle(m)
        assert m.calls == [] and len(indexed(m)) == n and len(decoded) == n
        assert m._soon is None and len(m.watches.synced) == 1  # one new kind, synced once
        await m.check()  # the periodic check: its usual two lists, and no record decoded a second time
        assert len(m.calls) == 2 and len(decoded) == n
        await m.stop()

    asyncio.run(go())


def test_an_upgrade_replaces_the_old_revision_and_late_or_superseded_records_do_not_undo_it() -> None:
    async def go() -> None:
        m = monitor()
        v1 = record("t", "r", "apps.h", 1, CM.format(name="old") + "---\n" + CM.format(name="kept"))
        v2 = record("t", "r", "apps.h", 2, CM.format(name="new") + "---\n" + CM.format(name="kept"))
        m.on_release_event(SECRETS, WatchEvent("ADDED", v1))
        await settle(m)
        assert indexed(m) == {ref("old"): [(OWNER, 1)], ref("kept"): [(OWNER, 1)]}
        # helm marks v1 superseded (it leaves the status=deployed watch), then v2 deployed
        m.on_release_event(SECRETS, WatchEvent("DELETED", v1))
        m.on_release_event(SECRETS, WatchEvent("ADDED", v2))
        await settle(m)
        assert indexed(m) == {ref("new"): [(OWNER, 2)], ref("kept"): [(OWNER, 2)]}
        # a late event of the older revision, or its record going away, changes nothing
        m.on_release_event(SECRETS, WatchEvent("MODIFIED", v1))
        m.on_release_event(SECRETS, WatchEvent("DELETED", v1))
        await settle(m)
        assert indexed(m) == {ref("new"): [(OWNER, 2)], ref("kept"): [(OWNER, 2)]}
        # the same revision again (a new resourceVersion): replaced by itself
        m.on_release_event(SECRETS, WatchEvent("MODIFIED", record("t", "r", "apps.h", 2, CM.format(name="x"), rv="9")))
        await settle(m)
        assert indexed(m) == {ref("x"): [(OWNER, 2)]}
        # uninstalled: the indexed record is deleted
        m.on_release_event(SECRETS, WatchEvent("DELETED", record("t", "r", "apps.h", 2, "", rv="9")))
        await settle(m)
        assert indexed(m) == {} and m.calls == [] and m._soon is None
        await m.stop()

    asyncio.run(go())


def test_a_new_kind_is_watched_at_once_and_kinds_stay_watched_until_a_check() -> None:
    async def go() -> None:
        m = monitor()
        m.on_release_event(SECRETS, WatchEvent("ADDED", record("t", "a", "apps.h", 1, CM.format(name="a"))))
        await settle(m)
        assert m.watches.synced == [frozenset({CONFIGMAPS})]
        both = CM.format(name="b") + "---\n" + ROLE.format(name="role") + "---\n" + WIDGET
        m.on_release_event(SECRETS, WatchEvent("ADDED", record("t", "b", "apps.h", 1, both)))
        await settle(m)
        assert m.watches.synced[-1] == frozenset({CONFIGMAPS, CLUSTERROLES})  # Widget: not served, not watched
        assert ref("role", ns="", kind="ClusterRole") in indexed(m)
        assert all(r.kind != "Widget" for r in indexed(m))
        m.on_release_event(SECRETS, WatchEvent("ADDED", record("t", "c", "apps.h", 1, CM.format(name="c"))))
        await settle(m)
        assert len(m.watches.synced) == 2  # nothing new: no sync
        # b upgraded without its ClusterRole: still watched (only a full check prunes kinds)
        m.on_release_event(SECRETS, WatchEvent("ADDED", record("t", "b", "apps.h", 2, CM.format(name="b"))))
        await settle(m)
        assert len(m.watches.synced) == 2 and CLUSTERROLES in m._kinds
        assert m.calls == []
        await m.stop()

    asyncio.run(go())


def test_untracked_owners_and_planted_namespaces_are_ignored() -> None:
    async def go() -> None:
        m = monitor()
        m.on_release_event(SECRETS, WatchEvent("ADDED", record("t", "x", "elsewhere.x", 1, CM.format(name="x"))))
        # h deploys to "t" only: a record claiming h in another tenant's namespace is not h's
        m.on_release_event(SECRETS, WatchEvent("ADDED", record("tenant-b", "p", "apps.h", 9, CM.format(name="p"))))
        await settle(m)
        assert indexed(m) == {} and m.calls == [] and m._soon is None and m.watches.synced == []
        assert m._release_events._task is None  # not even queued
        await m.stop()

    asyncio.run(go())


def test_what_cannot_be_applied_alone_falls_back_to_a_full_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(monitor_mod, "RELEASE_REFRESH", 0.01)

    async def go() -> None:
        for event in (
            WatchEvent(OVERSIZED, None),  # a gap in the watch, or a record too big to carry
            WatchEvent("ADDED", {**record("t", "r", "apps.h", 1, ""), "data": {"release": "not base64!"}}),
        ):
            m = monitor([_release_secret("t", "r", "apps.h", 1, CM.format(name="web"))])
            m.on_release_event(SECRETS, event)
            await settle(m)
            for _ in range(100):
                await asyncio.sleep(0.01)
                if m._soon_task is not None and m._soon_task.done():
                    break
            assert m.calls[0].startswith("secrets ") and indexed(m) == {ref("web"): [(OWNER, 1)]}
            await m.stop()

    asyncio.run(go())


def test_an_update_during_a_full_check_is_applied_after_it() -> None:
    """The check lists the release Secrets before the install's record exists and replaces the index when it
    ends; the install's event, which came meanwhile, must not be lost under it."""

    async def go() -> None:
        listed = asyncio.Event()
        go_on = asyncio.Event()
        m = monitor()

        class SlowCore:
            async def list_secret_for_all_namespaces(self, label_selector: str) -> Any:
                listed.set()
                await go_on.wait()
                return _Obj(items=[_release_secret("t", "old", "apps.h", 1, CM.format(name="old"))])

        m._core = lambda: SlowCore()
        check = asyncio.create_task(m.check())
        await listed.wait()
        m.on_release_event(SECRETS, WatchEvent("ADDED", record("t", "new", "apps.h", 1, CM.format(name="new"))))
        for _ in range(10):
            await asyncio.sleep(0)
        assert indexed(m) == {}  # waiting for the check's lock
        go_on.set()
        await check
        await settle(m)
        assert indexed(m) == {ref("old"): [(OWNER, 1)], ref("new"): [(OWNER, 1)]}
        await m.stop()

    asyncio.run(go())


def test_the_index_honours_can_read_and_indexes_busy_releases() -> None:
    async def go() -> None:
        m = monitor()
        m._busy = lambda ns, name: True  # helm still works on it: indexed all the same
        asked: list[tuple[Any, ...]] = []

        async def can_read(key: Any, group: str, resource: str, ns: str) -> bool:
            asked.append((key, resource, ns))
            return ns == "t"

        m.can_read = can_read
        manifest = (
            CM.format(name="mine")
            + "---\n"
            + CM.format(name="theirs").replace("name: theirs", "name: theirs\n  namespace: victim")
        )
        m.on_release_event(SECRETS, WatchEvent("ADDED", record("t", "r", "apps.h", 1, manifest)))
        await settle(m)
        assert indexed(m) == {ref("mine"): [(OWNER, 1)]}
        assert asked == [(OWNER, "configmaps", "t"), (OWNER, "configmaps", "victim")]
        await m.stop()

    asyncio.run(go())


def test_a_flood_of_release_events_is_bounded() -> None:
    async def go() -> None:
        applied: list[int] = []

        async def apply(batch: list[tuple[str, SecretView]]) -> None:
            applied.append(len(batch))

        q = ReleaseEvents(apply, 2)
        views = [v for i in range(3) if (v := secret_view(record("t", f"r{i}", "apps.h", 1, ""))) is not None]
        assert len(views) == 3
        assert q.submit("ADDED", views[0]) and q.submit("MODIFIED", views[0])  # the latest per Secret
        assert q.submit("ADDED", views[1])
        assert not q.submit("ADDED", views[2]) and len(q) == 0  # full: dropped, the caller checks instead
        assert q.submit("ADDED", views[2])
        await asyncio.sleep(0)
        assert applied == [1]
        await q.stop()

    asyncio.run(go())


def test_release_index_drop_keeps_other_releases_of_a_shared_object() -> None:
    kinds = {("v1", "ConfigMap"): CONFIGMAPS}
    a = releases_mod.Manifest(
        "t/a@1", "t", "a", 1, "apps.h", [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}}]
    )
    b = releases_mod.Manifest("t/b@1", "t", "b", 1, "apps.g", list(a.objects))
    index = ReleaseIndex()
    index.add(OWNER, a, a.objects, kinds)
    index.add(("apps", "g"), b, b.objects, kinds)
    assert len(list(index.get(ref("s")))) == 2
    assert index.drop(("t", "a")) is a and [e[0] for e in index.get(ref("s"))] == [("apps", "g")]
    assert index.drop(("t", "a")) is None and index.drop(("t", "b")) is b and len(index) == 0


def test_a_record_with_a_version_that_is_no_number_is_skipped_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    """A tenant may write any label: the check skips that record (and says so) and still compares the rest."""
    bad = _release_secret("t", "bad", "apps.h", 1, CM.format(name="bad"))
    bad.metadata.labels["version"] = "one"

    async def go() -> None:
        m = monitor([bad, _release_secret("t", "ok", "apps.h", 1, CM.format(name="ok"))])
        await m.check()
        assert indexed(m) == {ref("ok"): [(OWNER, 1)]}
        await m.stop()

    asyncio.run(go())
    assert "cannot decode release Secret t/sh.helm.release.v1.bad.v1" in caplog.text
