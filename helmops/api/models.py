"""The HelmApp API: pydantic models that are the single source of truth for the CRDs.

The shape is Fleet v0.12's ``fleet.cattle.io/v1alpha1`` HelmApp, unchanged, so a manifest written
for Fleet parses here and round-trips: ``HelmApp.model_validate(doc).to_dict() == doc``.

Nullability follows Fleet's CRD: a field Fleet marks nullable is ``X | None = None`` here; a field
Fleet does not is a plain type with its zero value as default (the generated CRD carries no
defaults, so nothing is added to stored objects).
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, field_validator

from helmops import GROUP, KIND, VERSION
from helmops.api.base import ApiModel
from helmops.api.duration import is_polling_interval
from helmops.api.selector import LabelSelector, LabelSelectorRequirement

__all__ = [
    "BundleDeploymentOptions",
    "BundleRef",
    "BundleResource",
    "BundleSummary",
    "BundleTarget",
    "BundleTargetRestriction",
    "Cluster",
    "ClusterGroup",
    "ClusterGroupSpec",
    "ClusterSpec",
    "ComparePatch",
    "Condition",
    "ConfigMapKeyRef",
    "CorrectDrift",
    "DiffOptions",
    "HelmApp",
    "HelmAppDisplay",
    "HelmAppOptions",
    "HelmAppSpec",
    "HelmAppStatus",
    "HelmOptions",
    "IgnoreOptions",
    "KubeObject",
    "KustomizeOptions",
    "LabelSelector",
    "LabelSelectorRequirement",
    "ModifiedStatus",
    "NonReadyResource",
    "NonReadyStatus",
    "ObjectMeta",
    "Operation",
    "Partition",
    "PerClusterState",
    "ResourceCounts",
    "ResourceSummary",
    "ResourceSummaryEntry",
    "RolloutStrategy",
    "SecretKeyRef",
    "ValuesFrom",
    "YAMLOptions",
]

#: Helm's rule for release names (a DNS-1123 subdomain), also enforced by Fleet's CRD.
RELEASE_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
#: Helm refuses release names longer than this.
RELEASE_NAME_MAX_LENGTH = 53

#: Longest polling interval accepted: the largest whole number of hours a Go duration can hold.
POLLING_INTERVAL_MAX_HOURS = 2562047
_DURATION_UNIT = "(ns|us|\u00b5s|\u03bcs|ms|s|m|h)"
_DURATION_NUMBER = r"([0-9]+(\.[0-9]*)?|\.[0-9]+)"
#: An unsigned Go duration (``1h30m``, ``1.5s``, ``300ms``); ``'0'`` is accepted separately.
POLLING_INTERVAL_PATTERN = f"^({_DURATION_NUMBER}{_DURATION_UNIT})+$"
#: CEL rule for ``spec.pollingInterval``. Fleet v0.12 has no such field, so it rejects nothing Fleet accepts.
POLLING_INTERVAL_RULE = (
    "self == '0' || (self.matches('"
    + POLLING_INTERVAL_PATTERN.replace("\\", "\\\\")
    + f"') && duration(self) <= duration('{POLLING_INTERVAL_MAX_HOURS}h'))"
)

_INT64: dict[str, Any] = {"format": "int64"}
_INT_OR_STRING: dict[str, Any] = {"x-kubernetes-int-or-string": True}
_FREE_FORM: dict[str, Any] = {"x-kubernetes-preserve-unknown-fields": True}


# --------------------------------------------------------------------------------------------------
# metadata


class ObjectMeta(ApiModel):
    """The parts of Kubernetes object metadata helmops reads; every other key is kept as is."""

    model_config = ConfigDict(extra="allow")

    name: str = ""
    namespace: str = ""
    uid: str = ""
    resource_version: str = ""
    generation: int = 0
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    finalizers: list[str] = Field(default_factory=list)
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None


# --------------------------------------------------------------------------------------------------
# helm options


class ConfigMapKeyRef(ApiModel):
    """A key of a ConfigMap whose content is a YAML document of Helm values."""

    name: str | None = None
    """Name of the ConfigMap."""
    namespace: str | None = None
    """Namespace of the ConfigMap; when empty, the release namespace on the target cluster."""
    key: str | None = None
    """Key holding the values document; when empty, values.yaml."""


class SecretKeyRef(ApiModel):
    """A key of a Secret whose content is a YAML document of Helm values."""

    name: str | None = None
    """Name of the Secret."""
    namespace: str | None = None
    """Namespace of the Secret; when empty, the release namespace on the target cluster."""
    key: str | None = None
    """Key holding the values document; when empty, values.yaml."""


class ValuesFrom(ApiModel):
    """A source of Helm values read from the target cluster, merged over spec.helm.values."""

    config_map_key_ref: ConfigMapKeyRef | None = None
    """Read values from a ConfigMap key (applied before secretKeyRef of the same entry)."""
    secret_key_ref: SecretKeyRef | None = None
    """Read values from a Secret key."""


class HelmOptions(ApiModel):
    """Which chart to deploy and how Helm installs and upgrades it.

    Three ways to name a chart: an HTTP(S) repository in repo plus a chart name in chart; an OCI
    reference (oci://host/path/name) in chart or in repo; or the full URL of a .tgz in chart with
    repo and version empty.
    """

    chart: str | None = None
    """Chart name in the repository, an oci:// reference, or the full URL of a chart .tgz."""
    repo: str | None = None
    """Base URL of an HTTP(S) chart repository (index.yaml lives under it), or an oci:// reference."""
    release_name: str | None = Field(default=None, max_length=RELEASE_NAME_MAX_LENGTH, pattern=RELEASE_NAME_PATTERN)
    """Helm release name. When empty it is derived from the HelmApp name."""
    version: str | None = None
    """Chart version: an exact version, a semver constraint such as ^1.2, or empty or * for the
    latest stable version."""
    timeout_seconds: int = 0
    """Helm operation timeout in seconds; a positive value also makes Helm wait for resources."""
    values: dict[str, Any] | None = Field(default=None, json_schema_extra=_FREE_FORM)
    """Helm values. String leaves may use ${ } templates with the target cluster's data."""
    template_values: dict[str, str] | None = None
    """Top-level values computed per cluster: each entry is a ${ } template whose YAML output
    replaces that key of values."""
    values_from: list[ValuesFrom] | None = None
    """ConfigMaps and Secrets on the target cluster whose values are merged over values, in order."""
    values_files: list[str] | None = None
    """Files of values in a git repository. Only meaningful for GitRepos; ignored for a HelmApp."""
    force: bool = False
    """Pass --force to helm upgrade: replace resources that cannot be patched."""
    take_ownership: bool = False
    """Let Helm adopt existing resources that belong to no release (or to another one)."""
    atomic: bool = False
    """Roll back a failed upgrade automatically."""
    wait_for_jobs: bool = False
    """Also wait for Jobs to complete; needs timeoutSeconds."""
    max_history: int = 0
    """Number of release revisions Helm keeps; 0 means Fleet's default of 2."""
    disable_pre_process: bool = False
    """Turn off ${ } templating of values and templateValues."""
    disable_dns: bool = Field(default=False, alias="disableDNS")
    """Turn off DNS lookups in chart templates."""
    skip_schema_validation: bool = False
    """Do not validate values against the chart's values.schema.json."""
    disable_dependency_update: bool = False
    """Do not update the chart's dependencies before installing."""


# --------------------------------------------------------------------------------------------------
# per-deployment options (shared by the spec and each target)


class KustomizeOptions(ApiModel):
    """Kustomize settings of GitRepo bundles; ignored for a HelmApp."""

    dir: str | None = None
    """Directory holding kustomization.yaml."""


class YAMLOptions(ApiModel):
    """Raw YAML overlay settings of GitRepo bundles; ignored for a HelmApp."""

    overlays: list[str] | None = None
    """Names of overlay directories to apply."""


class Operation(ApiModel):
    """A JSON-patch-like operation that hides a field from drift detection."""

    op: str | None = None
    """Operation: remove or ignore."""
    path: str | None = None
    """JSON pointer to the field."""
    value: str | None = None
    """Value the operation refers to."""


class ComparePatch(ApiModel):
    """Selects a resource and the parts of it that drift detection must not compare."""

    kind: str | None = None
    """Kind of the resource."""
    api_version: str | None = None
    """API version of the resource."""
    namespace: str | None = None
    """Namespace of the resource."""
    name: str | None = None
    """Name of the resource."""
    operations: list[Operation] | None = None
    """Fields to drop before comparing."""
    json_pointers: list[str] | None = None
    """JSON pointers to fields whose differences are ignored."""


class DiffOptions(ApiModel):
    """Settings of drift ("Modified") detection."""

    compare_patches: list[ComparePatch] | None = None
    """Resources or fields excluded from drift detection, e.g. ones changed at runtime."""


class IgnoreOptions(ApiModel):
    """Settings for what readiness computation disregards."""

    conditions: list[dict[str, str]] | None = None
    """Resource status conditions to disregard: each entry lists fields a condition must all match."""


class CorrectDrift(ApiModel):
    """Settings for repairing resources changed behind Helm's back."""

    enabled: bool = False
    """Restore the release when deployed resources drift from it."""
    force: bool = False
    """Restore with --force: resources that cannot be patched are recreated."""
    keep_fail_history: bool = False
    """Keep failed restore attempts in the Helm history."""


class BundleDeploymentOptions(ApiModel):
    """Deployment settings that may be given for all clusters (spec) or per target."""

    default_namespace: str | None = None
    """Namespace for resources that name none; also the Helm release namespace unless namespace is set."""
    namespace: str | None = None
    """Namespace every namespaced resource is forced into, and the Helm release namespace."""
    helm: HelmOptions = Field(default_factory=HelmOptions)
    """The chart and how Helm deploys it."""
    service_account: str | None = None
    """Service account on the target cluster that Helm actions run as."""
    force_sync_generation: int = Field(default=0, json_schema_extra=_INT64)
    """Change this number to force a redeployment even if nothing else changed."""
    kustomize: KustomizeOptions | None = None
    """GitRepo-only setting; ignored for a HelmApp."""
    yaml: YAMLOptions | None = None
    """GitRepo-only setting; ignored for a HelmApp."""
    diff: DiffOptions | None = None
    """What drift detection compares."""
    keep_resources: bool = False
    """Leave the deployed resources in place when the HelmApp (or its target) goes away."""
    delete_namespace: bool = False
    """Delete the namespace named in namespace when the HelmApp is deleted."""
    ignore: IgnoreOptions = Field(default_factory=IgnoreOptions)
    """What readiness computation disregards."""
    correct_drift: CorrectDrift = Field(default_factory=CorrectDrift)
    """Repairing resources that drifted from the release."""
    namespace_labels: dict[str, str] | None = None
    """Labels set on the release namespace of each target cluster."""
    namespace_annotations: dict[str, str] | None = None
    """Annotations set on the release namespace of each target cluster."""
    delete_crd_resources: bool = Field(default=False, alias="deleteCRDResources")
    """Delete the chart's CRDs on uninstall. Careful: this deletes every custom resource of them too."""


class BundleTarget(BundleDeploymentOptions):
    """A set of clusters to deploy to, with settings that override the spec's for them.

    Targets are tried in order and the first one that matches a cluster wins.
    """

    name: str = ""
    """Name of the target; defaults to target000, target001, ... by position."""
    cluster_name: str | None = None
    """Matches the Fleet Cluster of this name."""
    cluster_selector: LabelSelector | None = None
    """Matches Fleet Clusters by label. Combined with clusterGroup(Selector), it narrows the group."""
    cluster_group: str | None = None
    """Matches the Clusters of the Fleet ClusterGroup of this name."""
    cluster_group_selector: LabelSelector | None = None
    """Matches the Clusters of Fleet ClusterGroups selected by label."""
    do_not_deploy: bool = False
    """Matching clusters get nothing: a way to exclude clusters that later targets would match."""


# --------------------------------------------------------------------------------------------------
# bundle-level options


class Partition(ApiModel):
    """A group of clusters rolled out together. Ignored by helmops."""

    name: str | None = None
    """Name of the partition."""
    max_unavailable: int | str | None = Field(default=None, json_schema_extra=_INT_OR_STRING)
    """Clusters (number or percentage) that may be unavailable before the rollout pauses."""
    cluster_name: str = ""
    """Cluster in this partition."""
    cluster_selector: LabelSelector | None = None
    """Clusters in this partition, by label."""
    cluster_group: str = ""
    """Cluster group in this partition."""
    cluster_group_selector: LabelSelector | None = None
    """Cluster groups in this partition, by label."""


class RolloutStrategy(ApiModel):
    """Fleet's staged rollout settings. Partitioning is ignored by helmops."""

    max_unavailable: int | str | None = Field(default=None, json_schema_extra=_INT_OR_STRING)
    """Clusters (number or percentage such as 25%) that may be unavailable during a rollout."""
    max_unavailable_partitions: int | str | None = Field(default=None, json_schema_extra=_INT_OR_STRING)
    """Partitions (number or percentage) that may be unavailable during a rollout."""
    auto_partition_size: int | str | None = Field(default=None, json_schema_extra=_INT_OR_STRING)
    """Size (number or percentage of clusters) of automatically made partitions."""
    partitions: list[Partition] | None = None
    """Explicit partitions."""


class BundleResource(ApiModel):
    """A file of a GitRepo bundle. Meaningless for a HelmApp."""

    name: str | None = None
    """File name."""
    content: str | None = None
    """File content."""
    encoding: str | None = None
    """Encoding of content, e.g. base64+gz."""


class BundleTargetRestriction(ApiModel):
    """Clusters a bundle may be deployed to at most. Ignored by helmops."""

    name: str | None = None
    """Name of the restriction."""
    cluster_name: str | None = None
    """Allowed cluster."""
    cluster_selector: LabelSelector | None = None
    """Allowed clusters, by label."""
    cluster_group: str | None = None
    """Allowed cluster group."""
    cluster_group_selector: LabelSelector | None = None
    """Allowed cluster groups, by label."""


class BundleRef(ApiModel):
    """A bundle that must be ready first. Not yet honoured by helmops."""

    name: str | None = None
    """Name of the bundle."""
    selector: LabelSelector | None = None
    """Bundles by label."""


class HelmAppOptions(ApiModel):
    """Fleet-internal settings its controller writes onto Bundles. Ignored in a HelmApp."""

    helm_app_secret_name: str = ""
    """Secret with repository credentials."""
    helm_app_insecure_skip_tls_verify: bool = Field(default=False, alias="helmAppInsecureSkipTLSVerify")
    """Skip TLS verification."""


class BundleSpec(BundleDeploymentOptions):
    """Fleet's Bundle spec, which a HelmApp spec inlines."""

    paused: bool = False
    """Stop changing deployed releases; changes are reported as OutOfSync until unpaused."""
    rollout_strategy: RolloutStrategy | None = None
    """Staged rollout settings."""
    resources: list[BundleResource] | None = None
    """GitRepo bundle files; meaningless for a HelmApp."""
    contents_id: str | None = None
    """Fleet-internal reference to bundle contents in OCI storage; meaningless for a HelmApp."""
    targets: list[BundleTarget] = Field(default_factory=list)
    """Where to deploy. Empty means the ClusterGroup named default, as in Fleet."""
    target_restrictions: list[BundleTargetRestriction] = Field(default_factory=list)
    """Fleet-internal allow-list of clusters; ignored by helmops."""
    depends_on: list[BundleRef] | None = None
    """Bundles that must be ready before this one is deployed; not yet honoured by helmops."""
    helm_app_options: HelmAppOptions | None = None
    """Fleet-internal; ignored in a HelmApp."""


class HelmAppSpec(BundleSpec):
    """What to deploy (a Helm chart with values) and to which Fleet clusters."""

    labels: dict[str, str] = Field(default_factory=dict)
    """Labels given to what Fleet generates for this HelmApp (bundles), e.g. for dependsOn selectors."""
    helm_secret_name: str | None = None
    """Secret in the HelmApp's namespace with chart repository credentials: username, password and/or
    cacerts."""
    insecure_skip_tls_verify: bool = Field(default=False, alias="insecureSkipTLSVerify")
    """Do not verify the TLS certificate of the chart repository or registry."""
    polling_interval: str | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": POLLING_INTERVAL_RULE,
                    "message": "must be '0' or a Go duration such as 30s, 5m or 1h30m "
                    "(units ns, us, ms, s, m, h), at most 2562047h",
                }
            ]
        },
    )
    """How often to look for a newer chart version matching version (a Go duration such as 5m);
    empty or 0 turns polling off. Not in Fleet v0.12: Fleet's own CRD drops it."""

    @field_validator("polling_interval")
    @classmethod
    def _check_polling_interval(cls, value: str | None) -> str | None:
        # Same rule as the CRD's CEL validation, so objects built in Python are held to it too.
        if value is not None and not is_polling_interval(value):
            raise ValueError(
                "must be '0' or a Go duration such as 30s, 5m or 1h30m (units ns, us, ms, s, m, h), at most 2562047h"
            )
        return value


