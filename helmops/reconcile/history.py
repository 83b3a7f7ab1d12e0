"""The one hand edit helmops makes to Helm's release storage: after a failed drift correction (without
``correctDrift.keepFailHistory``) the failed revision is deleted and the revision it superseded is marked
deployed again, so the history reads as if the attempt never happened.

The choice of what to delete and restore is pure (:func:`plan_drop`); :class:`SecretHistory` applies it to
the storage Secrets of one cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from helmops.reconcile.storage import decode_release, encode_release


@dataclass(frozen=True)
class StoredRevision:
    """One Helm storage Secret, as far as the history edit needs it."""

    secret: str
    revision: int
    status: str
    resource_version: str
    #: the ``release`` data value as the API returns it.
    release: str = ""


@dataclass(frozen=True)
class DropPlan:
    #: storage Secrets of failed revisions newer than the one rolled back to.
    delete: tuple[str, ...]
    #: the revision to mark deployed again (None: nothing to restore).
    restore: StoredRevision | None


def plan_drop(revisions: Sequence[StoredRevision], after: int) -> DropPlan:
    """Failed revisions newer than ``after`` go; ``after`` is restored to deployed when helm marked it
    superseded during the failed rollback (and only then: a history with nothing dropped is left alone)."""
    delete = tuple(r.secret for r in revisions if r.revision > after and r.status == "failed")
    current = next((r for r in revisions if r.revision == after), None)
    restore = current if delete and current is not None and current.status == "superseded" else None
    return DropPlan(delete, restore)


def restored_record(value: str) -> str:
    """The ``release`` value of a superseded revision, marked deployed."""
    record = decode_release(value)
    record.setdefault("info", {})["status"] = "deployed"
    return encode_release(record)


def _revision(labels: Mapping[str, str]) -> int | None:
    try:
        return int(labels.get("version") or 0)
    except ValueError:
        return None


class SecretHistory:
    """:class:`helmops.reconcile.step.ReleaseHistory` over one cluster's CoreV1Api (Helm's ``secret``
    storage driver)."""

    def __init__(self, core: Any) -> None:
        self._core = core

    async def drop_failed(self, namespace: str, name: str, after: int) -> bool:
        """True if a failed revision was dropped."""
        listing = await self._core.list_namespaced_secret(namespace, label_selector=f"owner=helm,name={name}")
        revisions: list[StoredRevision] = []
        for item in listing.items or []:
            labels = dict(item.metadata.labels or {})
            rev = _revision(labels)
            if rev is None:
                continue
            revisions.append(
                StoredRevision(
                    secret=item.metadata.name,
                    revision=rev,
                    status=str(labels.get("status") or ""),
                    resource_version=str(item.metadata.resource_version),
                    release=str((item.data or {}).get("release", "")),
                )
            )
        plan = plan_drop(revisions, after)
        for secret in plan.delete:
            await self._core.delete_namespaced_secret(secret, namespace)
        if plan.restore is not None:
            patch = {
                "metadata": {"labels": {"status": "deployed"}, "resourceVersion": plan.restore.resource_version},
                "data": {"release": restored_record(plan.restore.release)},
            }
            await self._core.patch_namespaced_secret(plan.restore.secret, namespace, patch)
        return bool(plan.delete)


__all__ = ["DropPlan", "SecretHistory", "StoredRevision", "plan_drop", "restored_record"]
