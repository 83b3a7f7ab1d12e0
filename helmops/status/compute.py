"""Fleet-shaped HelmApp status for the single local cluster (pure)."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

LOCAL_CLUSTER = "local"
SUMMARY_KEYS = ("notReady", "waitApplied", "errApplied", "outOfSync", "modified", "ready", "pending")
CONDITION_TYPES = ("Accepted", "Ready", "Reconciling", "Stalled")


class State(enum.StrEnum):
    """The local BundleDeployment-equivalent state, with Fleet's names."""

    READY = "Ready"
    WAIT_APPLIED = "WaitApplied"
    ERR_APPLIED = "ErrApplied"
    #: paused: the release differs from the spec and is deliberately left alone.
    OUT_OF_SYNC = "OutOfSync"


@dataclass(frozen=True)
class Outcome:
    """What one reconcile learned about the HelmApp on the local cluster."""

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
    cluster: str = LOCAL_CLUSTER

    @property
    def cluster_namespace(self) -> str:
        # For the local cluster Fleet's cluster namespace is the HelmApp's namespace.
        return self.namespace


_READY_REASON = {
    State.READY: "",
    State.WAIT_APPLIED: "InProgress",
    State.ERR_APPLIED: "Error",
    State.OUT_OF_SYNC: "Paused",
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


def compute_status(o: Outcome, live: Mapping[str, Any] | None, now: datetime) -> dict[str, Any]:
    """The complete status. Timestamps of unchanged conditions are kept from ``live``."""
    live = live or {}
    live_conds = {c.get("type"): c for c in live.get("conditions") or [] if isinstance(c, Mapping)}
    state = o.state if o.accepted else State.ERR_APPLIED
    err_text = o.accepted_error if not o.accepted else o.error
    if state is State.ERR_APPLIED and not err_text:
        err_text = "deployment failed"
    if state is State.ERR_APPLIED:
        msg = cluster_message(o, err_text or "")
    elif state is State.WAIT_APPLIED:
        msg = cluster_message(o, o.message or "deploying")
    elif state is State.OUT_OF_SYNC:
        msg = cluster_message(o, o.message or "out of sync")
    else:
        msg = ""
    ready = state is State.READY

    summary: dict[str, Any] = {k: 0 for k in SUMMARY_KEYS}
    summary["desiredReady"] = 1
    key = {"Ready": "ready", "WaitApplied": "waitApplied", "ErrApplied": "errApplied", "OutOfSync": "outOfSync"}
    summary[key[state.value]] = 1
    if not ready:
        summary["nonReadyResources"] = [{"name": o.name, "bundleState": state.value, "message": msg}]

    reconciling = state is State.WAIT_APPLIED or (state is State.ERR_APPLIED and not o.stalled)
    accepted_msg = cluster_message(o, o.accepted_error or "") if not o.accepted else ""
    conditions = [
        _condition(
            "Accepted",
            o.accepted,
            "" if o.accepted else "Error",
            accepted_msg,
            live_conds.get("Accepted"),
            now,
        ),
        _condition(
            "Ready",
            ready,
            "" if ready else _READY_REASON[state],
            "" if ready else msg,
            live_conds.get("Ready"),
            now,
        ),
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
            "readyBundleDeployments": f"{1 if ready else 0}/1",
            "state": "" if ready else state.value,
            "message": msg,
            "error": state is State.ERR_APPLIED,
        },
        "readyClusters": 1 if ready else 0,
        "desiredReadyClusters": 1,
    }
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
    return {"status": patch}


def now_utc() -> datetime:
    return datetime.now(tz=UTC)
