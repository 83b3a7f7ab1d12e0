"""Wires the API, chart-source and values packages into the controller's Protocols (see release.py).

Each adapter turns its package's typed errors into ``DesiredError``.
"""

from __future__ import annotations

import base64
import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from helmops import api
from helmops.api.objects import HelmApp
from helmops.api.parse import parse_helmapp
from helmops.api.validate import helmapp_problems
from helmops.desired.release import Checked, DesiredError, FetchedChart, SpecChecker, Values
from helmops.kubeio.kube import Kube
from helmops.sources import ChartRequest, ChartSources, RepoAuth, SourceError, auth_from_secret
from helmops.values.kube_reader import KubeValuesFromReader, OwnNamespaceReader

log = logging.getLogger("helmops.controller")


async def _secret_data(kube: Kube, namespace: str, name: str) -> dict[str, bytes]:
    raw = await kube.read_secret(namespace, name)
    if raw is None:
        raise DesiredError(f'helm secret "{name}" not found in namespace {namespace}', retryable=True)
    return {k: base64.b64decode(v) for k, v in raw.items()}


class CABundle:
    """The operator-wide fallback CA bundle (Rancher's ``tls-ca`` / ``tls-ca-additional`` Secrets), used
    for repositories whose helm Secret has no ``cacerts``. Missing Secrets or keys are skipped; the result
    is cached for ``ttl`` seconds."""

    def __init__(self, kube: Kube, refs: Sequence[tuple[str, str, str]], ttl: float = 60.0) -> None:
        self._kube, self._refs, self._ttl = kube, tuple(refs), ttl
        self._cached: tuple[float, str | None] | None = None

    async def pem(self) -> str | None:
        now = time.monotonic()
        if self._cached and now - self._cached[0] < self._ttl:
            return self._cached[1]
        parts: list[str] = []
        for namespace, name, key in self._refs:
            data = await self._kube.read_secret(namespace, name)
            raw = (data or {}).get(key)
            if raw:
                text = base64.b64decode(raw).decode("utf-8", errors="replace").strip()
                if "-----BEGIN CERTIFICATE-----" in text:
                    parts.append(text)
                else:
                    log.warning("CA bundle %s/%s key %s holds no PEM certificate; ignored", namespace, name, key)
        pem = "\n".join(parts) + "\n" if parts else None
        self._cached = (now, pem)
        return pem


class SourcesFetcher:
    """``helmops.sources``: resolves the version once upstream and returns a cached .tgz with its digest.

    Polling asks the same object for the version alone (:meth:`resolve_version`): the same helm Secret,
    CA handling and shared ``ChartSources`` (so the same index cache) as the download."""

    def __init__(self, kube: Kube, sources: ChartSources, *, ca_bundle: CABundle | None = None) -> None:
        self._kube, self._sources, self._ca_bundle = kube, sources, ca_bundle

    async def close(self) -> None:
        await self._sources.aclose()

    @property
    def stats(self) -> Counter[str]:
        """The shared ChartSources' cache counters (exported as ``helmops_chart_cache_total``)."""
        return self._sources.stats

    async def _request(self, helmapp: HelmApp) -> tuple[ChartRequest, RepoAuth]:
        """``spec.helm``'s chart request and the credentials of ``helmSecretName`` (DesiredError, retryable,
        when that Secret is missing; SourceError when it is unusable)."""
        from helmops.desired.pipeline import chart_request

        spec = helmapp.spec
        data: Mapping[str, bytes] = {}
        if spec.helm_secret_name:
            data = await _secret_data(self._kube, helmapp.metadata.namespace, spec.helm_secret_name)
        fallback = await self._ca_bundle.pem() if self._ca_bundle is not None else None
        auth = auth_from_secret(
            data, insecure_skip_tls_verify=bool(spec.insecure_skip_tls_verify), fallback_ca_pem=fallback
        )
        return chart_request(helmapp), auth

    async def fetch(self, helmapp: HelmApp) -> FetchedChart:
        try:
            req, auth = await self._request(helmapp)
            res = await self._sources.fetch(req, auth)
        except SourceError as exc:
            raise DesiredError(str(exc), retryable=exc.retryable) from exc
        return FetchedChart(name=str(res.name), version=str(res.version), digest=str(res.digest), path=Path(res.path))

    async def resolve_version(self, helmapp: HelmApp, max_age: float) -> str:
        """The exact version ``spec.helm.version`` names now, without downloading the chart (polling);
        ``max_age`` bounds how old the cached index or tag list may be. Raises DesiredError."""
        try:
            req, auth = await self._request(helmapp)
            version, _digest = await self._sources.resolve_version(req, auth, max_age=max_age)
        except SourceError as exc:
            raise DesiredError(str(exc), retryable=exc.retryable) from exc
        return str(version)


