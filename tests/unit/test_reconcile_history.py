"""helmops.reconcile.history: dropping the failed revision a drift correction left behind (pure plan, and the
storage-Secret edit against a fake CoreV1Api)."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from helmops.reconcile.history import DropPlan, SecretHistory, StoredRevision, plan_drop, restored_record
from helmops.reconcile.storage import decode_release, encode_release


def rev(revision: int, status: str, rv: str = "") -> StoredRevision:
    return StoredRevision(f"sh.helm.release.v1.rel.v{revision}", revision, status, rv or str(100 + revision))


def test_failed_newer_revisions_are_deleted_and_the_superseded_current_restored() -> None:
    current = rev(3, "superseded")
    plan = plan_drop([rev(1, "superseded"), rev(2, "superseded"), current, rev(4, "failed")], 3)
    assert plan == DropPlan(("sh.helm.release.v1.rel.v4",), current)


def test_every_failed_newer_revision_goes_and_nothing_else() -> None:
    current = rev(3, "superseded")
    revisions = [
        rev(1, "failed"),
        rev(2, "superseded"),
        current,
        rev(4, "failed"),
        rev(5, "failed"),
        rev(6, "pending-rollback"),
    ]
    plan = plan_drop(revisions, 3)
    assert plan.delete == ("sh.helm.release.v1.rel.v4", "sh.helm.release.v1.rel.v5")  # not the older failed v1
    assert plan.restore == current


def test_superseded_after_is_not_restored_when_nothing_was_dropped() -> None:
    assert plan_drop([rev(2, "superseded"), rev(3, "superseded"), rev(4, "deployed")], 3) == DropPlan((), None)
    assert plan_drop([rev(3, "superseded")], 3) == DropPlan((), None)


def test_deployed_after_is_not_restored() -> None:
    assert plan_drop([rev(3, "deployed"), rev(4, "failed")], 3) == DropPlan(("sh.helm.release.v1.rel.v4",), None)


def test_missing_after_is_not_restored() -> None:
    assert plan_drop([rev(4, "failed")], 3) == DropPlan(("sh.helm.release.v1.rel.v4",), None)


def test_empty_history() -> None:
    assert plan_drop([], 3) == DropPlan((), None)


def test_restored_record_marks_deployed_and_keeps_the_rest() -> None:
    record = {"name": "rel", "version": 3, "info": {"status": "superseded", "description": "Upgrade complete"}}
    out = decode_release(restored_record(encode_release(record)))
    assert out == {"name": "rel", "version": 3, "info": {"status": "deployed", "description": "Upgrade complete"}}
    assert decode_release(restored_record(encode_release({"name": "rel"})))["info"] == {"status": "deployed"}


# --- SecretHistory against a fake CoreV1Api ---


def record(revision: int, status: str) -> dict[str, Any]:
    return {
        "name": "rel",
        "namespace": "apps",
        "version": revision,
        "info": {"status": status, "description": f"revision {revision}"},
        "chart": {"metadata": {"name": "demo", "version": "1.0.0"}},
        "manifest": "",
    }


def secret(revision: int | str, status: str, *, name: str = "rel", rv: str = "", data: bool = True) -> SimpleNamespace:
    labels = {"owner": "helm", "name": name, "status": status, "version": str(revision)}
    rec = record(revision if isinstance(revision, int) else 0, status)
    return SimpleNamespace(
        metadata=SimpleNamespace(
            name=f"sh.helm.release.v1.{name}.v{revision}", labels=labels, resource_version=rv or f"rv-{revision}"
        ),
        data={"release": encode_release(rec)} if data else None,
    )


@dataclass
class FakeCore:
    secrets: list[SimpleNamespace]
    lists: list[tuple[str, str]] = field(default_factory=list)
    deletes: list[tuple[str, str]] = field(default_factory=list)
    patches: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    order: list[str] = field(default_factory=list)

    async def list_namespaced_secret(self, namespace: str, *, label_selector: str) -> SimpleNamespace:
        self.lists.append((namespace, label_selector))
        return SimpleNamespace(items=list(self.secrets))

    async def delete_namespaced_secret(self, name: str, namespace: str) -> None:
        self.deletes.append((name, namespace))
        self.order.append(f"delete {name}")

    async def patch_namespaced_secret(self, name: str, namespace: str, body: dict[str, Any]) -> None:
        self.patches.append((name, namespace, body))
        self.order.append(f"patch {name}")


async def test_drop_failed_deletes_the_failed_revision_and_restores_the_current_one() -> None:
    core = FakeCore([secret(1, "superseded"), secret(2, "superseded", rv="4711"), secret(3, "failed")])
    assert await SecretHistory(core).drop_failed("apps", "rel", 2) is True
    assert core.lists == [("apps", "owner=helm,name=rel")]
    assert core.deletes == [("sh.helm.release.v1.rel.v3", "apps")]
    ((name, ns, body),) = core.patches
    assert (name, ns) == ("sh.helm.release.v1.rel.v2", "apps")
    assert body["metadata"] == {"labels": {"status": "deployed"}, "resourceVersion": "4711"}
    assert set(body) == {"metadata", "data"} and set(body["data"]) == {"release"}
    restored = decode_release(body["data"]["release"])
    assert restored["info"]["status"] == "deployed"
    assert restored == {**record(2, "superseded"), "info": {"status": "deployed", "description": "revision 2"}}
    assert core.order == ["delete sh.helm.release.v1.rel.v3", "patch sh.helm.release.v1.rel.v2"]


async def test_drop_failed_with_nothing_failed_changes_nothing() -> None:
    core = FakeCore([secret(1, "superseded"), secret(2, "deployed")])
    assert await SecretHistory(core).drop_failed("apps", "rel", 2) is False
    assert core.deletes == [] and core.patches == []


async def test_drop_failed_leaves_a_deployed_current_revision_alone() -> None:
    core = FakeCore([secret(2, "deployed"), secret(3, "failed")])
    assert await SecretHistory(core).drop_failed("apps", "rel", 2) is True
    assert core.deletes == [("sh.helm.release.v1.rel.v3", "apps")]
    assert core.patches == []


@pytest.mark.parametrize("bad", ["x", "3a", "-", "1.5"])
async def test_drop_failed_ignores_malformed_version_labels(bad: str) -> None:
    core = FakeCore([secret(2, "superseded"), secret(bad, "failed")])
    assert await SecretHistory(core).drop_failed("apps", "rel", 2) is False
    assert core.deletes == [] and core.patches == []


async def test_drop_failed_with_malformed_and_good_failed_revisions() -> None:
    core = FakeCore([secret(2, "superseded", rv="9"), secret("v3", "failed"), secret(4, "failed")])
    assert await SecretHistory(core).drop_failed("apps", "rel", 2) is True
    assert core.deletes == [("sh.helm.release.v1.rel.v4", "apps")]
    assert [p[0] for p in core.patches] == ["sh.helm.release.v1.rel.v2"]


async def test_drop_failed_with_no_secrets() -> None:
    core = FakeCore([])
    assert await SecretHistory(core).drop_failed("apps", "rel", 2) is False
    assert core.deletes == [] and core.patches == []


async def test_drop_failed_tolerates_missing_labels_and_data_on_unrelated_items() -> None:
    odd = SimpleNamespace(metadata=SimpleNamespace(name="odd", labels=None, resource_version="1"), data=None)
    core = FakeCore([odd, secret(2, "superseded"), secret(3, "failed")])
    assert await SecretHistory(core).drop_failed("apps", "rel", 2) is True
    assert core.deletes == [("sh.helm.release.v1.rel.v3", "apps")]
