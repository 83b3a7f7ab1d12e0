"""Connections to the clusters HelmApps deploy to: one helm driver and one ``kubernetes.aio`` ApiClient each.

A Fleet Cluster is reached through its ``spec.kubeConfigSecret`` (key ``value``) in the Cluster's own
namespace; ``spec.kubeConfigSecretNamespace`` may name another namespace only when the operator lists it
(``--kubeconfig-secret-namespaces``), since a tenant could otherwise deploy with another tenant's
credentials — a refused Secret is never read. A Cluster named ``local`` without such a Secret is the cluster
the controller runs in (as the CLI treats it). Connections are cached per Cluster and rebuilt when the
Secret's resourceVersion changes.

The Secret's kubeconfig is never used as written: :mod:`helmops.clusters.kubeconfig` reduces it to one
cluster, user and context with inline credentials and refuses local file paths, ``exec``/``auth-provider``
(unless the operator allows them) and ``insecure-skip-tls-verify`` (likewise). helm gets that sanitized
kubeconfig (0600, in a private 0700 directory) and an environment without the controller's own cluster
settings (in-cluster service variables, ``KUBECONFIG``, ``HELM_KUBE*``), so it cannot fall back to the
controller's identity; the Python client is configured from the same sanitized values, never by a loader
that could read a file or the controller's config.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helmops.api.keys import LOCAL
from helmops.clusters.errors import ClusterUnreachable
from helmops.clusters.kubeconfig import Kubeconfig, KubeconfigRefused, parse, sanitize
from helmops.clusters.uniqueness import IDENTITY_NAMESPACE, PROBE_TIMEOUT, DuplicateCluster, Uniqueness
from helmops.helm.driver import HelmDriver
from helmops.kubeio.client import aio_client, client_configuration, core_v1, write_private
from helmops.kubeio.kube import Kube
from helmops.reconcile.release import KubeReleaseReader

log = logging.getLogger("helmops.clusters")


@dataclass
class Connection:
    """Everything the controller needs to act on one cluster."""

    #: Fleet cluster name and namespace (the Cluster object's).
    name: str
    namespace: str
    driver: HelmDriver
    api: Any
    local: bool = False
    #: the kubeconfig Secret's resourceVersion this connection was built from ("" for the local cluster).
    secret_version: str = ""
    tmpdir: Path | None = None
    #: the UID of the cluster's kube-system namespace (None until read; see helmops.clusters.uniqueness).
    identity: str | None = None
    identity_tried: float = 0.0
    #: this cluster's Kubernetes access (namespaces, Events); built once per connection.
    kube: Kube = field(init=False)
    core: Any = field(init=False)
    releases: KubeReleaseReader = field(init=False)

    def __post_init__(self) -> None:
        self.kube = Kube(self.api)
        self.core = self.kube.core
        self.releases = KubeReleaseReader(self.core)

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"

    async def close(self) -> None:
        if self.local:
            return
        with contextlib.suppress(Exception):
            await self.api.close()
        with contextlib.suppress(Exception):
            await self.driver.close()
        if self.tmpdir is not None:
            await asyncio.to_thread(shutil.rmtree, self.tmpdir, True)


#: seconds before a failed identity read is tried again.
IDENTITY_RETRY = 30.0


async def read_identity(core: Any, where: str) -> str | None:
    """The UID of the ``kube-system`` namespace through ``core`` (None when it cannot be read: the API is down
    or the credentials may not read it). Bounded in time: it runs while a reconcile waits for the cluster."""
    try:
        ns = await asyncio.wait_for(core.read_namespace(IDENTITY_NAMESPACE), PROBE_TIMEOUT)
        uid = str(ns.metadata.uid or "")
    except Exception as exc:
        log.debug("%s: the %s namespace could not be read (%s)", where, IDENTITY_NAMESPACE, type(exc).__name__)
        return None
    return uid or None


#: environment variables through which helm (client-go) would reach a cluster other than the one given:
#: in-cluster service discovery (with the pod's service-account token) and helm's own ``--kube-*`` defaults.
_CLUSTER_ENV = ("KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT")


def downstream_helm_env(env: Mapping[str, str]) -> dict[str, str]:
    """The controller's environment without anything that names a cluster or credentials, for helm on a
    downstream cluster: only the sanitized ``--kubeconfig`` decides where helm goes and as whom."""
    return {
        k: v for k, v in env.items() if k not in _CLUSTER_ENV and not k.startswith(("KUBERNETES_SERVICE_", "HELM_KUBE"))
    }


def secret_namespace_allowed(cluster_namespace: str, secret_namespace: str, allowed: Iterable[str]) -> bool:
    """A Cluster's kubeconfig Secret is read from its own namespace, or one the operator listed (``*``: any)."""
    if secret_namespace == cluster_namespace:
        return True
    names = set(allowed)
    return "*" in names or secret_namespace in names


