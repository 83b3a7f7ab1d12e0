"""``dependsOn``: per cluster, is every dependency of a HelmApp Ready on that cluster? (pure)

Fleet v0.12 (fleet-rollout.md §2) evaluates it in the agent, per cluster, over the BundleDeployments of
that cluster; a HelmApp's Bundle has the HelmApp's name and its ``spec.labels`` (plus
``fleet.cattle.io/fleet-helm-name``). helmops has no BundleDeployments: a dependency's "BundleDeployment on
cluster C" is its per-cluster state from its last reconcile (:class:`BundleView`), and its labels are the
ones Fleet would give that BundleDeployment (:func:`deployment_labels`).

* an entry with neither ``name`` nor ``selector`` is skipped;
* selector = ``selector`` (or everything) AND, with a ``name``, ``fleet.cattle.io/bundle-name=<name>``,
  ``fleet.cattle.io/bundle-namespace=<namespace>``;
* an entry matching nothing on the cluster fails at once with Fleet's wording (:func:`missing_message`);
* satisfied when every matched dependency is Ready there (any version: Fleet does not compare versions);
* otherwise ``dependent bundle(s) are not ready: [a b]`` (names in entry order, duplicates kept).

Deviation: the HelmApp itself never counts as its own dependency (in Fleet a selector matching the bundle
itself deadlocks it on its first install).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from helmops.api.selector import LabelSelector
from helmops.api.spec import BundleRef

__all__ = [
    "BUNDLE_NAME",
    "BUNDLE_NAMESPACE",
    "BundleView",
    "DependencyWait",
    "bundle_labels",
    "deployment_labels",
    "entry_selector",
    "evaluate",
    "missing_message",
    "selector_text",
]

BUNDLE_NAME = "fleet.cattle.io/bundle-name"
BUNDLE_NAMESPACE = "fleet.cattle.io/bundle-namespace"
HELM_NAME = "fleet.cattle.io/fleet-helm-name"
READY = "Ready"


@dataclass(frozen=True)
class BundleView:
    """A HelmApp as the Bundle Fleet would make of it: name, Bundle labels, and per cluster (name) the
    state of its last reconcile there (Fleet's BundleDeployment state names)."""

    name: str
    labels: Mapping[str, str]
    states: Mapping[str, str]


def bundle_labels(name: str, spec_labels: Mapping[str, str]) -> dict[str, str]:
    """The Bundle's labels: the HelmApp's ``spec.labels`` plus ``fleet.cattle.io/fleet-helm-name``."""
    return {**spec_labels, HELM_NAME: name}


def _kept(key: str) -> bool:
    # Fleet drops kubectl.kubernetes.io/* and any *cattle.io/* key from Bundle labels, except fleet.cattle.io/*
    if key.startswith("kubectl.kubernetes.io/"):
        return False
    return key.startswith("fleet.cattle.io/") or "cattle.io/" not in key


def deployment_labels(bundle: BundleView, namespace: str, cluster: str) -> dict[str, str]:
    """The labels of the bundle's BundleDeployment on ``cluster`` (Fleet's ``target.go``)."""
    out = {k: v for k, v in bundle.labels.items() if _kept(k)}
    out.update(
        {
            BUNDLE_NAME: bundle.name,
            BUNDLE_NAMESPACE: namespace,
            "fleet.cattle.io/managed": "true",
            "fleet.cattle.io/cluster": cluster,
            "fleet.cattle.io/cluster-namespace": namespace,
        }
    )
    return out


def entry_selector(ref: BundleRef, namespace: str) -> LabelSelector | None:
    """The selector of one ``dependsOn`` entry; None for an entry that names nothing (skipped)."""
    if not ref.name and ref.selector is None:
        return None
    base = ref.selector or LabelSelector()
    labels = dict(base.match_labels)
    if ref.name:
        labels.update({BUNDLE_NAME: ref.name, BUNDLE_NAMESPACE: namespace})
    return LabelSelector(match_labels=labels, match_expressions=list(base.match_expressions))


def selector_text(selector: LabelSelector) -> str:
    """Kubernetes' string form of a selector, requirements sorted by key (as Fleet prints it)."""
    parts: list[tuple[str, str]] = [(k, f"{k}={v}") for k, v in selector.match_labels.items()]
    for r in selector.match_expressions:
        values = ",".join(sorted(r.values))
        text = {
            "In": f"{r.key} in ({values})",
            "NotIn": f"{r.key} notin ({values})",
            "Exists": r.key,
            "DoesNotExist": f"!{r.key}",
        }.get(r.operator, f"{r.key} {r.operator} ({values})")
        parts.append((r.key, text))
    return ",".join(text for _, text in sorted(parts))


def missing_message(selector: LabelSelector, namespace: str) -> str:
    """Fleet's error for an entry matching no BundleDeployment on the cluster."""
    return f"list bundledeployments: no bundles matching labels {selector_text(selector)} in namespace {namespace}"


@dataclass(frozen=True)
class DependencyWait:
    """Why a cluster may not be deployed to yet: a dependency is missing there, or not Ready there."""

    cluster: str
    missing: str | None = None
    not_ready: tuple[str, ...] = ()

    @property
    def message(self) -> str:
        """Fleet's wording (without the cluster; status and Events add ``[Cluster ns/name: …]``)."""
        if self.missing is not None:
            return self.missing
        return f"dependent bundle(s) are not ready: [{' '.join(self.not_ready)}]"


def evaluate(
    refs: Sequence[BundleRef] | None,
    own_name: str,
    namespace: str,
    cluster: str,
    bundles: Sequence[BundleView],
) -> DependencyWait | None:
    """None when every dependency is Ready on ``cluster`` (or there are none); otherwise why not.

    ``bundles`` are the HelmApps of ``namespace`` (the caller caps how many). A bundle is "on" the cluster
    when it has a state there. Raises ValueError for a malformed selector (validation reports it first)."""
    not_ready: list[str] = []
    for ref in refs or ():
        selector = entry_selector(ref, namespace)
        if selector is None:
            continue
        matched = [
            b
            for b in bundles
            if b.name != own_name and cluster in b.states and selector.matches(deployment_labels(b, namespace, cluster))
        ]
        if not matched:
            return DependencyWait(cluster, missing=missing_message(selector, namespace))
        not_ready.extend(b.name for b in matched if b.states[cluster] != READY)
    return DependencyWait(cluster, not_ready=tuple(not_ready)) if not_ready else None
