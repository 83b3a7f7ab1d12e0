"""The helm driver: one ``pyhelm3.Client`` per cluster, Fleet's helm options, fair helm slots (slots.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyhelm3
import semver
from pyhelm3 import errors as helm_errors

from helmops.helm.command import CallOptions, HelmCommand, call_options
from helmops.helm.slots import HelmSlots

log = logging.getLogger("helmops.helm")

DEFAULT_TIMEOUT_SECONDS = 300  # helm's own default --timeout (5m0s)
PROCESS_MARGIN_SECONDS = 60
#: opt-in (off by default): helm skips its client-side OpenAPI validation of the rendered manifests. The API
#: server still validates every object (types, required fields); what is lost is helm failing an install on
#: an *unknown* field, which the server then drops with a warning. Measured gain: docs/benchmarks.md.
DISABLE_OPENAPI_VALIDATION_ENV = "HELMOPS_HELM_DISABLE_OPENAPI_VALIDATION"


def openapi_validation_disabled(env: Mapping[str, str]) -> bool:
    return env.get(DISABLE_OPENAPI_VALIDATION_ENV, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class ReleaseSpec:
    """One release as Fleet's agent would apply it (options already merged and defaulted)."""

    name: str
    namespace: str
    chart_path: Path
    chart_version: str
    values: Mapping[str, Any]
    labels: Mapping[str, str] = field(default_factory=dict)
    atomic: bool = False
    force: bool = False
    take_ownership: bool = True
    timeout_seconds: int = 0
    wait_for_jobs: bool = False
    history_max: int = 2
    skip_schema_validation: bool = False
    create_namespace: bool = True
    enable_dns: bool = True
    service_account: str | None = None
    #: where ``service_account`` lives; None = the release namespace.
    service_account_namespace: str | None = None
    description: str | None = None
    #: literal strings (Secret-derived values) masked in helm's error text and logs.
    redact: tuple[str, ...] = field(default=(), repr=False)
    #: who the helm slot is charged to (the HelmApp's namespace); "" = ``service_account_namespace``.
    tenant: str = ""

    @property
    def slot_tenant(self) -> str:
        return self.tenant or self.service_account_namespace or self.namespace


@dataclass(frozen=True)
class ReleaseOutcome:
    revision: int
    status: str
    #: the rendered manifest helm printed with the release (``--output json``): which objects it holds,
    #: without reading the release record back. May hold Secret manifests: never logged (repr=False).
    manifest: str | None = field(default=None, repr=False)


def impersonation_flags(namespace: str, service_account: str | None) -> list[str]:
    """Fleet's ``serviceAccount``: helm acts as that service account of the release namespace."""
    if not service_account:
        return []
    return ["--kube-as-user", f"system:serviceaccount:{namespace}:{service_account}"]


def apply_flags(spec: ReleaseSpec, *, disable_openapi_validation: bool = False) -> list[str]:
    """upgrade/install flags pyhelm3 cannot express (or expresses differently from Fleet)."""
    flags: list[str] = []
    if disable_openapi_validation:  # the operator's opt-in (DISABLE_OPENAPI_VALIDATION_ENV)
        flags.append("--disable-openapi-validation")
    if spec.labels:
        flags += ["--labels", ",".join(f"{k}={v}" for k, v in sorted(spec.labels.items()))]
    if spec.skip_schema_validation:
        flags.append("--skip-schema-validation")
    if spec.enable_dns:
        flags.append("--enable-dns")
    if spec.timeout_seconds > 0:
        flags.append("--wait")
        if spec.wait_for_jobs:
            flags.append("--wait-for-jobs")
    return flags


def helm_timeout(timeout_seconds: int) -> int:
    return timeout_seconds if timeout_seconds > 0 else DEFAULT_TIMEOUT_SECONDS