class Connections:
    """The cache of per-cluster connections (the local one is given and never closed here)."""

    def __init__(
        self,
        local_api: Any,
        local_driver: HelmDriver,
        *,
        helm: str = "helm",
        helm_concurrency: int = 4,
        term_grace: float = 20.0,
        allow_exec: bool = False,
        allow_insecure: bool = False,
        secret_namespaces: Iterable[str] = (),
    ) -> None:
        self._local_api = local_api
        self._local_core: Any = core_v1(local_api)
        self._local_driver = local_driver
        self._helm, self._concurrency, self._term_grace = helm, helm_concurrency, term_grace
        self.allow_exec, self.allow_insecure = allow_exec, allow_insecure
        #: namespaces besides a Cluster's own its kubeconfig Secret may be read from (operator setting).
        self.secret_namespaces = frozenset(n.strip() for n in secret_namespaces if n.strip())
        self._cache: dict[tuple[str, str], Connection] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._local_kube: Kube | None = None
        self._local_id: str | None = None
        self._local_tried = -IDENTITY_RETRY
        self._uniqueness = Uniqueness(
            lambda c: self._identity_of(c), lambda: self._local_identity(), lambda ns: self._list_clusters(ns)
        )

    def local(self, namespace: str) -> Connection:
        """The controller's own cluster, named ``local`` in ``namespace`` (the HelmApp's)."""
        key = (namespace, LOCAL)
        conn = self._cache.get(key)
        if conn is None or not conn.local:
            conn = self._cache[key] = Connection(LOCAL, namespace, self._local_driver, self._local_api, local=True)
        return conn

    async def get(self, cluster: Mapping[str, Any]) -> Connection:
        """The connection for a Fleet Cluster object; raises :class:`ClusterUnreachable`, and
        :class:`DuplicateCluster` when an earlier Cluster object (or the local cluster) reaches the same
        cluster (:mod:`helmops.clusters.uniqueness`)."""
        conn = await self._connection(cluster)
        if not conn.local:
            await self._uniqueness.check(cluster, await self._identity(conn))
        return conn

    async def _identity(self, conn: Connection) -> str | None:
        """The UID of the connection's ``kube-system`` namespace, read once per connection (a failed read is
        tried again after a while; None meanwhile)."""
        if conn.identity is not None or conn.local:
            return conn.identity
        now = time.monotonic()
        if conn.identity_tried and now - conn.identity_tried < IDENTITY_RETRY:
            return None
        conn.identity_tried = now
        conn.identity = await read_identity(conn.core, conn.id)
        return conn.identity

    async def _local_identity(self) -> str | None:
        if self._local_id is None and time.monotonic() - self._local_tried >= IDENTITY_RETRY:
            self._local_tried = time.monotonic()
            self._local_id = await read_identity(self._local_core, "the local cluster")
        return self._local_id

    async def _identity_of(self, cluster: Mapping[str, Any]) -> str | None:
        """Another Cluster object's identity, for the uniqueness check (None: cannot be told)."""
        spec = cluster.get("spec") or {}
        if not spec.get("kubeConfigSecret"):
            name = str((cluster.get("metadata") or {}).get("name") or "")
            return await self._local_identity() if name == LOCAL else None
        meta = cluster.get("metadata") or {}
        cached = self._cache.get((str(meta.get("namespace") or ""), str(meta.get("name") or "")))
        if cached is not None and not cached.local:  # its Secret is re-read when that Cluster itself is used
            return await self._identity(cached)
        try:
            conn = await self._connection(cluster)
        except ClusterUnreachable:
            return None
        return await self._identity(conn)

    async def _list_clusters(self, namespace: str) -> list[dict[str, Any]]:
        if self._local_kube is None:
            self._local_kube = Kube(self._local_api)
        try:
            return await self._local_kube.list_clusters(namespace)
        except Exception as exc:  # the check is skipped this time (logged), the reconcile goes on
            log.info("listing Cluster objects in namespace %s for the uniqueness check failed: %s", namespace, exc)
            return []

    async def _connection(self, cluster: Mapping[str, Any]) -> Connection:
        """The (cached) connection for a Fleet Cluster object, without the uniqueness check."""
        meta = cluster.get("metadata") or {}
        spec = cluster.get("spec") or {}
        name, namespace = str(meta.get("name") or ""), str(meta.get("namespace") or "")
        where = f"cluster {name} in namespace {namespace}"
        secret_name = spec.get("kubeConfigSecret")
        if not secret_name:
            if name == LOCAL:
                return self.local(namespace)
            raise ClusterUnreachable(f"{where}: no kubeConfigSecret to reach it")
        secret_ns = str(spec.get("kubeConfigSecretNamespace") or namespace)
        key = (namespace, name)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            if not secret_namespace_allowed(namespace, secret_ns, self.secret_namespaces):
                stale = self._cache.pop(key, None)
                if stale is not None and not stale.local:
                    await stale.close()
                raise ClusterUnreachable(
                    f"{where}: kubeConfigSecretNamespace {secret_ns} is not the Cluster's namespace and the "
                    "operator does not allow kubeconfig Secrets from it (--kubeconfig-secret-namespaces); "
                    "the Secret was not read"
                )
            secret = await self._read_secret(secret_ns, secret_name, where)
            version = str(secret.metadata.resource_version or "")
            cached = self._cache.get(key)
            if cached is not None and not cached.local and cached.secret_version == version:
                return cached
            if cached is not None:
                self._cache.pop(key, None)
                await cached.close()
            conn = await self._connect(name, namespace, secret, f"{secret_ns}/{secret_name}", where)
            self._cache[key] = conn
            log.info("%s: connection built from kubeconfig Secret %s/%s", where, secret_ns, secret_name)
            return conn

    async def forget(self, namespace: str, name: str) -> None:
        """Drops the cached connection (the Cluster object was deleted)."""
        conn = self._cache.pop((namespace, name), None)
        self._uniqueness.forget(namespace, name)
        if conn is not None:
            await conn.close()

    async def _read_secret(self, namespace: str, name: str, where: str) -> Any:
        from kubernetes.aio.client.exceptions import ApiException

        try:
            return await self._local_core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise ClusterUnreachable(f"{where}: kubeconfig secret {namespace}/{name} not found") from None
            raise ClusterUnreachable(
                f"{where}: reading kubeconfig secret {namespace}/{name}: {exc.status} {exc.reason}"
            ) from None

    async def _connect(self, name: str, namespace: str, secret: Any, ref: str, where: str) -> Connection:

        raw = (secret.data or {}).get("value")
        if not raw:
            raise ClusterUnreachable(f"{where}: kubeconfig secret {ref} has no key 'value'")
        try:
            kc = await asyncio.to_thread(self._sanitize, raw)
        except KubeconfigRefused as exc:
            raise ClusterUnreachable(f"{where}: kubeconfig secret {ref} refused: {exc.message}") from None
        tmpdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="helmops-cluster-"))
        try:
            path = await asyncio.to_thread(write_private, tmpdir, "kubeconfig", kc.yaml().encode())
            await asyncio.to_thread((tmpdir / "helm").mkdir, 0o700)
            cfg = await client_configuration(kc, tmpdir)
            api: Any = aio_client(cfg)  # bounded JSON parsing (helmops.kubeio)
            try:
                driver = await HelmDriver.create(
                    executable=self._helm,
                    kubeconfig=path,
                    concurrency=self._concurrency,
                    work_dir=tmpdir / "helm",
                    term_grace=self._term_grace,
                    base_env=downstream_helm_env(os.environ),
                )
            except BaseException:
                await api.close()
                raise
        except ClusterUnreachable:
            await asyncio.to_thread(shutil.rmtree, tmpdir, True)
            raise
        except Exception as exc:
            await asyncio.to_thread(shutil.rmtree, tmpdir, True)
            kind = type(exc).__name__
            raise ClusterUnreachable(f"{where}: kubeconfig secret {ref} is unusable ({kind})") from None
        # One cap on helm processes for the whole controller, whatever the number of clusters.
        driver.share_slots(self._local_driver.slots)
        version = str(secret.metadata.resource_version or "")
        return Connection(name, namespace, driver, api, secret_version=version, tmpdir=tmpdir)

    def _sanitize(self, raw: str | bytes) -> Kubeconfig:
        """Decodes, parses and sanitizes the Secret's kubeconfig (CPU work: runs in a thread)."""
        try:
            data = base64.b64decode(raw)
        except ValueError:
            raise KubeconfigRefused("the Secret's value is not base64") from None
        return sanitize(parse(data), allow_exec=self.allow_exec, allow_insecure=self.allow_insecure)

    async def close(self) -> None:
        for conn in list(self._cache.values()):
            await conn.close()
        self._cache.clear()


__all__ = [
    "ClusterUnreachable",
    "Connection",
    "Connections",
    "DuplicateCluster",
    "downstream_helm_env",
    "read_identity",
    "secret_namespace_allowed",
]