# --------------------------------------------------------------------------------------------------
# status


class Condition(ApiModel):
    """One observation about the HelmApp, e.g. Ready or Accepted."""

    type: str
    """Kind of observation, e.g. Ready."""
    status: str
    """True, False or Unknown."""
    last_update_time: str = ""
    """When the condition was last written (RFC 3339)."""
    last_transition_time: str = ""
    """When status last changed (RFC 3339)."""
    reason: str = ""
    """One-word reason for the status."""
    message: str = ""
    """Human-readable detail."""


class ModifiedStatus(ApiModel):
    """A resource that differs from what the release wants."""

    kind: str | None = None
    """Kind of the resource."""
    api_version: str | None = None
    """API version of the resource."""
    namespace: str | None = None
    """Namespace of the resource."""
    name: str | None = None
    """Name of the resource."""
    missing: bool = False
    """The resource should exist but does not."""
    delete: bool = False
    """The resource exists but should not."""
    exist: bool = False
    """The resource exists."""
    patch: str | None = None
    """The change that would restore the resource."""


class ResourceSummary(ApiModel):
    """Readiness of one resource."""

    state: str = ""
    """Current state of the resource."""
    error: bool = False
    """The resource is in error."""
    transitioning: bool = False
    """The resource is changing."""
    message: list[str] = Field(default_factory=list)
    """Details about the state."""


