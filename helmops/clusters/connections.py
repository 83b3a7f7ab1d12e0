"""Connections to the clusters HelmApps deploy to: one helm driver and one ``kubernetes.aio`` ApiClient each.

A Fleet Cluster is reached through its ``spec.kubeConfigSecret`` (key ``value``, in
``spec.kubeConfigSecretNamespace`` or the Cluster's namespace). A Cluster named ``local`` without such a
Secret is the cluster the controller runs in (as the CLI treats it). Connections are cached per Cluster and
rebuilt when the Secret's resourceVersion changes. The kubeconfig is written 0600 into a private (0700)
directory for helm; kubeconfigs with ``exec`` credential plugins or ``insecure-skip-tls-verify`` are refused
unless the controller allows them, since a Secret's author would otherwise choose commands the controller
runs or turn off server verification.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from helmops.helm.driver import HelmDriver
from helmops.kubeio.client import aio_client
from helmops.reconcile.release import KubeReleaseReader

log = logging.getLogger("helmops.clusters")

LOCAL = "local"


class ClusterUnreachable(Exception):
    """The cluster cannot be reached (no/invalid kubeconfig Secret, refused kubeconfig, API down).

    The message never contains the kubeconfig or its credentials."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


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
    core: Any = field(init=False)
    releases: KubeReleaseReader = field(init=False)

    def __post_init__(self) -> None:
        from kubernetes.aio import client as kclient

        self.core = kclient.CoreV1Api(self.api)
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


def check_kubeconfig(config: Any, *, allow_exec: bool, allow_insecure: bool) -> str | None:
    """Why a kubeconfig is refused (None when acceptable). Only structure is inspected, never echoed."""
    if not isinstance(config, Mapping):
        return "the kubeconfig is not a YAML map"
    for user in config.get("users") or []:
        u = (user or {}).get("user") if isinstance(user, Mapping) else None
        if isinstance(u, Mapping) and u.get("exec") and not allow_exec:
            return "the kubeconfig uses an exec credential plugin (allow with --allow-exec-kubeconfig)"
        if isinstance(u, Mapping) and u.get("auth-provider") and not allow_exec:
            return "the kubeconfig uses an auth-provider plugin (allow with --allow-exec-kubeconfig)"
    for cluster in config.get("clusters") or []:
        c = (cluster or {}).get("cluster") if isinstance(cluster, Mapping) else None
        if isinstance(c, Mapping) and c.get("insecure-skip-tls-verify") and not allow_insecure:
            return "the kubeconfig sets insecure-skip-tls-verify (allow with --allow-insecure-kubeconfig)"
    if not config.get("clusters"):
        return "the kubeconfig names no cluster"
    return None


def _write_private(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


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
    ) -> None:
        from kubernetes.aio import client as kclient

        self._local_api = local_api
        self._local_core: Any = kclient.CoreV1Api(local_api)
        self._local_driver = local_driver
        self._helm, self._concurrency, self._term_grace = helm, helm_concurrency, term_grace
        self.allow_exec, self.allow_insecure = allow_exec, allow_insecure
        self._cache: dict[tuple[str, str], Connection] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def local(self, namespace: str) -> Connection:
        """The controller's own cluster, named ``local`` in ``namespace`` (the HelmApp's)."""
        key = (namespace, LOCAL)
        conn = self._cache.get(key)
        if conn is None or not conn.local:
            conn = self._cache[key] = Connection(LOCAL, namespace, self._local_driver, self._local_api, local=True)
        return conn

    async def get(self, cluster: Mapping[str, Any]) -> Connection:
        """The connection for a Fleet Cluster object; raises :class:`ClusterUnreachable`."""
        meta = cluster.get("metadata") or {}
        spec = cluster.get("spec") or {}
        name, namespace = str(meta.get("name") or ""), str(meta.get("namespace") or "")
        where = f"cluster {name} in namespace {namespace}"
        secret_name = spec.get("kubeConfigSecret")
        if not secret_name:
            if name == LOCAL:
                return self.local(namespace)
            raise ClusterUnreachable(f"{where}: no kubeConfigSecret to reach it")
        secret_ns = spec.get("kubeConfigSecretNamespace") or namespace
        key = (namespace, name)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
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
        from kubernetes.aio import client as kclient
        from kubernetes.aio import config as kconfig

        raw = (secret.data or {}).get("value")
        if not raw:
            raise ClusterUnreachable(f"{where}: kubeconfig secret {ref} has no key 'value'")
        try:
            data = base64.b64decode(raw)
            config = yaml.safe_load(data)
        except (ValueError, yaml.YAMLError):
            raise ClusterUnreachable(f"{where}: kubeconfig secret {ref} does not hold a YAML kubeconfig") from None
        problem = check_kubeconfig(config, allow_exec=self.allow_exec, allow_insecure=self.allow_insecure)
        if problem:
            raise ClusterUnreachable(f"{where}: kubeconfig secret {ref} refused: {problem}")
        tmpdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="helmops-cluster-"))
        try:
            path = await asyncio.to_thread(_write_private, tmpdir, "kubeconfig", data)
            await asyncio.to_thread((tmpdir / "helm").mkdir, 0o700)
            cfg = kclient.Configuration()
            loader: Any = kconfig
            await loader.load_kube_config(config_file=str(path), client_configuration=cfg)
            api: Any = aio_client(cfg)  # bounded JSON parsing (helmops.kubeio)
            try:
                driver = await HelmDriver.create(
                    executable=self._helm,
                    kubeconfig=path,
                    concurrency=self._concurrency,
                    work_dir=tmpdir / "helm",
                    term_grace=self._term_grace,
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
        driver._sem = self._local_driver._sem
        version = str(secret.metadata.resource_version or "")
        return Connection(name, namespace, driver, api, secret_version=version, tmpdir=tmpdir)

    async def close(self) -> None:
        for conn in list(self._cache.values()):
            await conn.close()
        self._cache.clear()


__all__ = ["LOCAL", "ClusterUnreachable", "Connection", "Connections", "check_kubeconfig"]
