"""What a `${ }` template may see about the cluster it renders for.

The fields and the label/annotation filtering are Fleet's (`.ClusterName`, `.ClusterNamespace`,
`.ClusterLabels`, `.ClusterAnnotations`, `.ClusterValues`), so a Fleet template renders the same here.
The filter hides Rancher/kubectl bookkeeping (keys starting `kubectl.kubernetes.io/` or containing
`cattle.io/`) but keeps the `fleet.cattle.io/*` and `management.cattle.io/*` labels, which users select
and template on.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from helmops.api.keys import LOCAL

_DROPPED_PREFIX = "kubectl.kubernetes.io/"
_DROPPED_INFIX = "cattle.io/"
_KEPT_LABEL_PREFIXES = ("fleet.cattle.io/", "management.cattle.io/")


def _exported(items: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in items.items() if not k.startswith(_DROPPED_PREFIX) and _DROPPED_INFIX not in k}


def filter_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    """Cluster labels as templates see them (Fleet's rule)."""
    labels = labels or {}
    result = _exported(labels)
    for key, value in labels.items():
        if key.startswith(_KEPT_LABEL_PREFIXES):
            result[key] = value
    return result


def filter_annotations(annotations: Mapping[str, str] | None) -> dict[str, str]:
    """Cluster annotations as templates see them (same filter as labels, without the add-back)."""
    return _exported(annotations or {})


def _frozen(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class ClusterContext:
    """The cluster a set of values is rendered for. Build it with `from_cluster` or `local`.

    `labels`/`annotations` are already filtered; `unfiltered_labels` keeps every label for callers that
    need them (targeting), but templates never see it.
    """

    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    annotations: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    values: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    # Fleet's template names, so code can read ctx.ClusterName as a template would.
    @property
    def ClusterName(self) -> str:
        return self.name

    @property
    def ClusterNamespace(self) -> str:
        return self.namespace

    @property
    def ClusterLabels(self) -> Mapping[str, str]:
        return self.labels

    @property
    def ClusterAnnotations(self) -> Mapping[str, str]:
        return self.annotations

    @property
    def ClusterValues(self) -> Mapping[str, Any]:
        return self.values

    @classmethod
    def from_cluster(cls, cluster: Mapping[str, Any]) -> ClusterContext:
        """From a Fleet `Cluster` object as returned by the API (a dict, camelCase keys)."""
        meta = cluster.get("metadata") or {}
        spec = cluster.get("spec") or {}
        template_values = spec.get("templateValues") or {}
        if not isinstance(template_values, Mapping):
            raise TypeError("Cluster spec.templateValues must be a map")
        return cls(
            name=str(meta.get("name") or ""),
            namespace=str(meta.get("namespace") or ""),
            labels=_frozen(filter_labels(meta.get("labels"))),
            annotations=_frozen(filter_annotations(meta.get("annotations"))),
            values=_frozen(copy.deepcopy(dict(template_values))),
        )

    @classmethod
    def local(
        cls,
        name: str = LOCAL,
        namespace: str = "fleet-local",
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> ClusterContext:
        """For the cluster the controller runs in when no Fleet `Cluster` object describes it.

        Labels default to Fleet's bootstrap label for the local cluster, `name=local`; filtering applies.
        """
        return cls(
            name=name,
            namespace=namespace,
            labels=_frozen(filter_labels({"name": LOCAL} if labels is None else labels)),
            annotations=_frozen(filter_annotations(annotations)),
            values=_frozen(copy.deepcopy(dict(values or {}))),
        )

    def __hash__(self) -> int:
        return hash(
            (
                self.name,
                self.namespace,
                tuple(sorted(self.labels.items())),
                tuple(sorted(self.annotations.items())),
                json.dumps(dict(self.values), sort_keys=True, default=str),
            )
        )

    def template_data(self) -> dict[str, Any]:
        """The data a template renders against: fresh plain containers, so a template can't alter the context
        (Sprig's `set`/`unset` mutate maps in place)."""
        return {
            "ClusterName": self.name,
            "ClusterNamespace": self.namespace,
            "ClusterLabels": dict(self.labels),
            "ClusterAnnotations": dict(self.annotations),
            "ClusterValues": copy.deepcopy(dict(self.values)),
        }

    def describe(self) -> str:
        """How errors name the cluster (Fleet's wording)."""
        return f"cluster {self.name} in namespace {self.namespace}"
