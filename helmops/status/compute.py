"""Fleet-shaped HelmApp status from per-cluster outcomes (pure)."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from helmops.api.keys import LOCAL

SUMMARY_KEYS = ("notReady", "waitApplied", "errApplied", "outOfSync", "modified", "ready", "pending")
CONDITION_TYPES = ("Accepted", "Ready", "Reconciling", "Stalled")
RESOURCE_COUNT_KEYS = ("ready", "desiredReady", "waitApplied", "modified", "orphaned", "missing", "unknown", "notReady")

#: Size bounds, so a HelmApp deployed to many clusters keeps a small status object.
MAX_NON_READY = 10  # summary.nonReadyResources (Fleet's own cap)
MAX_RESOURCES = 100  # status.resources entries
MAX_CLUSTER_IDS = 50  # cluster IDs per perClusterState list
MAX_PER_CLUSTER_COUNTS = 100  # perClusterResourceCounts keys
MAX_READY_MESSAGE_PARTS = 4  # cluster messages in the Ready condition (as Fleet's ReadyMessage)


class State(enum.StrEnum):
    """A per-cluster (BundleDeployment-equivalent) state, with Fleet's names."""

    READY = "Ready"
    WAIT_APPLIED = "WaitApplied"
    ERR_APPLIED = "ErrApplied"
    #: paused: the release differs from the spec and is deliberately left alone.
    OUT_OF_SYNC = "OutOfSync"
    #: deployed, but some of its resources are not ready (or missing) yet.
    NOT_READY = "NotReady"
    MODIFIED = "Modified"
    PENDING = "Pending"


#: Fleet's BundleDeployment state ranking (the highest non-Ready state is shown in display.state).
RANK = {
    State.ERR_APPLIED: 7,
    State.WAIT_APPLIED: 6,
    State.MODIFIED: 5,
    State.OUT_OF_SYNC: 4,
    State.PENDING: 3,
    State.NOT_READY: 2,
    State.READY: 1,
}
_SUMMARY_KEY = {
    State.READY: "ready",
    State.WAIT_APPLIED: "waitApplied",
    State.ERR_APPLIED: "errApplied",
    State.OUT_OF_SYNC: "outOfSync",
    State.NOT_READY: "notReady",
    State.MODIFIED: "modified",
    State.PENDING: "pending",
}


@dataclass(frozen=True)
class ResourceState:
    """One object of a release's manifest as found on one cluster."""

    api_version: str
    kind: str
    namespace: str
    name: str
    #: ``Ready``, ``NotReady``, ``Missing``, ``WaitApplied`` or ``Unknown`` (Fleet's resource state names).
    state: str
    message: str = ""

    @property
    def type(self) -> str:
        """Fleet's resource type: ``<group>.<kind>`` lower-case, the bare kind for the core group."""
        group = self.api_version.rpartition("/")[0]
        kind = self.kind.lower()
        return f"{group}.{kind}" if group else kind

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


@dataclass(frozen=True)
class ClusterOutcome:
    """What one reconcile learned about the HelmApp on one cluster."""

    name: str
    #: the Fleet cluster namespace (for the local cluster without a Cluster object: the HelmApp's namespace).
    namespace: str
    state: State
    #: error text, without the cluster prefix.
    error: str | None = None
    #: progress/paused note, without the cluster prefix.
    message: str | None = None
    #: the release's manifest objects and their readiness (None: not read).
    resources: tuple[ResourceState, ...] | None = None

    @property
    def id(self) -> str:
        return f"{self.namespace}/{self.name}"

    def describe(self) -> str:
        return f"cluster {self.name} in namespace {self.namespace}"

    def text(self) -> str:
        """The cluster's message, prefixed Fleet's way (empty when Ready)."""
        if self.state is State.READY:
            return ""
        body = self.error if self.state is State.ERR_APPLIED else self.message
        if not body:
            body = {
                State.ERR_APPLIED: "deployment failed",
                State.WAIT_APPLIED: "deploying",
                State.OUT_OF_SYNC: "out of sync",
            }.get(self.state, "")
        if not body and self.state is State.NOT_READY:
            body = _not_ready_text(self.resources or ())
        return f"{self.describe()}: {body}"


