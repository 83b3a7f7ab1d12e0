"""The desired release per target cluster, computed as the controller computes it (render and diff share it).

Targets are matched with ``helmops.clusters.targeting``; release name/namespace come from the controller's
spec checker, the fingerprint from ``helmops.desired.release.build_release``, charts from
``helmops.sources.ChartSources`` and values from ``helmops.values`` — so ``helmops render``/``diff`` and the
controller cannot disagree about what a HelmApp means.
"""

from __future__ import annotations

import base64
import binascii
import copy
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from helmops import KIND
from helmops.api import (
    BundleTarget,
    Cluster,
    ClusterGroup,
    HelmApp,
    LabelSelector,
    ObjectMeta,
    chart_ref,
    problems_from_validation_error,
)
from helmops.api import validate as validate_spec
from helmops.api.objects import ClusterSpec
from helmops.cli.common import CliError, ManifestError, load_objects
from helmops.clusters.targeting import TargetMatch, match_targets
from helmops.sources import ChartRequest, ChartSources, RepoAuth, SourceError, auth_from_secret
from helmops.sources.versions import is_exact
from helmops.values import (
    ClusterContext,
    RenderedValues,
    ValuesError,
    ValuesFromReader,
    assemble,
    merge_deployment_options,
    render_inline,
)

if TYPE_CHECKING:  # the controller modules pull in pyhelm3 and kubernetes.aio: imported when used
    from helmops.desired.release import Desired, FetchedChart

UNRESOLVED = "unresolved"
_ANY_CLUSTER = BundleTarget(name="default", cluster_selector=LabelSelector())


# --------------------------------------------------------------------------------------------------
# inputs


def load_helmapp(path: str, namespace: str | None = None) -> dict[str, Any]:
    """The single HelmApp in ``path`` (``-`` = stdin) as a dict, namespace defaulted, checked offline.

    Raises CliError listing every error-severity problem (schema and semantic), with file and document.
    """
    try:
        docs = [d for d in load_objects([path]) if d.body.get("kind") == KIND]
    except ManifestError as exc:
        raise CliError(str(exc)) from None
    if not docs:
        raise CliError(f"{'<stdin>' if path == '-' else path}: no HelmApp found")
    if len(docs) > 1:
        raise CliError(f"{docs[0].source}: {len(docs)} HelmApps found; give one HelmApp per file")
    doc = docs[0]
    body: dict[str, Any] = copy.deepcopy(doc.body)
    meta = body.setdefault("metadata", {})
    if not isinstance(meta, dict) or not meta.get("name"):
        raise CliError(f"{doc.where}: metadata.name: required")
    meta["namespace"] = meta.get("namespace") or namespace or "default"
    try:
        app = HelmApp.model_validate(body)
    except ValidationError as exc:
        lines = [f"{doc.where}: {p}" for p in problems_from_validation_error(exc)]
        raise CliError("invalid HelmApp:\n  " + "\n  ".join(lines)) from None
    errors = [p for p in validate_spec(app.spec) if p.severity == "error"]
    if errors:
        raise CliError("invalid HelmApp:\n  " + "\n  ".join(f"{doc.where}: {p}" for p in errors))
    return body


@dataclass(frozen=True)
class Inventory:
    """Fleet Clusters and ClusterGroups to match targets against; ``given`` is False for "local only"."""

    clusters: tuple[Cluster, ...] = ()
    groups: tuple[ClusterGroup, ...] = ()
    given: bool = False
    described: bool = False
    """One cluster described by --cluster flags: a HelmApp without targets is rendered for it (standing in
    for the local cluster), instead of for a local cluster the user did not ask about."""


def inventory_from_file(path: str) -> Inventory:
    """Cluster and ClusterGroup objects from a YAML file (other kinds are ignored)."""
    try:
        docs = load_objects([path])
    except ManifestError as exc:
        raise CliError(str(exc)) from None
    clusters: list[Cluster] = []
    groups: list[ClusterGroup] = []
    for doc in docs:
        kind = doc.body.get("kind")
        try:
            if kind == "Cluster":
                clusters.append(Cluster.model_validate(doc.body))
            elif kind == "ClusterGroup":
                groups.append(ClusterGroup.model_validate(doc.body))
        except ValidationError as exc:
            lines = [f"{doc.where}: {p}" for p in problems_from_validation_error(exc)]
            raise CliError(f"invalid {kind}:\n  " + "\n  ".join(lines)) from None
    if not clusters:
        raise CliError(f"{path}: no Fleet Cluster objects found")
    return Inventory(tuple(clusters), tuple(groups), True)


