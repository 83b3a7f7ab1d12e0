"""``helmops render``/``diff``: the controller's desired-state pipeline (``helmops.desired.pipeline``) run
offline, so the CLI and the controller cannot disagree about what a HelmApp means.

What differs is only where the inputs come from: Fleet Clusters and ClusterGroups from a file or from flags
(the inventory) instead of the management API, the chart through the same ChartFetcher Protocol with the
auth given on the command line, and ``valuesFrom`` through a kubeconfig's reader — or left out, with a
warning, when there is no cluster access (versions then show as written, or ``unresolved``).
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
    Cluster,
    ClusterGroup,
    HelmApp,
    ObjectMeta,
    ValuesFrom,
    chart_ref,
    problems_from_validation_error,
)
from helmops.api import validate as validate_spec
from helmops.api.objects import ClusterSpec
from helmops.cli.common import CliError, ManifestError, load_objects
from helmops.clusters.targeting import local_cluster
from helmops.desired.targets import ClusterTarget, resolve_targets, untargeted
from helmops.sources import ChartRequest, RepoAuth, SourceError, auth_from_secret
from helmops.sources.versions import is_exact
from helmops.values import RenderedValues, ValuesFromReader

if TYPE_CHECKING:  # the controller modules pull in pyhelm3 and kubernetes.aio: imported when used
    from helmops.desired.pipeline import TargetPlan
    from helmops.desired.release import ChartFetcher, Desired, FetchedChart

UNRESOLVED = "unresolved"


# --------------------------------------------------------------------------------------------------
# inputs


def load_helmapp(path: str, namespace: str | None = None) -> HelmApp:
    """The single HelmApp in ``path`` (``-`` = stdin), namespace defaulted, checked offline and parsed once:
    the CLI's edge, as the watch event is the controller's.

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
    return app


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


def repo_auth(helmapp: HelmApp, data: Mapping[str, bytes | str] | None) -> RepoAuth:
    try:
        return auth_from_secret(
            data or {}, insecure_skip_tls_verify=helmapp.spec.insecure_skip_tls_verify, fallback_ca_pem=None
        )
    except SourceError as exc:
        raise CliError(str(exc)) from None


