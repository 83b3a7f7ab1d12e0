"""Deployment options: which chart and values Helm deploys, and how, set once in the spec or per target.

A HelmApp's spec and each of its targets carry the same :class:`BundleDeploymentOptions` (a target's
non-empty fields override the spec's), so the models they share live here, apart from the bundle-level
spec fields (:mod:`helmops.api.spec`) that only the spec has.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from helmops.api.base import FREE_FORM, INT64, ApiModel
from helmops.api.selector import LabelSelector

__all__ = [
    "RELEASE_NAME_MAX_LENGTH",
    "RELEASE_NAME_PATTERN",
    "BundleDeploymentOptions",
    "BundleTarget",
    "ComparePatch",
    "ConfigMapKeyRef",
    "CorrectDrift",
    "DiffOptions",
    "HelmOptions",
    "IgnoreOptions",
    "KustomizeOptions",
    "Operation",
    "SecretKeyRef",
    "ValuesFrom",
    "YAMLOptions",
]

#: Helm's rule for release names (a DNS-1123 subdomain), also enforced by Fleet's CRD.
RELEASE_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
#: Helm refuses release names longer than this.
RELEASE_NAME_MAX_LENGTH = 53


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
    values: dict[str, Any] | None = Field(default=None, json_schema_extra=FREE_FORM)
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
    force_sync_generation: int = Field(default=0, json_schema_extra=INT64)
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
