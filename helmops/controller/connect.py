"""How the reconciler reaches one cluster, and as whom: the connection (helm driver, release reader, API
client) and the identity a HelmApp acts as there (its serviceAccount, impersonated)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from helmops.api.keys import LOCAL, Key
from helmops.api.objects import HelmApp
from helmops.clusters.connections import ClusterUnreachable, Connections
from helmops.clusters.identity import Identity, ImpersonatingClients
from helmops.desired.targets import ClusterTarget
from helmops.kubeio.kube import Kube
from helmops.reconcile.history import SecretHistory
from helmops.reconcile.release import OWNER_LABEL, ReleaseInfo, ReleaseReader
from helmops.reconcile.step import ClusterTools, ReleaseDriver


class ClusterKube(Protocol):
    """What the reconciler changes on a cluster's namespaces (:class:`helmops.kubeio.kube.Kube`)."""

    @property
    def core(self) -> Any: ...

    async def namespace_exists(self, name: str) -> bool: ...

    async def delete_namespace(self, name: str) -> bool: ...

    async def ensure_namespace_metadata(
        self, name: str, labels: Mapping[str, str], annotations: Mapping[str, str]
    ) -> bool: ...


class LocalKube(ClusterKube, Protocol):
    """The controller's own cluster access, whose ApiClient the local connection shares."""

    api: Any


@dataclass
class Conn:
    """One cluster as the reconciler uses it (the local one, or a helmops.clusters Connection)."""

    name: str
    namespace: str
    driver: ReleaseDriver
    releases: ReleaseReader
    #: the cluster's kubernetes ApiClient (None in unit tests that fake it away).
    api: Any
    kube: ClusterKube
    local: bool = False

    @property
    def core(self) -> Any:
        """The cluster's CoreV1Api (None in unit tests that fake it away)."""
        return self.kube.core

    @property
    def where(self) -> str:
        """ "" for the local cluster, else how status, Events and logs name this one."""
        return "" if self.local else f"cluster {self.name} in namespace {self.namespace}"

    @property
    def tools(self) -> ClusterTools:
        """What the executor runs an action against on this cluster."""
        core = self.core
        return ClusterTools(self.driver, self.releases, SecretHistory(core) if core is not None else None, core=core)


class NoApi:
    """Stands in when a serviceAccount must act but no API client exists to impersonate it with: every
    change is refused as a 403 would be."""

    core = None

    async def namespace_exists(self, name: str) -> bool:
        raise Denied()

    async def delete_namespace(self, name: str) -> bool:
        raise Denied()

    async def ensure_namespace_metadata(
        self, name: str, labels: Mapping[str, str], annotations: Mapping[str, str]
    ) -> bool:
        raise Denied()


class Denied(Exception):
    status = 403


class Connector:
    """Connections to the HelmApp's clusters and API clients acting as its serviceAccount."""

    def __init__(
        self,
        kube: LocalKube,
        driver: ReleaseDriver,
        releases: ReleaseReader,
        clusters: Connections | None,
        identities: ImpersonatingClients,
    ) -> None:
        self.kube, self.driver, self.releases = kube, driver, releases
        #: downstream clusters (None: only the local cluster is reachable).
        self.clusters = clusters
        #: the one source of API clients acting as a HelmApp's serviceAccount (helmops.clusters.identity).
        self.identities = identities
        #: a Kube over an (impersonating) ApiClient; replaceable in tests.
        self.kube_for: Callable[[Any], ClusterKube] = Kube

    def local(self, namespace: str) -> Conn:
        return Conn(LOCAL, namespace, self.driver, self.releases, self.kube.api, self.kube, local=True)

    async def to(self, t: ClusterTarget) -> Conn:
        """How to reach ``t``; raises ClusterUnreachable."""
        if t.cluster is None:
            return self.local(t.namespace)
        if self.clusters is None:
            if t.name == LOCAL and not (t.cluster.get("spec") or {}).get("kubeConfigSecret"):
                return self.local(t.namespace)
            raise ClusterUnreachable(f"{t.describe()}: downstream clusters are not configured in this controller")
        c = await self.clusters.get(t.cluster)
        if c.local:
            return self.local(t.namespace)
        return Conn(c.name, c.namespace, c.driver, c.releases, c.api, c.kube, local=False)

    def api_as(self, helmapp: HelmApp, conn: Conn) -> tuple[Identity, Any]:
        """The identity ``helmapp`` acts as and an ApiClient for it on ``conn``'s cluster (the connection's
        own client when the HelmApp has no serviceAccount)."""
        identity = identity_of(helmapp)
        if conn.api is None:
            return identity, None
        cluster = LOCAL if conn.local else f"{conn.namespace}/{conn.name}"
        return identity, self.identities.api_for(conn.api, cluster, identity)

    def acting(self, helmapp: HelmApp, conn: Conn) -> tuple[Identity, ClusterKube]:
        """The identity and a Kube to change namespaces with on its behalf."""
        identity, api = self.api_as(helmapp, conn)
        if not identity.impersonated:
            return identity, conn.kube
        if api is None:
            return identity, NoApi()
        return identity, self.kube_for(api)


def identity_of(helmapp: HelmApp) -> Identity:
    """Who ``helmapp`` (or a per-target copy of it) acts as: its ``spec.serviceAccount``, in its namespace."""
    return Identity(helmapp.metadata.namespace, helmapp.spec.service_account or None)


# --- wording shared by the reconcile and finalize paths ----------------------------------------------
def brief(exc: BaseException) -> str:
    """A one-line, secret-free description of an API/connection failure."""
    status = getattr(exc, "status", None)
    if status is not None and getattr(exc, "reason", None):
        return f"{status} {exc.reason}"  # type: ignore[attr-defined]
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__


def chart_ref(helmapp: HelmApp) -> str:
    """What identifies a chart fetch (targets may override helm.version/repo/chart)."""
    spec = helmapp.spec
    helm = spec.helm
    return json.dumps([helm.repo, helm.chart, helm.version or "", spec.helm_secret_name], default=str)


def key_of(helmapp: HelmApp) -> Key:
    return helmapp.key


def helmapp_name(key: Key) -> str:
    return f"{key[0]}/{key[1]}"


def log_extra(key: Key, t: ClusterTarget | None = None) -> dict[str, str]:
    """Structured log fields naming the HelmApp (and the cluster)."""
    out = {"helmapp": helmapp_name(key)}
    if t is not None:
        out["cluster"] = t.id
    return out


def not_ours(live: ReleaseInfo) -> str:
    """Why a live release is not this HelmApp's to uninstall."""
    where = f"release {live.name} in namespace {live.namespace}"
    owner = live.labels.get(OWNER_LABEL)
    return f"{where} belongs to another HelmApp ({owner})" if owner else f"{where} was not installed by this HelmApp"


def plain(message: str) -> str:
    """Messages from the values package may already name the cluster; status adds the prefix itself."""
    if message.startswith("cluster ") and ": " in message:
        return message.split(": ", 1)[1]
    return message
