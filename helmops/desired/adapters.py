"""Wires the API, chart-source and values packages into the controller's Protocols (see desired.py).

Each adapter imports its package lazily and turns its typed errors into ``DesiredError``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib
import inspect
import json
import logging
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from helmops.desired.release import BasicSpec, ChartFetcher, DesiredError, FetchedChart, SpecChecker, Values
from helmops.helm.driver import HelmDriver
from helmops.kubeio.kube import Kube

log = logging.getLogger("helmops.controller")


def _optional(module: str, *names: str) -> tuple[Any, ...] | None:
    try:
        mod = importlib.import_module(module)
        return tuple(getattr(mod, n) for n in names)
    except (ImportError, AttributeError):
        return None


async def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    if inspect.iscoroutinefunction(fn):
        return await fn(*args, **kwargs)
    result = await asyncio.to_thread(fn, *args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


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
    """``helmops.sources``: resolves the version once upstream and returns a cached .tgz with its digest."""

    def __init__(
        self,
        kube: Kube,
        sources: Any,
        request_cls: Any,
        auth_from_secret: Any,
        error_cls: Any,
        *,
        ca_bundle: CABundle | None = None,
    ):
        self._kube, self._sources, self._req, self._auth, self._err = (
            kube,
            sources,
            request_cls,
            auth_from_secret,
            error_cls,
        )
        self._ca_bundle = ca_bundle

    async def close(self) -> None:
        aclose = getattr(self._sources, "aclose", None)
        if aclose is not None:
            await aclose()

    async def fetch(self, helmapp: Mapping[str, Any]) -> FetchedChart:
        spec = helmapp.get("spec") or {}
        helm = spec.get("helm") or {}
        ns = helmapp["metadata"]["namespace"]
        try:
            data: Mapping[str, bytes] = {}
            if spec.get("helmSecretName"):
                data = await _secret_data(self._kube, ns, spec["helmSecretName"])
            fallback = await self._ca_bundle.pem() if self._ca_bundle is not None else None
            auth = self._auth(
                data, insecure_skip_tls_verify=bool(spec.get("insecureSkipTLSVerify")), fallback_ca_pem=fallback
            )
            req = self._req(
                repo=helm.get("repo") or "",
                chart=helm.get("chart") or "",
                version=str(helm.get("version") or ""),
            )
            res = await _call(self._sources.fetch, req, auth)
        except self._err as exc:
            raise DesiredError(str(exc), retryable=bool(getattr(exc, "retryable", True))) from exc
        return FetchedChart(name=str(res.name), version=str(res.version), digest=str(res.digest), path=Path(res.path))


class HelmPullFetcher:
    """Stand-in while ``helmops.sources`` is unavailable: ``helm pull`` into a temporary cache."""

    def __init__(self, driver: HelmDriver, cache: Path) -> None:
        self._driver, self._cache = driver, cache

    async def fetch(self, helmapp: Mapping[str, Any]) -> FetchedChart:
        from pyhelm3 import errors as helm_errors

        helm = (helmapp.get("spec") or {}).get("helm") or {}
        chart, repo, version = (
            str(helm.get("chart") or ""),
            str(helm.get("repo") or ""),
            str(helm.get("version") or ""),
        )
        dest = Path(await asyncio.to_thread(tempfile.mkdtemp, dir=self._cache))
        if repo.startswith("oci://"):
            argv = ["pull", f"{repo.rstrip('/')}/{chart}"]
        elif chart.startswith("oci://") or "://" in chart:
            argv = ["pull", chart]
        else:
            argv = ["pull", chart, "--repo", repo]
        if version:
            argv += ["--version", version]
        argv += ["--destination", str(dest)]
        if argv[1].startswith("oci://") and ("127.0.0.1" in argv[1] or "localhost" in argv[1]):
            argv.append("--plain-http")
        try:
            await self._driver.command.run(argv)
        except helm_errors.Error as exc:
            raise DesiredError(f"chart {chart!r} from {repo or chart!r}: {str(exc).strip()}", retryable=True) from exc
        files = await asyncio.to_thread(lambda: sorted(dest.glob("*.tgz")))
        if not files:
            raise DesiredError(f"chart {chart!r}: helm pull produced no archive", retryable=True)
        data = await asyncio.to_thread(files[0].read_bytes)
        stem = files[0].name[: -len(".tgz")]
        name, _, ver = stem.rpartition("-")
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        return FetchedChart(name=name or stem, version=ver, digest=digest, path=files[0])


class AssembleRenderer:
    """``helmops.values.assemble`` for one cluster (the local one: cluster namespace = the HelmApp's)."""

    def __init__(self, api_client: Any) -> None:
        self._api = api_client

    async def render(self, helmapp: Mapping[str, Any], release_namespace: str) -> Values:
        """Same as :meth:`render_values` (the result also unpacks as ``values, digest``)."""
        return await self.render_values(helmapp, release_namespace)

    async def render_values(self, helmapp: Mapping[str, Any], release_namespace: str) -> Values:
        return await self.render_for(helmapp, release_namespace, None, None)

    async def render_for(
        self,
        helmapp: Mapping[str, Any],
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

        reader: Any = None
        found = _optional("helmops.values.kube_reader", "KubeValuesFromReader", "OwnNamespaceReader")
        if found:
            sa = (helmapp.get("spec") or {}).get("serviceAccount")
            if api_client is not None:
                who = f"serviceAccount {helmapp['metadata']['namespace']}/{sa}" if sa else None
                reader = found[0](api_client, who=who)
            else:
                reader = found[1](found[0](self._api), str(helmapp["metadata"]["namespace"]))
        ctx = cluster_context(helmapp["metadata"]["namespace"], cluster)
        helm = (helmapp.get("spec") or {}).get("helm") or {}
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


class PlainValues:
    """Stand-in while ``helmops.values`` is unavailable: ``spec.helm.values`` verbatim."""

    async def render(self, helmapp: Mapping[str, Any], release_namespace: str) -> Values:
        """Same as :meth:`render_values` (the result also unpacks as ``values, digest``)."""
        return await self.render_values(helmapp, release_namespace)

    async def render_values(self, helmapp: Mapping[str, Any], release_namespace: str) -> Values:
        values = dict(((helmapp.get("spec") or {}).get("helm") or {}).get("values") or {})
        raw = json.dumps(values, sort_keys=True, separators=(",", ":")).encode()
        return Values(values, "sha256:" + hashlib.sha256(raw).hexdigest())


class ApiSpec(BasicSpec):
    """``helmops.api``: the pydantic model, semantic validation (errors block, warnings are logged) and
    Fleet's release naming."""

    def __init__(self, api: Any) -> None:
        self._api = api

    def _spec(self, helmapp: Mapping[str, Any]) -> Any:
        return self._api.HelmAppSpec.model_validate(helmapp.get("spec") or {})

    def problems(self, helmapp: Mapping[str, Any]) -> list[str]:
        from helmops.api.validate import helmapp_problems

        meta = helmapp.get("metadata") or {}
        # limits on the raw object first: nothing recursive may touch a too-deep spec (helmops.kubeio)
        if limits := helmapp_problems(helmapp):
            log.warning("HelmApp %s/%s not accepted: %s", meta.get("namespace"), meta.get("name"), limits[0])
            return [str(p) for p in limits]
        try:
            spec = self._spec(helmapp)
        except Exception as exc:  # pydantic.ValidationError
            try:
                found = list(self._api.problems_from_validation_error(exc, "spec"))
            except Exception:
                return [str(exc)]
        else:
            found = list(self._api.validate(spec))
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
        return errors

    def release_name(self, helmapp: Mapping[str, Any]) -> str:
        try:
            return str(self._api.release_name(helmapp["metadata"]["name"], self._spec(helmapp)))
        except Exception:
            return super().release_name(helmapp)

    def release_namespace(self, helmapp: Mapping[str, Any]) -> str:
        try:
            return str(self._api.release_namespace(self._spec(helmapp)))
        except Exception:
            return super().release_namespace(helmapp)


def spec_checker() -> SpecChecker:
    if _optional("helmops.api", "validate", "release_name", "release_namespace", "HelmAppSpec") is None:
        log.warning("helmops.api not available: using basic spec checks")
        return BasicSpec()
    return ApiSpec(importlib.import_module("helmops.api"))


def chart_fetcher(
    kube: Kube, driver: HelmDriver, cache: Path, ca_bundle: Sequence[tuple[str, str, str]] = ()
) -> ChartFetcher:
    found = _optional("helmops.sources", "ChartSources", "ChartRequest", "auth_from_secret", "SourceError")
    if found is None:
        log.warning("helmops.sources not available: charts are fetched with helm pull")
        return HelmPullFetcher(driver, cache)
    sources_cls, req, auth, err = found
    try:
        sources = sources_cls(cache_dir=cache)
    except TypeError:
        sources = sources_cls()
    return SourcesFetcher(kube, sources, req, auth, err, ca_bundle=CABundle(kube, ca_bundle) if ca_bundle else None)


def values_renderer(api_client: Any) -> AssembleRenderer | PlainValues:
    if _optional("helmops.values", "ClusterContext", "assemble", "ValuesError") is None:
        log.warning("helmops.values not available: spec.helm.values is used verbatim")
        return PlainValues()
    return AssembleRenderer(api_client)