def inventory_from_flags(
    name: str, namespace: str | None, labels: Mapping[str, str], values: Mapping[str, str]
) -> Inventory:
    """One Cluster described on the command line; ``values`` are parsed as YAML scalars (``3`` is a number)."""
    template_values: dict[str, Any] = {}
    for key, text in values.items():
        try:
            template_values[key] = yaml.safe_load(text) if text else ""
        except yaml.YAMLError:
            template_values[key] = text
    cluster = Cluster(
        metadata=ObjectMeta(name=name, namespace=namespace or "", labels=dict(labels)),
        spec=ClusterSpec(template_values=template_values),
    )
    return Inventory((cluster,), (), True, True)


def secret_data(path: str) -> dict[str, bytes | str]:
    """The data of a Secret manifest (``data`` base64-decoded, ``stringData`` as is, the latter winning)."""
    try:
        docs = [d for d in load_objects([path]) if d.body.get("kind") == "Secret"]
    except ManifestError as exc:
        raise CliError(str(exc)) from None
    if len(docs) != 1:
        raise CliError(f"{path}: expected exactly one Secret, found {len(docs)}")
    body = docs[0].body
    out: dict[str, bytes | str] = {}
    for key, value in (body.get("data") or {}).items():
        try:
            out[str(key)] = base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            raise CliError(f"{path}: data key {key!r} is not base64") from None
    for key, value in (body.get("stringData") or {}).items():
        out[str(key)] = str(value)
    return out


def repo_auth(helmapp: Mapping[str, Any], data: Mapping[str, bytes | str] | None) -> RepoAuth:
    spec = helmapp.get("spec") or {}
    try:
        return auth_from_secret(
            data or {}, insecure_skip_tls_verify=bool(spec.get("insecureSkipTLSVerify")), fallback_ca_pem=None
        )
    except SourceError as exc:
        raise CliError(str(exc)) from None