def chart_cache_dir() -> Path:
    base = os.environ.get("HELMOPS_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "helmops")
    path = Path(base) / "cli-charts"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------------------------------
# planning (pure): the controller's pipeline (helmops.desired), with the inventory as the Cluster source


@dataclass(frozen=True)
class ClusterPlan:
    """What the HelmApp means for one cluster, before anything is fetched: the pipeline's TargetPlan."""

    step: TargetPlan

    @property
    def target(self) -> ClusterTarget:
        return self.step.target

    @property
    def cluster(self) -> str:
        """``namespace/name``, the key Fleet uses for clusters in status."""
        return self.step.target.id

    @property
    def target_name(self) -> str:
        return self.step.target.target_name

    @property
    def helmapp(self) -> HelmApp:
        """The HelmApp with the target's options merged into its spec (what the controller would deploy)."""
        return self.step.helmapp

    @property
    def release_name(self) -> str:
        return self.step.release_name

    @property
    def release_namespace(self) -> str:
        return self.step.release_namespace

    @property
    def request(self) -> ChartRequest:
        return self.step.request

    @property
    def cluster_object(self) -> Cluster:
        """The Fleet Cluster (the local cluster as Fleet's bootstrap Cluster when no object describes it)."""
        t = self.step.target
        return local_cluster(t.namespace) if t.cluster is None else Cluster.model_validate(dict(t.cluster))

    def describe(self) -> str:
        return self.step.target.describe()


def _objects(items: Sequence[Cluster] | Sequence[ClusterGroup], namespace: str) -> list[dict[str, Any]]:
    """API-shaped dicts of the inventory's objects; one written without a namespace is in ``namespace``."""
    out = []
    for item in items:
        body = item.model_dump(by_alias=True, mode="json")
        body["metadata"]["namespace"] = body["metadata"].get("namespace") or namespace
        out.append(body)
    return out


def targets(helmapp: HelmApp, inventory: Inventory) -> list[ClusterTarget]:
    """The clusters the HelmApp targets, by the controller's rules (``helmops.desired.targets``).

    Without an inventory only the local cluster exists and targets are not consulted (the controller deploys
    a HelmApp to the cluster it runs in); a cluster described by flags stands for the local cluster of a
    HelmApp without targets."""
    namespace = helmapp.metadata.namespace
    try:
        if not inventory.given:
            return resolve_targets(untargeted(helmapp))
        clusters = _objects(inventory.clusters, namespace)
        if inventory.described and not helmapp.spec.targets:
            # the described cluster, when it is in the HelmApp's namespace (as any target would require)
            mine = [c for c in clusters if c["metadata"]["namespace"] == namespace]
            return resolve_targets(helmapp, local=mine[0]) if mine else []
        return resolve_targets(helmapp, clusters, _objects(inventory.groups, namespace))
    except ValueError as exc:
        raise CliError(f"cannot match targets: {exc}") from None


def plan(helmapp: HelmApp, inventory: Inventory) -> list[ClusterPlan]:
    """One ClusterPlan per cluster the HelmApp targets (the local cluster when no inventory is given)."""
    from helmops.desired.pipeline import plan_target

    return [ClusterPlan(plan_target(t)) for t in targets(helmapp, inventory)]


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
            "target": p.target_name,
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


def values_from_entries(plan_: ClusterPlan) -> list[ValuesFrom]:
    return list(plan_.helmapp.spec.helm.values_from or [])


async def compute_values(plan_: ClusterPlan, reader: ValuesFromReader | None) -> tuple[RenderedValues, list[str]]:
    """Values for one cluster: with ``reader`` exactly as the controller assembles them (valuesFrom read),
    without it the inline part only, with a warning per valuesFrom entry left out. Raises DesiredError."""
    from helmops.desired.pipeline import cluster_values, inline_values

    warnings: list[str] = []
    if reader is not None:
        return await cluster_values(plan_.target, plan_.release_namespace, reader), warnings
    entries = values_from_entries(plan_)
    if entries:
        warnings.append(
            f"{plan_.describe()}: {len(entries)} valuesFrom entr{'y' if len(entries) == 1 else 'ies'} not read "
            "(no access to the cluster): the values shown leave them out"
        )
    return inline_values(plan_.target), warnings


async def resolve(
    plans: Sequence[ClusterPlan],
    *,
    auth: RepoAuth,
    fetch_charts: bool,
    readers: Mapping[str, ValuesFromReader | None] | None = None,
    progress: Any = None,
    charts: ChartFetcher | None = None,
) -> list[ClusterResult]:
    """Values (and, with ``fetch_charts``, the chart and fingerprint) for every plan; errors per cluster.
    Charts come through ``charts`` (default: ``helmops.sources`` with ``auth``)."""
    from helmops.desired.pipeline import FixedAuthFetcher, as_values, release_for
    from helmops.desired.release import DesiredError

    results = [ClusterResult(p, version=offline_version(p.request)) for p in plans]
    owned = FixedAuthFetcher(auth, chart_cache_dir()) if fetch_charts and charts is None else None
    fetcher = charts or owned
    try:
        for result in results:
            p = result.plan
            if progress is not None:
                progress.step(f"{p.cluster}: values")
            try:
                result.values, result.warnings = await compute_values(p, (readers or {}).get(p.cluster))
            except DesiredError as exc:
                result.fail(str(exc))
                continue
            if fetcher is None or not fetch_charts:
                continue
            if progress is not None:
                progress.step(f"{p.cluster}: chart {chart_name(p.request)} {p.request.version or '(latest)'}")
            try:
                result.chart = await fetcher.fetch(p.helmapp)
            except DesiredError as exc:
                result.fail(str(exc))
                continue
            result.version = result.chart.version
            result.desired = release_for(p.step, result.chart, as_values(result.values))
    finally:
        if owned is not None:
            await owned.close()
        if progress is not None:
            progress.done()
    return results
