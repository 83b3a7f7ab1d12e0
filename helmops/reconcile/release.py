"""The live release, read cheaply from Helm's storage Secrets (no helm process)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

FINGERPRINT_LABEL = "helmops.cattle.io/fingerprint"
MANAGED_LABEL = "helmops.cattle.io/managed-by"
#: which HelmApp a release belongs to (``<namespace>.<name>``, or a hash when that is not a label value).
OWNER_LABEL = "helmops.cattle.io/helmapp"
HELM_STORAGE_SELECTOR = "owner=helm,name={name}"


@dataclass(frozen=True)
class ReleaseInfo:
    """The newest revision of a release as Helm's storage labels describe it."""

    name: str
    namespace: str
    revision: int
    status: str
    fingerprint: str | None
    updated: datetime | None
    labels: Mapping[str, str] = field(default_factory=dict)


_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


def owner_value(namespace: str, name: str) -> str:
    """The OWNER_LABEL value for a HelmApp."""
    text = f"{namespace}.{name}"
    if _LABEL_VALUE.match(text):
        return text
    return "sha256-" + hashlib.sha256(text.encode()).hexdigest()[:56]


def foreign_owner(release: ReleaseInfo | None, namespace: str, name: str) -> str | None:
    """The owner label of a release that belongs to another HelmApp (None if ours, unowned or absent)."""
    if release is None:
        return None
    owner = release.labels.get(OWNER_LABEL)
    return owner if owner and owner != owner_value(namespace, name) else None


def labelled_ours(release: ReleaseInfo | None, namespace: str, name: str) -> bool:
    """The release's storage labels name this HelmApp (every revision helmops writes carries them)."""
    return release is not None and release.labels.get(OWNER_LABEL) == owner_value(namespace, name)


@dataclass(frozen=True)
class Ownership:
    """Whether this HelmApp may upgrade, recover or uninstall a live release."""

    allowed: bool
    #: acting takes over a release this HelmApp did not create (spec.helm.takeOwnership).
    adopt: bool = False
    #: why not (status condition, Event and log line).
    refusal: str = ""
    #: the other HelmApp's owner label, when that is the reason.
    owner: str | None = None


def ownership(
    release: ReleaseInfo | None, namespace: str, name: str, *, recorded: bool, take_ownership: bool
) -> Ownership:
    """A release is this HelmApp's when its labels name this HelmApp, or when it carries no owner label and
    the controller's ledger recorded it. Anything else is left alone unless takeOwnership asks to adopt an
    unlabelled release; a release labelled for another HelmApp is never taken, as two HelmApps would then
    fight over it. An absent release is free to install."""
    if release is None or labelled_ours(release, namespace, name):
        return Ownership(True)
    where = f"release {release.name} in namespace {release.namespace}"
    owner = release.labels.get(OWNER_LABEL)
    if owner:
        return Ownership(
            False,
            refusal=f"{where} belongs to another HelmApp ({owner}); choose another spec.helm.releaseName or namespace",
            owner=owner,
        )
    if recorded:
        return Ownership(True)
    if take_ownership:
        return Ownership(True, adopt=True)
    return Ownership(
        False,
        refusal=f"{where} exists and was not installed by this HelmApp; set spec.helm.takeOwnership to adopt it",
    )


class ReleaseReader(Protocol):
    async def read(self, namespace: str, name: str) -> ReleaseInfo | None: ...


def releases_from_secrets(secrets: Iterable[tuple[str, Mapping[str, str], Any]]) -> list[ReleaseInfo]:
    """Groups ``(namespace, labels, creationTimestamp)`` of storage Secrets by release; newest revision each."""
    groups: dict[tuple[str, str], list[tuple[Mapping[str, str], Any]]] = {}
    for namespace, labels, created in secrets:
        if labels.get("name"):
            groups.setdefault((namespace, labels["name"]), []).append((labels, created))
    out = [release_from_secrets(ns, name, pairs) for (ns, name), pairs in sorted(groups.items())]
    return [r for r in out if r is not None]


def _updated(labels: Mapping[str, str], created: Any) -> datetime | None:
    raw = labels.get("modifiedAt") or labels.get("createdAt")
    if raw and raw.isdigit():
        return datetime.fromtimestamp(int(raw), tz=UTC)
    if isinstance(created, datetime):
        return created if created.tzinfo else created.replace(tzinfo=UTC)
    if isinstance(created, str) and created:
        return datetime.fromisoformat(created.replace("Z", "+00:00"))
    return None


def release_from_secrets(
    namespace: str, name: str, secrets: Iterable[tuple[Mapping[str, str], Any]]
) -> ReleaseInfo | None:
    """Picks the newest revision from ``(labels, creationTimestamp)`` pairs of Helm storage Secrets.

    A release whose newest revision is ``uninstalled`` (kept history) counts as absent."""
    newest: tuple[int, Mapping[str, str], Any] | None = None
    for labels, created in secrets:
        if labels.get("owner") != "helm" or labels.get("name") != name:
            continue
        try:
            rev = int(labels.get("version", "0"))
        except ValueError:
            continue
        if newest is None or rev > newest[0]:
            newest = (rev, labels, created)
    if newest is None:
        return None
    rev, labels, created = newest
    status = labels.get("status", "unknown")
    if status == "uninstalled":
        return None
    return ReleaseInfo(
        name=name,
        namespace=namespace,
        revision=rev,
        status=status,
        fingerprint=labels.get(FINGERPRINT_LABEL),
        updated=_updated(labels, created),
        labels=dict(labels),
    )


class KubeReleaseReader:
    """Lists the release's storage Secrets with one API call (``kubernetes.aio`` CoreV1Api)."""

    def __init__(self, core_v1: Any) -> None:
        self._core = core_v1

    async def read(self, namespace: str, name: str) -> ReleaseInfo | None:
        result = await self._core.list_namespaced_secret(
            namespace, label_selector=HELM_STORAGE_SELECTOR.format(name=name)
        )
        pairs = [(dict(item.metadata.labels or {}), item.metadata.creation_timestamp) for item in result.items or []]
        return release_from_secrets(namespace, name, pairs)