def chart_cache_dir() -> Path:
    base = os.environ.get("HELMOPS_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "helmops")
    path = Path(base) / "cli-charts"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------------------------------
# planning (pure)


@dataclass(frozen=True)
class ClusterPlan:
    """What the HelmApp means for one cluster, before anything is fetched."""

    match: TargetMatch
    helmapp: dict[str, Any]
    """The HelmApp with the target's options merged into its spec (what the controller would deploy)."""
    root_helm: dict[str, Any]
    """The spec's own ``helm`` block (values assembly merges the target's over it itself)."""
    target: dict[str, Any] | None
    """The raw ``targets[]`` entry (for values assembly), None without targets."""
    ctx: ClusterContext
    release_name: str
    release_namespace: str
    request: ChartRequest

    @property
    def cluster(self) -> str:
        return self.match.cluster_id

    def describe(self) -> str:
        return self.ctx.describe()


def plan(helmapp: Mapping[str, Any], inventory: Inventory) -> list[ClusterPlan]:
    """One ClusterPlan per cluster the HelmApp targets (the local cluster when no inventory is given)."""
    app = HelmApp.model_validate(helmapp)
    namespace = app.metadata.namespace
    spec_raw: dict[str, Any] = dict(helmapp.get("spec") or {})
    raw_targets: list[Any] = list(spec_raw.get("targets") or [])
    try:
        if inventory.described and not app.spec.targets:
            matches = [
                TargetMatch(m.cluster, None, None, m.target_name)
                for m in match_targets([_ANY_CLUSTER], namespace, inventory.clusters, [])
            ]
        elif inventory.given:
            matches = match_targets(app.spec.targets, namespace, inventory.clusters, inventory.groups)
        else:
            # Without an inventory only the local cluster exists; targets are not consulted (the controller
            # deploys a HelmApp to the cluster it runs in).
            matches = match_targets([], namespace, [], [])
    except ValueError as exc:
        raise CliError(f"cannot match targets: {exc}") from None
    from helmops.desired.adapters import spec_checker

    checker = spec_checker()
    plans = []
    for match in matches:
        target = raw_targets[match.target_index] if match.target_index is not None else None
        spec = merge_deployment_options(spec_raw, target) if isinstance(target, Mapping) else copy.deepcopy(spec_raw)
        effective = {**dict(helmapp), "spec": spec}
        helm = spec.get("helm") or {}
        plans.append(
            ClusterPlan(
                match=match,
                helmapp=effective,
                root_helm=dict(spec_raw.get("helm") or {}),
                target=dict(target) if isinstance(target, Mapping) else None,
                ctx=ClusterContext.from_cluster(match.cluster.model_dump(by_alias=True, mode="json")),
                release_name=checker.release_name(effective),
                release_namespace=checker.release_namespace(effective),
                request=ChartRequest(
                    repo=str(helm.get("repo") or ""),
                    chart=str(helm.get("chart") or ""),
                    version=str(helm.get("version") or ""),
                ),
            )
        )
    return plans


def offline_version(request: ChartRequest) -> str:
    """The version as known without asking the source: an exact version as written, else ``unresolved``."""
    version = request.version.strip()
    return version if version and is_exact(version) else UNRESOLVED


def chart_name(request: ChartRequest) -> str:
    from helmops.api import HelmOptions

    try:
        return chart_ref(HelmOptions(repo=request.repo, chart=request.chart, version=request.version)).chart
    except ValueError:
        return request.chart or request.repo


# --------------------------------------------------------------------------------------------------
# resolving (I/O)


@dataclass
class ClusterResult:
    """The outcome for one cluster: resolved chart, values, fingerprint; or the error that stopped it."""

    plan: ClusterPlan
    version: str = UNRESOLVED
    chart: FetchedChart | None = None
    values: RenderedValues | None = None
    desired: Desired | None = None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def cluster(self) -> str:
        return self.plan.cluster

    def fail(self, message: str) -> None:
        prefix = self.plan.describe()
        self.error = message if message.startswith(prefix) else f"{prefix}: {message}"

    def as_dict(self, *, manifest: str | None = None) -> dict[str, Any]:
        """The JSON shape of ``render -o json`` (values redacted: Secret-derived leaves are masked)."""
        p = self.plan
        out: dict[str, Any] = {
            "cluster": p.cluster,
            "target": p.match.target_name,
            "release": {"name": p.release_name, "namespace": p.release_namespace},
            "chart": self.chart.name if self.chart else chart_name(p.request),
            "version": self.chart.version if self.chart else self.version,
            "digest": self.chart.digest if self.chart else None,
        }
        if self.values is not None:
            out["values"] = self.values.redacted()
            out["valuesDigest"] = self.values.digest
            out["sources"] = [s.as_dict() for s in self.values.sources]
        if self.desired is not None:
            out["fingerprint"] = self.desired.fingerprint
        if manifest is not None:
            out["manifest"] = manifest
        if self.warnings:
            out["warnings"] = list(self.warnings)
        if self.error is not None:
            out["error"] = self.error
        return out


def values_from_entries(plan_: ClusterPlan) -> list[Any]:
    helm = (plan_.helmapp.get("spec") or {}).get("helm") or {}
    return list(helm.get("valuesFrom") or [])


async def compute_values(plan_: ClusterPlan, reader: ValuesFromReader | None) -> tuple[RenderedValues, list[str]]:
    """Values for one cluster: with ``reader`` exactly as the controller assembles them (valuesFrom read),
    without it the inline part only, with a warning per valuesFrom entry left out. Raises ValuesError."""
    warnings: list[str] = []
    root_helm = plan_.root_helm
    if reader is not None:
        rv = await assemble(
            root_helm, plan_.ctx, release_namespace=plan_.release_namespace, reader=reader, target=plan_.target
        )
        return rv, warnings
    entries = values_from_entries(plan_)
    if entries:
        warnings.append(
            f"{plan_.describe()}: {len(entries)} valuesFrom entr{'y' if len(entries) == 1 else 'ies'} not read "
            "(no access to the cluster): the values shown leave them out"
        )
    return render_inline(root_helm, plan_.ctx, target=plan_.target), warnings


async def resolve(
    plans: Sequence[ClusterPlan],
    *,
    auth: RepoAuth,
    fetch_charts: bool,
    readers: Mapping[str, ValuesFromReader | None] | None = None,
    progress: Any = None,
) -> list[ClusterResult]:
    """Values (and, with ``fetch_charts``, the chart and fingerprint) for every plan; errors per cluster."""
    from helmops.desired.adapters import secret_strings
    from helmops.desired.release import FetchedChart, Values, build_release

    results = [ClusterResult(p, version=offline_version(p.request)) for p in plans]
    sources = ChartSources(cache_dir=chart_cache_dir()) if fetch_charts else None
    try:
        for result in results:
            p = result.plan
            if progress is not None:
                progress.step(f"{p.cluster}: values")
            try:
                result.values, result.warnings = await compute_values(p, (readers or {}).get(p.cluster))
            except ValuesError as exc:
                result.fail(str(exc))
                continue
            if sources is None:
                continue
            if progress is not None:
                progress.step(f"{p.cluster}: chart {chart_name(p.request)} {p.request.version or '(latest)'}")
            try:
                resolved = await sources.fetch(p.request, auth)
            except SourceError as exc:
                result.fail(str(exc))
                continue
            result.chart = FetchedChart(resolved.name, resolved.version, resolved.digest, resolved.path)
            result.version = resolved.version
            result.desired = build_release(
                p.helmapp,
                release_name=p.release_name,
                release_namespace=p.release_namespace,
                chart=result.chart,
                values=Values(
                    dict(result.values.values),
                    result.values.digest,
                    secret_strings(result.values.values, result.values.secret_paths),
                ),
            )
    finally:
        if sources is not None:
            await sources.aclose()
        if progress is not None:
            progress.done()
    return results
