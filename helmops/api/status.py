"""The HelmApp status: what helmops observed, in Fleet v0.12's HelmApp status shape.

Kept apart from the spec models because it flows the other way: the controller writes it (computed by
``helmops.status``), and Fleet's UI and ``kubectl get`` read it, so its shape must stay Fleet's.
"""

from __future__ import annotations

from pydantic import Field

from helmops.api.base import ApiModel

__all__ = [
    "BundleSummary",
    "Condition",
    "HelmAppDisplay",
    "HelmAppStatus",
    "ModifiedStatus",
    "NonReadyResource",
    "NonReadyStatus",
    "PerClusterState",
    "ResourceCounts",
    "ResourceSummary",
    "ResourceSummaryEntry",
]


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