def _not_ready_text(resources: Sequence[ResourceState]) -> str:
    bad = [r for r in resources if r.state != "Ready"]
    parts = [f"{r.type} {r.id} {r.state.lower()}" + (f" ({r.message})" if r.message else "") for r in bad[:3]]
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    return "not ready: " + ", ".join(parts) + more if parts else "not ready"


@dataclass(frozen=True)
class Outcome:
    """What one reconcile learned about the HelmApp.

    Without ``clusters`` it describes the single local cluster (``state``/``error``/``message``); with
    ``clusters`` every entry is one targeted cluster and ``state``/``error``/``message`` are not used.
    """

    name: str
    namespace: str
    generation: int
    state: State
    #: spec valid and chart (and values) resolved.
    accepted: bool = True
    #: why not accepted (spec, chart source, values), without the cluster prefix.
    accepted_error: str | None = None
    #: deploy error (helm), without the cluster prefix.
    error: str | None = None
    #: progress note while waiting (e.g. another helm operation in progress).
    message: str | None = None
    #: the resolved chart version (status.version).
    version: str | None = None
    #: True when retrying cannot help until the spec changes.
    stalled: bool = False
    cluster: str = LOCAL
    #: per-cluster results (multi-cluster targeting); None = the single cluster above.
    clusters: tuple[ClusterOutcome, ...] | None = None
    #: the cluster the acceptance error concerns (namespace, name); default: the single cluster above.
    accepted_cluster: tuple[str, str] | None = None

    @property
    def cluster_namespace(self) -> str:
        # For the local cluster Fleet's cluster namespace is the HelmApp's namespace.
        return self.namespace

    def per_cluster(self) -> tuple[ClusterOutcome, ...]:
        if self.clusters is not None:
            return self.clusters
        state = self.state if self.accepted else State.ERR_APPLIED
        error = self.error if self.accepted else self.accepted_error
        return (ClusterOutcome(self.cluster, self.cluster_namespace, state, error=error, message=self.message),)


_READY_REASON = {
    State.READY: "",
    State.WAIT_APPLIED: "InProgress",
    State.ERR_APPLIED: "Error",
    State.OUT_OF_SYNC: "Paused",
    State.NOT_READY: "NotReady",
    State.MODIFIED: "Modified",
    State.PENDING: "Pending",
}


def cluster_message(o: Outcome, text: str) -> str:
    """Fleet's convention: every per-cluster message names the cluster."""
    return f"cluster {o.cluster} in namespace {o.cluster_namespace}: {text}"