class AssembleRenderer:
    """``helmops.values.assemble`` for one cluster (the local one: cluster namespace = the HelmApp's)."""

    def __init__(self, api_client: Any) -> None:
        self._api = api_client

    async def render(self, helmapp: HelmApp, release_namespace: str) -> Values:
        """Same as :meth:`render_values` (the result also unpacks as ``values, digest``)."""
        return await self.render_values(helmapp, release_namespace)

    async def render_values(self, helmapp: HelmApp, release_namespace: str) -> Values:
        return await self.render_for(helmapp, release_namespace, None, None)

    async def render_for(
        self,
        helmapp: HelmApp,
        release_namespace: str,
        cluster: Mapping[str, Any] | None,
        api_client: Any,
    ) -> Values:
        """The values for one cluster: ``cluster`` is its Fleet Cluster object (None: the local cluster,
        named ``local`` in the HelmApp's namespace); ``valuesFrom`` is read through ``api_client`` (the
        cluster the release goes to, acting as the HelmApp's serviceAccount when it has one).

        ``api_client`` None means the controller's own identity on the local cluster: then valuesFrom is read
        only from the HelmApp's own namespace (a HelmApp's author can read that namespace anyway; any other
        would be read with the controller's rights)."""
        from helmops.desired.pipeline import as_values, assemble_values, cluster_context

        reader: KubeValuesFromReader | OwnNamespaceReader
        sa, namespace = helmapp.spec.service_account, helmapp.metadata.namespace
        if api_client is not None:
            who = f"serviceAccount {namespace}/{sa}" if sa else None
            reader = KubeValuesFromReader(api_client, who=who)
        else:
            reader = OwnNamespaceReader(KubeValuesFromReader(self._api), namespace)
        ctx = cluster_context(namespace, cluster)
        # helmops.values works on the manifest form of the (target-merged) helm block
        helm = helmapp.spec.helm.to_dict()
        return as_values(await assemble_values(helm, ctx, release_namespace=release_namespace, reader=reader))


def secret_strings(values: Mapping[str, Any], paths: Iterable[tuple[str, ...]]) -> tuple[str, ...]:
    """The string leaves under each Secret-derived path of ``values`` (what must never be echoed), and the
    keys below the top level on the way: a Secret's map keys are its content too, and the API server quotes
    an invalid one back in helm's error (``data[<key>]: Invalid value``). Top-level keys are the chart's
    own value names."""
    found: set[str] = set()

    def leaves(node: Any) -> None:
        if isinstance(node, Mapping):
            for k, v in node.items():
                if len(str(k)) >= 4:
                    found.add(str(k))
                leaves(v)
        elif isinstance(node, list):
            for v in node:
                leaves(v)
        elif node is not None and not isinstance(node, bool):
            text = str(node)
            if len(text) >= 4:
                found.add(text)

    for path in paths:
        found.update(str(part) for part in path[1:] if len(str(part)) >= 4)
        node: Any = values
        for part in path:
            node = node.get(part) if isinstance(node, Mapping) else None
        leaves(node)
    return tuple(sorted(found))


class ApiSpec:
    """``helmops.api``: the limits on the object as read, the pydantic model (parsed here once: what the
    reconcile path carries on) and semantic validation (errors block, warnings are logged)."""

    def check(self, helmapp: Mapping[str, Any]) -> Checked:
        meta = helmapp.get("metadata") or {}
        # limits on the raw object first: nothing recursive may touch a too-deep spec (helmops.kubeio)
        if limits := helmapp_problems(helmapp):
            log.warning("HelmApp %s/%s not accepted: %s", meta.get("namespace"), meta.get("name"), limits[0])
            return Checked(None, [str(p) for p in limits])
        app: HelmApp | None = None
        try:
            app = parse_helmapp(helmapp)
        except ValidationError as exc:
            try:
                found = list(api.problems_from_validation_error(exc, "spec"))
            except Exception:
                return Checked(None, [str(exc)])
        else:
            found = list(api.validate(app.spec))
        errors = [str(p) for p in found if getattr(p, "severity", "error") == "error"]
        warnings = [str(p) for p in found if getattr(p, "severity", "error") != "error"]
        if errors:
            log.warning(
                "HelmApp %s/%s not accepted: invalid spec: %s",
                meta.get("namespace"),
                meta.get("name"),
                "; ".join(errors),
            )
        if warnings:
            log.info("HelmApp %s/%s: %s", meta.get("namespace"), meta.get("name"), "; ".join(warnings))
        return Checked(app, errors)

    def problems(self, helmapp: Mapping[str, Any]) -> list[str]:
        """Why ``helmapp`` is not accepted (empty: it is)."""
        return self.check(helmapp).problems


def spec_checker() -> SpecChecker:
    return ApiSpec()


def chart_fetcher(
    kube: Kube, cache: Path, ca_bundle: Sequence[tuple[str, str, str]] = (), *, max_cache_bytes: int | None = None
) -> SourcesFetcher:
    bundle = CABundle(kube, ca_bundle) if ca_bundle else None
    return SourcesFetcher(kube, ChartSources(cache_dir=cache, max_cache_bytes=max_cache_bytes), ca_bundle=bundle)


def values_renderer(api_client: Any) -> AssembleRenderer:
    return AssembleRenderer(api_client)
