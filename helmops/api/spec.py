"""The HelmApp spec: Fleet's bundle-level fields on top of the deployment options, and ``pollingInterval``.

What only the spec carries (rollout strategy, targets, restrictions, dependencies, repository credentials,
polling) lives here; the options a target can override as well are in :mod:`helmops.api.options`.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from helmops.api.base import INT_OR_STRING, ApiModel
from helmops.api.duration import is_polling_interval
from helmops.api.options import BundleDeploymentOptions, BundleTarget
from helmops.api.selector import LabelSelector

__all__ = [
    "POLLING_INTERVAL_MAX_HOURS",
    "POLLING_INTERVAL_PATTERN",
    "POLLING_INTERVAL_RULE",
    "BundleRef",
    "BundleResource",
    "BundleSpec",
    "BundleTargetRestriction",
    "HelmAppOptions",
    "HelmAppSpec",
    "Partition",
    "RolloutStrategy",
]

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


# --------------------------------------------------------------------------------------------------
# bundle-level options


class Partition(ApiModel):
    """A group of clusters rolled out together: a later partition starts when the earlier ones are within
    their maxUnavailable (or maxUnavailablePartitions allows). Selectors AND; a partition with none is empty."""

    name: str | None = None
    """Name of the partition."""
    max_unavailable: int | str | None = Field(default=None, json_schema_extra=INT_OR_STRING)
    """Clusters (number or percentage) of this partition that may be unavailable or being updated at once;
    default: the rollout's maxUnavailable."""
    cluster_name: str = ""
    """Cluster in this partition."""
    cluster_selector: LabelSelector | None = None
    """Clusters in this partition, by label."""
    cluster_group: str = ""
    """Cluster group in this partition."""
    cluster_group_selector: LabelSelector | None = None
    """Cluster groups in this partition, by label."""


class RolloutStrategy(ApiModel):
    """How fast a change (chart version, values) spreads over the targeted clusters, as in Fleet v0.12."""

    max_unavailable: int | str | None = Field(default=None, json_schema_extra=INT_OR_STRING)
    """Clusters (number or percentage such as 25%) that may be unavailable or being updated at once;
    default 100%. An integer 0 never updates a healthy cluster; "0%" means one at a time."""
    max_unavailable_partitions: int | str | None = Field(default=None, json_schema_extra=INT_OR_STRING)
    """Partitions (number or percentage) that may be unavailable before later ones wait; default 0."""
    auto_partition_size: int | str | None = Field(default=None, json_schema_extra=INT_OR_STRING)
    """Size (number or percentage of clusters) of automatic partitions, made only from 200 targeted
    clusters on; default 25%."""
    partitions: list[Partition] | None = None
    """Explicit partitions, rolled out in order; clusters in none follow in a trailing partition."""


class BundleResource(ApiModel):
    """A file of a GitRepo bundle. Meaningless for a HelmApp."""

    name: str | None = None
    """File name."""
    content: str | None = None
    """File content."""
    encoding: str | None = None
    """Encoding of content, e.g. base64+gz."""


class BundleTargetRestriction(ApiModel):
    """An allow-list entry: the HelmApp deploys only to clusters some entry selects (Fleet's rule: the
    entry and a target must select the cluster through the same ClusterGroup). Selectors in one entry AND;
    an entry that sets none matches nothing."""

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
    """A HelmApp of the same namespace that must be Ready on a cluster before this one is installed or
    upgraded there."""

    name: str | None = None
    """Name of the HelmApp (its bundle)."""
    selector: LabelSelector | None = None
    """HelmApps by their spec.labels (and Fleet's bundle labels)."""


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
    """Allow-list of clusters: the HelmApp deploys only where some entry matches; options still come from
    the first matching target. Empty means no restriction."""
    depends_on: list[BundleRef] | None = None
    """HelmApps that must be Ready on a cluster before this one is installed or upgraded there."""
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