def _ts(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _condition(
    ctype: str, ok: bool, reason: str, message: str, live: Mapping[str, Any] | None, now: datetime
) -> dict[str, Any]:
    status = "True" if ok else "False"
    cond: dict[str, Any] = {"type": ctype, "status": status, "reason": reason, "message": message}
    same_status = bool(live) and live is not None and live.get("status") == status
    same_all = (
        same_status and live is not None and live.get("reason", "") == reason and (live.get("message", "") == message)
    )
    cond["lastTransitionTime"] = (live or {}).get("lastTransitionTime") if same_status else _ts(now)
    cond["lastUpdateTime"] = (live or {}).get("lastUpdateTime") if same_all else _ts(now)
    if not cond["lastTransitionTime"]:
        cond["lastTransitionTime"] = _ts(now)
    if not cond["lastUpdateTime"]:
        cond["lastUpdateTime"] = _ts(now)
    return cond


def ready_message(clusters: Sequence[ClusterOutcome]) -> str:
    """The Ready condition's message: the cluster's own message when one cluster is not ready; otherwise
    Fleet's ``<State>(<count>) [<message>; ...]`` (at most MAX_READY_MESSAGE_PARTS messages, sorted)."""
    bad = [c for c in clusters if c.state is not State.READY]
    if not bad:
        return ""
    if len(bad) == 1:
        return bad[0].text()
    top = max(bad, key=lambda c: RANK[c.state]).state
    count = sum(1 for c in bad if c.state is top)
    parts = sorted(c.text() for c in bad)
    more = f"; and {len(parts) - MAX_READY_MESSAGE_PARTS} more" if len(parts) > MAX_READY_MESSAGE_PARTS else ""
    return f"{top.value}({count}) [{'; '.join(parts[:MAX_READY_MESSAGE_PARTS])}{more}]"


def _resources(clusters: Sequence[ClusterOutcome]) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """status.resources, resourceCounts and perClusterResourceCounts (bounded, see the MAX_* constants)."""
    by_key: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    totals = {k: 0 for k in RESOURCE_COUNT_KEYS}
    per_cluster: dict[str, Any] = {}
    for c in sorted(clusters, key=lambda c: c.id):
        if c.resources is None:
            continue
        counts = {k: 0 for k in RESOURCE_COUNT_KEYS}
        for r in c.resources:
            state_key = r.state[:1].lower() + r.state[1:]
            counts["desiredReady"] += 1
            if state_key in counts:
                counts[state_key] += 1
            key = (r.api_version, r.kind, r.namespace, r.name)
            entry = by_key.get(key)
            if entry is None:
                if len(by_key) >= MAX_RESOURCES:
                    continue
                entry = by_key[key] = {
                    "apiVersion": r.api_version,
                    "kind": r.kind,
                    "type": r.type,
                    "id": r.id,
                    "namespace": r.namespace,
                    "name": r.name,
                    "state": "Ready",
                    "perClusterState": {},
                }
            ids = entry["perClusterState"].setdefault(state_key, [])
            if len(ids) < MAX_CLUSTER_IDS:
                ids.append(c.id)
            if r.state != "Ready" and entry["state"] == "Ready":
                entry["state"] = r.state
                if r.message:
                    entry["message"] = f"{c.describe()}: {r.message}"
        for k in RESOURCE_COUNT_KEYS:
            totals[k] += counts[k]
        if len(per_cluster) < MAX_PER_CLUSTER_COUNTS:
            per_cluster[c.id] = counts
    resources = sorted(by_key.values(), key=lambda e: (e["type"], e["id"]))
    return resources, totals, per_cluster


def compute_status(o: Outcome, live: Mapping[str, Any] | None, now: datetime) -> dict[str, Any]:
    """The complete status. Timestamps of unchanged conditions are kept from ``live``."""
    live = live or {}
    live_conds = {c.get("type"): c for c in live.get("conditions") or [] if isinstance(c, Mapping)}
    clusters = o.per_cluster()
    desired = len(clusters)
    ready_n = sum(1 for c in clusters if c.state is State.READY)

    summary: dict[str, Any] = {k: 0 for k in SUMMARY_KEYS}
    summary["desiredReady"] = desired
    for c in clusters:
        summary[_SUMMARY_KEY[c.state]] += 1
    bad = sorted((c for c in clusters if c.state is not State.READY), key=lambda c: (-RANK[c.state], c.id))
    if bad:
        summary["nonReadyResources"] = [
            {"name": o.name, "bundleState": c.state.value, "message": c.text()} for c in bad[:MAX_NON_READY]
        ]
    top = bad[0] if bad else None
    msg = top.text() if top else ""
    ready = top is None

    if o.accepted:
        accepted_msg = ""
    elif o.accepted_cluster is not None:
        accepted_msg = f"cluster {o.accepted_cluster[1]} in namespace {o.accepted_cluster[0]}: {o.accepted_error or ''}"
    elif o.clusters is None:
        accepted_msg = cluster_message(o, o.accepted_error or "")
    else:
        accepted_msg = o.accepted_error or ""
    reconciling = any(
        c.state in (State.WAIT_APPLIED, State.NOT_READY) or (c.state is State.ERR_APPLIED and not o.stalled)
        for c in clusters
    )
    ready_msg = ready_message(clusters)
    state_reason = _READY_REASON[top.state] if top else ""
    conditions = [
        _condition(
            "Accepted", o.accepted, "" if o.accepted else "Error", accepted_msg, live_conds.get("Accepted"), now
        ),
        _condition("Ready", ready, state_reason, ready_msg, live_conds.get("Ready"), now),
        _condition(
            "Reconciling",
            reconciling,
            "Progressing" if reconciling else "",
            msg if reconciling else "",
            live_conds.get("Reconciling"),
            now,
        ),
        _condition(
            "Stalled",
            o.stalled,
            "Stalled" if o.stalled else "",
            msg if o.stalled else "",
            live_conds.get("Stalled"),
            now,
        ),
    ]
    # Keep conditions other writers own (e.g. Polled) untouched.
    others = [c for t, c in live_conds.items() if t not in CONDITION_TYPES]

    status: dict[str, Any] = {
        "observedGeneration": o.generation,
        "conditions": conditions + others,
        "summary": summary,
        "display": {
            "readyBundleDeployments": f"{ready_n}/{desired}",
            "state": top.state.value if top else "",
            "message": msg,
            "error": bool(top and top.state is State.ERR_APPLIED),
        },
        "readyClusters": ready_n,
        "desiredReadyClusters": desired,
    }
    if any(c.resources is not None for c in clusters):
        resources, totals, per_cluster = _resources(clusters)
        status["resources"] = resources
        status["resourceCounts"] = totals
        status["perClusterResourceCounts"] = per_cluster
    if o.version:
        status["version"] = o.version
    elif live.get("version"):
        status["version"] = live["version"]
    return status


def _comparable(status: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in keys:
        v = status.get(k)
        if k == "conditions":
            v = sorted(
                (
                    (c.get("type"), c.get("status"), c.get("reason") or "", c.get("message") or "")
                    for c in (v or [])
                    if isinstance(c, Mapping)
                ),
                key=lambda t: str(t[0]),
            )
        elif k == "summary" and isinstance(v, Mapping):
            v = {sk: sv for sk, sv in v.items() if sv not in (0, None, [], "")}
        out[k] = v
    return out


def status_changed(live: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """True when writing ``desired`` would change something a reader can see. Fields the installed CRD
    may prune (observedGeneration under Fleet's CRD) are compared only when the live status has them."""
    live = live or {}
    keys = [k for k in desired if k != "observedGeneration" or "observedGeneration" in live]
    return _comparable(live, keys) != _comparable(desired, keys)


def status_patch(live: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch turning ``live`` into ``desired`` (stale nonReadyResources removed explicitly)."""
    patch = dict(desired)
    live_summary = (live or {}).get("summary") or {}
    if "nonReadyResources" in live_summary and "nonReadyResources" not in desired.get("summary", {}):
        patch["summary"] = {**desired["summary"], "nonReadyResources": None}
    for key in ("resources", "resourceCounts", "perClusterResourceCounts"):
        if key in (live or {}) and key not in desired:
            patch[key] = None
    live_per = (live or {}).get("perClusterResourceCounts") or {}
    if isinstance(live_per, Mapping) and "perClusterResourceCounts" in desired:
        # a merge patch keeps map keys it does not mention: clusters no longer targeted are removed explicitly
        gone = {k: None for k in live_per if k not in desired["perClusterResourceCounts"]}
        if gone:
            patch["perClusterResourceCounts"] = {**desired["perClusterResourceCounts"], **gone}
    return {"status": patch}


def now_utc() -> datetime:
    return datetime.now(tz=UTC)
