"""Whole Kubernetes objects: the HelmApp, and the Fleet Cluster and ClusterGroup helmops reads for targeting.

These are the top-level models the CRDs are generated from (:mod:`helmops.api.crd`). The shape is Fleet
v0.12's ``fleet.cattle.io/v1alpha1``, unchanged, so a manifest written for Fleet parses here and
round-trips: ``HelmApp.model_validate(doc).to_dict() == doc``.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, PrivateAttr

from helmops import GROUP, KIND, VERSION
from helmops.api.base import FREE_FORM, ApiModel
from helmops.api.selector import LabelSelector
from helmops.api.spec import HelmAppSpec
from helmops.api.status import HelmAppStatus

__all__ = [
    "Cluster",
    "ClusterGroup",
    "ClusterGroupSpec",
    "ClusterSpec",
    "HelmApp",
    "KubeObject",
    "ObjectMeta",
]


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

    #: spec fields a lenient parse (:func:`helmops.api.parse.lenient_helmapp`) had to drop; empty when valid.
    _unparsed: frozenset[str] = PrivateAttr(default=frozenset())

    @property
    def unparsed(self) -> frozenset[str]:
        """Spec fields (camelCase; ``helm.x`` inside ``helm``) dropped because they did not parse."""
        return self._unparsed

    @unparsed.setter
    def unparsed(self, fields: frozenset[str]) -> None:
        self._unparsed = fields

    @property
    def key(self) -> tuple[str, str]:
        """(namespace, name): the HelmApp's work-queue key."""
        return (self.metadata.namespace, self.metadata.name)

    def ref(self) -> dict[str, Any]:
        """What the API writes back need to name this object (Events, finalizer patches): its metadata
        identity, in the stored shape."""
        meta = self.metadata
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": {
                "name": meta.name,
                "namespace": meta.namespace,
                "uid": meta.uid,
                "resourceVersion": meta.resource_version,
                "finalizers": list(meta.finalizers),
            },
        }


class ClusterSpec(ApiModel):
    """The parts of a Fleet Cluster's spec helmops reads; the rest is kept but not modelled."""

    kube_config_secret: str | None = None
    """Secret holding the kubeconfig (key value) used to reach the cluster."""
    kube_config_secret_namespace: str | None = None
    """Namespace of that Secret; when empty, the Cluster's namespace."""
    template_values: dict[str, Any] | None = Field(default=None, json_schema_extra=FREE_FORM)
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