class HelmDriver:
    """Runs helm for one cluster. Use :meth:`create` (the pyhelm3 Client constructor blocks)."""

    def __init__(
        self,
        client: pyhelm3.Client,
        command: HelmCommand,
        *,
        concurrency: int,
        work_dir: Path,
        term_grace: float = 20.0,
        per_tenant: int | None = None,
        disable_openapi_validation: bool = False,
    ) -> None:
        self.client = client
        self.command = command
        self._slots = HelmSlots(concurrency, per_tenant=per_tenant)
        self._work_dir = work_dir
        self._disable_openapi_validation = disable_openapi_validation
        self._term_grace = term_grace
        self._held: dict[tuple[str, str], int] = {}
        self.active = 0

    @classmethod
    async def create(
        cls,
        *,
        executable: str = "helm",
        kubeconfig: Path | None = None,
        concurrency: int = 4,
        work_dir: Path | None = None,
        term_grace: float = 20.0,
        base_env: Mapping[str, str] | None = None,
        per_tenant: int | None = None,
    ) -> HelmDriver:
        env = dict(base_env if base_env is not None else os.environ)
        env.pop("KUBECONFIG", None)  # the cluster is given explicitly (or in-cluster)
        command = HelmCommand(
            base_env=env,
            executable=executable,
            kubeconfig=kubeconfig,
            default_timeout=f"{DEFAULT_TIMEOUT_SECONDS}s",
            history_max_revisions=2,
        )
        client = await asyncio.to_thread(pyhelm3.Client, command, executable=executable)
        wd = work_dir or Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="helmops-helm-"))
        return cls(
            client,
            command,
            concurrency=concurrency,
            work_dir=wd,
            term_grace=term_grace,
            per_tenant=per_tenant,
            disable_openapi_validation=openapi_validation_disabled(env),
        )

    @property
    def helm_version(self) -> semver.Version:
        v: semver.Version = self.client.version
        return v

    @property
    def kube_cache_dir(self) -> Path:
        """This connection's kube cache (discovery, HTTP cache of OpenAPI documents), kept across calls."""
        return self._work_dir / "kube-cache"

    @property
    def slots(self) -> HelmSlots:
        """The helm slots this driver's calls take (shared with other drivers via :meth:`share_slots`)."""
        return self._slots

    def share_slots(self, slots: HelmSlots) -> None:
        """Take helm slots from ``slots`` from now on: one controller-wide cap and one fair order, whatever
        the number of clusters. Call before the driver's first helm call."""
        self._slots = slots

    def holds(self, namespace: str, name: str) -> bool:
        """True while a helm process of ours works on this release."""
        return self._held.get((namespace, name), 0) > 0

    @contextlib.asynccontextmanager
    async def _call(
        self,
        namespace: str,
        name: str,
        *,
        timeout_seconds: int,
        flags: list[str],
        cluster_flags: list[str],
        history_max: int | None = None,
        secrets: tuple[str, ...] = (),
        tenant: str | None = None,
    ) -> AsyncIterator[None]:
        """One helm call's slot and environment. ``tenant`` (the HelmApp's namespace; default the release
        namespace) is whom the slot is charged to."""
        key = (namespace, name)
        self._held[key] = self._held.get(key, 0) + 1
        try:
            async with self._slots.slot(tenant or namespace):
                home = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="call-", dir=self._work_dir))
                env = {
                    "HELM_CACHE_HOME": str(home / "cache"),
                    "HELM_CONFIG_HOME": str(home / "config"),
                    "HELM_DATA_HOME": str(home / "data"),
                    "HELM_DRIVER": "secret",
                    # helm's discovery and OpenAPI HTTP caches: one per cluster connection that outlives the
                    # call (the per-call homes above hold credentials and must not), so they stay warm
                    # whatever $HOME is, and no two clusters share one.
                    "KUBECACHEDIR": str(self.kube_cache_dir),
                }
                opts = CallOptions(
                    env=env,
                    apply_flags=flags,
                    cluster_flags=cluster_flags,
                    history_max=history_max,
                    process_timeout=float(helm_timeout(timeout_seconds) + PROCESS_MARGIN_SECONDS),
                    term_grace=self._term_grace,
                    secrets=secrets,
                )
                self.active += 1
                try:
                    with call_options(opts):
                        yield
                finally:
                    self.active -= 1
                    await asyncio.to_thread(shutil.rmtree, home, True)
        finally:
            self._held[key] -= 1
            if not self._held[key]:
                del self._held[key]

    def _call_as(
        self,
        namespace: str,
        name: str,
        timeout_seconds: int,
        service_account: str | None,
        service_account_namespace: str | None,
        *,
        history_max: int | None = None,
        tenant: str | None = None,
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """:meth:`_call` for a command that applies no chart: acting as ``service_account`` (of
        ``service_account_namespace``, else the release namespace), charged to ``tenant`` (else that
        namespace)."""
        return self._call(
            namespace,
            name,
            timeout_seconds=timeout_seconds,
            flags=[],
            cluster_flags=impersonation_flags(service_account_namespace or namespace, service_account),
            history_max=history_max,
            tenant=tenant or service_account_namespace,
        )

    async def install_or_upgrade(self, spec: ReleaseSpec) -> ReleaseOutcome:
        """``helm upgrade --install --reset-values`` from the cached chart archive."""
        helm4 = self.helm_version >= semver.Version(4)
        async with self._call(
            spec.namespace,
            spec.name,
            timeout_seconds=spec.timeout_seconds,
            flags=apply_flags(spec, disable_openapi_validation=self._disable_openapi_validation),
            cluster_flags=impersonation_flags(spec.service_account_namespace or spec.namespace, spec.service_account),
            history_max=spec.history_max,
            secrets=spec.redact,
            tenant=spec.slot_tenant,
        ):
            out = await self.command.install_or_upgrade(
                spec.name,
                str(spec.chart_path),
                dict(spec.values),
                atomic=spec.atomic,
                atomic_arg="--rollback-on-failure" if helm4 else "--atomic",
                create_namespace=spec.create_namespace,
                description=spec.description,
                force=spec.force and not helm4,
                force_replace=spec.force and helm4,
                namespace=spec.namespace,
                reset_values=True,
                take_ownership=spec.take_ownership,
                timeout=f"{helm_timeout(spec.timeout_seconds)}s",
                wait=False,  # --wait/--wait-for-jobs come from apply_flags (pyhelm3 ties them together)
            )
        info = out.get("info") or {}
        manifest = out.get("manifest")
        return ReleaseOutcome(
            revision=int(out.get("version") or 0),
            status=str(info.get("status") or ""),
            manifest=manifest if isinstance(manifest, str) else None,
        )

    async def recover(
        self,
        name: str,
        namespace: str,
        *,
        timeout_seconds: int,
        service_account: str | None,
        history_max: int,
        service_account_namespace: str | None = None,
        tenant: str | None = None,
    ) -> ReleaseOutcome | None:
        """Makes a stuck release proceedable (pyhelm3's rule: pending-install/uninstalling → uninstall,
        pending-upgrade/rollback → rollback). Returns the resulting revision, None if no release is left."""
        async with self._call_as(
            namespace,
            name,
            timeout_seconds,
            service_account,
            service_account_namespace,
            history_max=history_max,
            tenant=tenant,
        ):
            rev = await self.client.get_proceedable_revision(
                name, namespace=namespace, timeout=f"{helm_timeout(timeout_seconds)}s"
            )
        if rev is None:
            return None
        return ReleaseOutcome(revision=int(rev.revision), status=str(rev.status.value))

    async def rollback(
        self,
        name: str,
        namespace: str,
        revision: int,
        *,
        force: bool,
        timeout_seconds: int,
        service_account: str | None,
        history_max: int,
        service_account_namespace: str | None = None,
        tenant: str | None = None,
    ) -> None:
        """``helm rollback <release> <revision>``: re-applies what helm recorded for ``revision`` as a new
        revision (Fleet's correctDrift rolls back to the current one)."""
        async with self._call_as(
            namespace,
            name,
            timeout_seconds,
            service_account,
            service_account_namespace,
            history_max=history_max,
            tenant=tenant,
        ):
            await self.command.rollback(
                name, revision, force=force, namespace=namespace, timeout=f"{helm_timeout(timeout_seconds)}s"
            )

    async def uninstall(
        self,
        name: str,
        namespace: str,
        *,
        timeout_seconds: int,
        service_account: str | None,
        service_account_namespace: str | None = None,
        tenant: str | None = None,
    ) -> None:
        """``helm uninstall --wait``; a release that is already gone is fine."""
        async with self._call_as(
            namespace, name, timeout_seconds, service_account, service_account_namespace, tenant=tenant
        ):
            await self.client.uninstall_release(
                name, namespace=namespace, timeout=f"{helm_timeout(timeout_seconds)}s", wait=True
            )

    async def close(self) -> None:
        await asyncio.to_thread(shutil.rmtree, self._work_dir, True)


__all__ = [
    "HelmDriver",
    "HelmSlots",
    "ReleaseOutcome",
    "ReleaseSpec",
    "apply_flags",
    "helm_errors",
    "impersonation_flags",
]
