"""Pure polling rules: which HelmApps are polled, when the next poll is due, the Polled condition."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger("helmops.controller")


#: ± fraction of the interval added to every poll time.
JITTER = 0.1
#: annotation used instead of status.lastPollingTriggered when the CRD prunes that field.
LAST_POLL_ANNOTATION = "helmops.cattle.io/last-polling-triggered"
POLLING_ANNOTATION = "helmops.cattle.io/polling-interval"
POLLED = "Polled"


# --- pure parts ------------------------------------------------------------------------------------
def interval_seconds(helmapp: Mapping[str, Any]) -> float:
    """``spec.pollingInterval``, else the annotation; 0 when unset, ``0`` or invalid."""
    from helmops.api.duration import is_polling_interval, parse_duration

    spec = helmapp.get("spec") or {}
    annotations = (helmapp.get("metadata") or {}).get("annotations") or {}
    text = str(spec.get("pollingInterval") or annotations.get(POLLING_ANNOTATION) or "").strip()
    if not text or not is_polling_interval(text):
        return 0.0
    return parse_duration(text)


def polling_interval(helmapp: Mapping[str, Any]) -> float:
    """The interval when polling applies to this HelmApp, else 0: the version must be a constraint (not
    an exact version) and the chart not a tarball URL; paused or deleting HelmApps are not polled."""
    from helmops.sources.versions import is_exact

    seconds = interval_seconds(helmapp)
    if seconds <= 0:
        return 0.0
    meta = helmapp.get("metadata") or {}
    spec = helmapp.get("spec") or {}
    helm = spec.get("helm") or {}
    chart = str(helm.get("chart") or "")
    if meta.get("deletionTimestamp") or spec.get("paused") or (not chart and not helm.get("repo")):
        return 0.0
    if chart.split("?", 1)[0].lower().endswith(".tgz") and "://" in chart:
        return 0.0
    if is_exact(str(helm.get("version") or "").strip()):
        return 0.0
    return seconds


def source_key(helmapp: Mapping[str, Any]) -> tuple[str, ...]:
    """What a poll depends on: a change re-plans the schedule (as Fleet re-schedules its job)."""
    spec = helmapp.get("spec") or {}
    helm = spec.get("helm") or {}
    return (
        str(helm.get("repo") or ""),
        str(helm.get("chart") or ""),
        str(helm.get("version") or ""),
        str(spec.get("helmSecretName") or ""),
    )


def index_key(helmapp: Mapping[str, Any]) -> tuple[str, str]:
    """The shared thing a poll reads — one repository index or one OCI tag list — so that one poll's news
    can wake every HelmApp that reads the same one. Credentials are left out on purpose: a woken HelmApp
    polls with its own, so nothing is learnt across them, only the time of the next poll moves."""
    helm = (helmapp.get("spec") or {}).get("helm") or {}
    return (str(helm.get("repo") or "").strip().rstrip("/"), str(helm.get("chart") or "").strip())


def parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def last_polled(helmapp: Mapping[str, Any]) -> datetime | None:
    """``status.lastPollingTriggered``, else the annotation; the later when both are set."""
    status = helmapp.get("status") or {}
    annotations = (helmapp.get("metadata") or {}).get("annotations") or {}
    found = [
        t
        for t in (parse_time(status.get("lastPollingTriggered")), parse_time(annotations.get(LAST_POLL_ANNOTATION)))
        if t
    ]
    return max(found) if found else None


def jittered(seconds: float, u: float) -> float:
    """``seconds`` moved by ``u`` ∈ [-1, 1] times JITTER of itself."""
    return seconds * (1.0 + JITTER * max(-1.0, min(1.0, u)))


def next_poll_delay(interval: float, last: datetime | None, now: datetime, u: float) -> float:
    """Seconds until the next poll: due a jittered interval after the last one (which a restart does not
    lose); a HelmApp never polled waits one jittered interval, since its first reconcile has just resolved
    the version."""
    step = jittered(interval, u)
    if last is None:
        return step
    due = last + timedelta(seconds=step)
    return max(0.0, (due - now).total_seconds())


def ts(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def polled_condition(ok: bool, message: str, live: Mapping[str, Any] | None, now: datetime) -> dict[str, Any]:
    """The ``Polled`` condition; timestamps kept while nothing changes."""
    status = "True" if ok else "False"
    reason = "" if ok else "FailedToGetNewChartVersion"
    live = live or {}
    same_status = live.get("status") == status
    same_all = same_status and live.get("reason", "") == reason and live.get("message", "") == message
    return {
        "type": POLLED,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": live.get("lastTransitionTime")
        if same_status and live.get("lastTransitionTime")
        else ts(now),
        "lastUpdateTime": live.get("lastUpdateTime") if same_all and live.get("lastUpdateTime") else ts(now),
    }


def with_condition(conditions: Any, cond: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = [dict(c) for c in conditions or [] if isinstance(c, Mapping) and c.get("type") != cond["type"]]
    return [*out, dict(cond)]
