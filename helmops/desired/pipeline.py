"""The desired-state pipeline, shared verbatim by the controller and ``helmops render/diff``::

    HelmApp + Fleet Cluster/ClusterGroup objects
      → resolve_targets          which clusters, each with its merged spec          (targets.py, pure)
      → plan_target              release name/namespace, chart request              (pure)
      → ChartFetcher.fetch       the chart                                          (I/O: release.ChartFetcher)
      → cluster_values           values for that cluster (valuesFrom read through   (I/O: values.ValuesFromReader)
                                 a ValuesFromReader)
      → release_for              build_release → Desired (fingerprint)              (pure)

The callers differ only in their adapters: where the Cluster objects come from (the management API, or the
CLI's offline inventory), which ChartFetcher (``adapters.SourcesFetcher`` with the helm Secret read from
the cluster, or :class:`FixedAuthFetcher` with the auth the CLI was given), and which ValuesFromReader (the
controller's choice of identity, or the CLI's kubeconfig; none when offline).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helmops.api.objects import HelmApp
from helmops.desired.adapters import secret_strings
from helmops.desired.release import Desired, DesiredError, FetchedChart, Values, build_release
from helmops.desired.targets import ClusterTarget
from helmops.sources import ChartRequest, ChartSources, RepoAuth, SourceError
from helmops.values import ClusterContext, RenderedValues, ValuesError, ValuesFromReader, assemble, render_inline

# --------------------------------------------------------------------------------------------------
# per cluster, before any I/O


@dataclass(frozen=True)
class TargetPlan:
    """What the HelmApp means for one cluster before anything is fetched."""

    target: ClusterTarget
    release_name: str
    release_namespace: str
    request: ChartRequest

    @property
    def helmapp(self) -> HelmApp:
        """The HelmApp with the target's options merged into its spec."""
        return self.target.helmapp


def chart_request(helmapp: HelmApp) -> ChartRequest:
    """The chart the (target-merged) HelmApp asks for: ``spec.helm`` repo, chart and version."""
    helm = helmapp.spec.helm
    return ChartRequest(repo=helm.repo or "", chart=helm.chart or "", version=helm.version or "")


def plan_target(target: ClusterTarget) -> TargetPlan:
    """Release name and namespace (Fleet's rules, computed once on the target) and the chart request for one
    cluster."""
    return TargetPlan(target, target.release_name, target.release_namespace, chart_request(target.helmapp))


# --------------------------------------------------------------------------------------------------
# values


def cluster_context(namespace: str, cluster: Mapping[str, Any] | None) -> ClusterContext:
    """What templates see of the cluster: its Fleet Cluster object (checked against the limits first), or,
    for None, the local cluster named ``local`` in ``namespace`` (the HelmApp's). Raises DesiredError."""
    if cluster is None:
        return ClusterContext.local(namespace=namespace)
    from helmops.api.validate import cluster_problems

    if limits := cluster_problems(cluster):
        meta = cluster.get("metadata") or {}
        where = f"Cluster {meta.get('name')} in namespace {meta.get('namespace')}"
        raise DesiredError(f"{where}: " + "; ".join(str(p) for p in limits), retryable=False)
    try:
        return ClusterContext.from_cluster(cluster)
    except TypeError as exc:
        raise DesiredError(str(exc)) from exc


async def assemble_values(
    helm: Mapping[str, Any],
    ctx: ClusterContext,
    *,
    release_namespace: str,
    reader: ValuesFromReader | None,
    target: Mapping[str, Any] | None = None,
) -> RenderedValues:
    """``helmops.values.assemble`` with its errors as DesiredError. ``helm`` is the spec's ``helm`` block and
    ``target`` the ``targets[]`` entry merged over it — or ``helm`` already merged and ``target`` None:
    the values are the same, only the provenance names the target in the first form."""
    try:
        return await assemble(helm, ctx, release_namespace=release_namespace, reader=reader, target=target)
    except ValuesError as exc:
        raise DesiredError(str(exc), retryable=bool(exc.retryable)) from exc


def _helm_and_target(target: ClusterTarget) -> tuple[Mapping[str, Any], Mapping[str, Any] | None]:
    """The manifest-form ``helm`` block(s) values assembly reads (helmops.values works on the manifest)."""
    if target.target is not None and target.root_helm is not None:
        return target.root_helm, target.target
    return target.spec.helm.to_dict(), None


async def cluster_values(
    target: ClusterTarget, release_namespace: str, reader: ValuesFromReader | None
) -> RenderedValues:
    """The values helm gets on ``target``'s cluster, ``valuesFrom`` read through ``reader``. Raises
    DesiredError naming the cluster."""
    ctx = cluster_context(target.namespace, target.cluster)
    helm, raw_target = _helm_and_target(target)
    return await assemble_values(helm, ctx, release_namespace=release_namespace, reader=reader, target=raw_target)


def inline_values(target: ClusterTarget) -> RenderedValues:
    """The values without ``valuesFrom`` (nothing read): for previews without access to the cluster."""
    ctx = cluster_context(target.namespace, target.cluster)
    helm, raw_target = _helm_and_target(target)
    try:
        return render_inline(helm, ctx, target=raw_target)
    except ValuesError as exc:
        raise DesiredError(str(exc), retryable=bool(exc.retryable)) from exc


def as_values(rendered: RenderedValues) -> Values:
    """What build_release takes: the values, their digest and the Secret-derived strings to mask."""
    return Values(dict(rendered.values), str(rendered.digest), secret_strings(rendered.values, rendered.secret_paths))


# --------------------------------------------------------------------------------------------------
# chart and release


class FixedAuthFetcher:
    """A ChartFetcher over ``helmops.sources`` with one repository auth given up front (the CLI's
    ``--helm-secret``), where the controller's reads the HelmApp's helm Secret from the cluster."""

    def __init__(self, auth: RepoAuth, cache_dir: Path) -> None:
        self._auth = auth
        self._sources = ChartSources(cache_dir=cache_dir)

    async def fetch(self, helmapp: HelmApp) -> FetchedChart:
        try:
            res = await self._sources.fetch(chart_request(helmapp), self._auth)
        except SourceError as exc:
            raise DesiredError(str(exc), retryable=bool(getattr(exc, "retryable", True))) from exc
        return FetchedChart(name=str(res.name), version=str(res.version), digest=str(res.digest), path=Path(res.path))

    async def close(self) -> None:
        await self._sources.aclose()


def release_for(plan: TargetPlan, chart: FetchedChart, values: Values, *, max_timeout: int = 0) -> Desired:
    """The desired release on the plan's cluster (build_release with the plan's name and namespace)."""
    return build_release(
        plan.helmapp,
        release_name=plan.release_name,
        release_namespace=plan.release_namespace,
        chart=chart,
        values=values,
        max_timeout=max_timeout,
    )


__all__ = [
    "FixedAuthFetcher",
    "TargetPlan",
    "as_values",
    "assemble_values",
    "chart_request",
    "cluster_context",
    "cluster_values",
    "inline_values",
    "plan_target",
    "release_for",
]