class NonReadyStatus(ApiModel):
    """A resource that is not ready."""

    uid: str | None = None
    """UID of the resource."""
    kind: str | None = None
    """Kind of the resource."""
    api_version: str | None = None
    """API version of the resource."""
    namespace: str | None = None
    """Namespace of the resource."""
    name: str | None = None
    """Name of the resource."""
    summary: ResourceSummary = Field(default_factory=ResourceSummary)
    """Why the resource is not ready."""


class NonReadyResource(ApiModel):
    """A deployment (one cluster's release) that is not ready."""

    name: str | None = None
    """Name of the deployment."""
    bundle_state: str | None = None
    """Its state: NotReady, WaitApplied, ErrApplied, OutOfSync, Modified or Pending."""
    message: str | None = None
    """Why it is in that state."""
    modified_status: list[ModifiedStatus] | None = None
    """Resources that drifted."""
    non_ready_status: list[NonReadyStatus] | None = None
    """Resources that are not ready."""


class BundleSummary(ApiModel):
    """How many deployments (one per target cluster) are in each state."""

    not_ready: int = 0
    """Deployments applied but not ready."""
    wait_applied: int = 0
    """Deployments not yet applied."""
    err_applied: int = 0
    """Deployments that failed to apply."""
    out_of_sync: int = 0
    """Deployments whose applied release is older than wanted (e.g. paused)."""
    modified: int = 0
    """Deployments whose resources drifted."""
    ready: int = 0
    """Deployments that are ready."""
    pending: int = 0
    """Deployments waiting to be processed."""
    desired_ready: int = 0
    """Deployments there should be."""
    non_ready_resources: list[NonReadyResource] | None = None
    """Up to 10 deployments that are not ready, with details."""


class HelmAppDisplay(ApiModel):
    """Short status texts for kubectl get and user interfaces."""

    ready_bundle_deployments: str = ""
    """Ready deployments out of wanted ones, as ready/wanted."""
    state: str = ""
    """Worst state of a deployment; empty when all are ready."""
    message: str = ""
    """Message of the deployment in the worst state."""
    error: bool = False
    """Whether there is an error message."""


class PerClusterState(ApiModel):
    """Clusters (as namespace/name) where a resource is in each state."""

    ready: list[str] = Field(default_factory=list)
    """Clusters where the resource is ready."""
    wait_applied: list[str] = Field(default_factory=list)
    """Clusters where it is not yet applied."""
    pending: list[str] = Field(default_factory=list)
    """Clusters where it is pending."""
    modified: list[str] = Field(default_factory=list)
    """Clusters where it drifted."""
    orphaned: list[str] = Field(default_factory=list)
    """Clusters where it exists but is no longer wanted."""
    missing: list[str] = Field(default_factory=list)
    """Clusters where it is missing."""
    unknown: list[str] = Field(default_factory=list)
    """Clusters where its state is unknown."""
    not_ready: list[str] = Field(default_factory=list)
    """Clusters where it is not ready."""


class ResourceSummaryEntry(ApiModel):
    """A resource deployed by this HelmApp and its state across clusters."""

    kind: str | None = None
    """Kind of the resource."""
    api_version: str | None = None
    """API version of the resource."""
    type: str = ""
    """Type in Rancher's notation, e.g. apps.deployment or configmap."""
    id: str | None = None
    """namespace/name of the resource."""
    namespace: str | None = None
    """Namespace of the resource."""
    name: str | None = None
    """Name of the resource."""
    incomplete_state: bool = False
    """Not every cluster reported a state."""
    state: str = ""
    """First state other than Ready seen on a cluster, else Ready."""
    error: bool = False
    """The resource is in error on some cluster."""
    transitioning: bool = False
    """The resource is changing on some cluster."""
    message: str | None = None
    """Detail about the state."""
    per_cluster_state: PerClusterState | None = Field(default_factory=PerClusterState)
    """Clusters in each state. Fleet's schema requires this key."""


class ResourceCounts(ApiModel):
    """How many deployed resources are in each state."""

    ready: int = 0
    """Resources that are ready."""
    desired_ready: int = 0
    """Resources there should be."""
    wait_applied: int = 0
    """Resources not yet applied."""
    modified: int = 0
    """Resources that drifted."""
    orphaned: int = 0
    """Resources no longer wanted."""
    missing: int = 0
    """Resources that are missing."""
    unknown: int = 0
    """Resources in an unknown state."""
    not_ready: int = 0
    """Resources not ready."""


class HelmAppStatus(ApiModel):
    """Observed state, in Fleet's HelmApp status shape."""

    conditions: list[Condition] = Field(default_factory=list)
    """Current observations, e.g. Ready and Accepted."""
    summary: BundleSummary = Field(default_factory=BundleSummary)
    """Deployments per state."""
    display: HelmAppDisplay = Field(default_factory=HelmAppDisplay)
    """Short status texts."""
    ready_clusters: int = 0
    """Clusters where the release is ready."""
    desired_ready_clusters: int = 0
    """Clusters the HelmApp is deployed to."""
    resources: list[ResourceSummaryEntry] = Field(default_factory=list)
    """Resources deployed, with their state per cluster."""
    resource_counts: ResourceCounts = Field(default_factory=ResourceCounts)
    """Resources per state, summed over clusters."""
    per_cluster_resource_counts: dict[str, ResourceCounts] = Field(default_factory=dict)
    """Resources per state for each cluster (key: namespace/name of the Cluster)."""
    version: str = ""
    """Chart version deployed (resolved from version when that is a constraint or empty)."""
    last_polling_triggered: str | None = None
    """When the chart source was last polled for new versions (RFC 3339). Not in Fleet v0.12."""
    observed_generation: int | None = None
    """metadata.generation of the spec this status describes. Not in Fleet v0.12."""


# --------------------------------------------------------------------------------------------------
# objects


class KubeObject(ApiModel):
    """Common behaviour of whole Kubernetes objects."""

    api_version: str
    kind: str

    def manifest(self) -> dict[str, Any]:
        """The object as a complete manifest: :meth:`to_dict` with ``apiVersion`` and ``kind`` always present."""
        return {"apiVersion": self.api_version, "kind": self.kind, **self.to_dict()}


class HelmApp(KubeObject):
    """Deploys a Helm chart to Fleet clusters (fleet.cattle.io/v1alpha1 HelmApp, as in Fleet v0.12)."""

    api_version: str = f"{GROUP}/{VERSION}"
    kind: str = KIND
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: HelmAppSpec = Field(default_factory=HelmAppSpec)
    status: HelmAppStatus | None = None


class ClusterSpec(ApiModel):
    """The parts of a Fleet Cluster's spec helmops reads; the rest is kept but not modelled."""

    kube_config_secret: str | None = None
    """Secret holding the kubeconfig (key value) used to reach the cluster."""
    kube_config_secret_namespace: str | None = None
    """Namespace of that Secret; when empty, the Cluster's namespace."""
    template_values: dict[str, Any] | None = Field(default=None, json_schema_extra=_FREE_FORM)
    """Per-cluster data available to HelmApp value templates as .ClusterValues."""
    paused: bool = False
    """Stop changing deployments on this cluster."""


class Cluster(KubeObject):
    """A Fleet Cluster (fleet.cattle.io/v1alpha1): a downstream cluster HelmApps can target."""

    api_version: str = f"{GROUP}/{VERSION}"
    kind: str = "Cluster"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ClusterSpec = Field(default_factory=ClusterSpec)
    status: dict[str, Any] | None = None


class ClusterGroupSpec(ApiModel):
    """Which Clusters belong to the group."""

    selector: LabelSelector | None = None
    """Clusters of the group's namespace whose labels match. An empty selector matches all."""


class ClusterGroup(KubeObject):
    """A Fleet ClusterGroup (fleet.cattle.io/v1alpha1): a named, label-selected set of Clusters."""

    api_version: str = f"{GROUP}/{VERSION}"
    kind: str = "ClusterGroup"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: ClusterGroupSpec = Field(default_factory=ClusterGroupSpec)
    status: dict[str, Any] | None = None
