"""Pure polling rules: which HelmApps are polled, when the next poll is due, the Polled condition."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from helmops.api.objects import HelmApp

log = logging.getLogger("helmops.controller")


#: ± fraction of the interval added to every poll time.
JITTER = 0.1
#: annotation used instead of status.lastPollingTriggered when the CRD prunes that field.
LAST_POLL_ANNOTATION = "helmops.cattle.io/last-polling-triggered"
POLLING_ANNOTATION = "helmops.cattle.io/polling-interval"
POLLED = "Polled"


# --- pure parts ------------------------------------------------------------------------------------
def interval_seconds(helmapp: HelmApp) -> float:
    """``spec.pollingInterval``, else the annotation; 0 when unset, ``0`` or invalid (a value the lenient
    parse dropped is invalid: it turns polling off rather than falling back to the annotation)."""
    from helmops.api.duration import is_polling_interval, parse_duration

    if "pollingInterval" in helmapp.unparsed:
        return 0.0
    annotations = helmapp.metadata.annotations
    text = str(helmapp.spec.polling_interval or annotations.get(POLLING_ANNOTATION) or "").strip()
    if not text or not is_polling_interval(text):
        return 0.0
    return parse_duration(text)


def polling_interval(helmapp: HelmApp) -> float:
    """The interval when polling applies to this HelmApp, else 0: the version must be a constraint (not
    an exact version) and the chart not a tarball URL; paused or deleting HelmApps are not polled."""
    from helmops.sources.versions import is_exact

    seconds = interval_seconds(helmapp)
    if seconds <= 0:
        return 0.0
    spec = helmapp.spec
    helm = spec.helm
    chart = str(helm.chart or "")
    if helmapp.metadata.deletion_timestamp or spec.paused or (not chart and not helm.repo):
        return 0.0
    if chart.split("?", 1)[0].lower().endswith(".tgz") and "://" in chart:
        return 0.0
    if is_exact(str(helm.version or "").strip()):
        return 0.0
    return seconds


def source_key(helmapp: HelmApp) -> tuple[str, ...]:
    """What a poll depends on: a change re-plans the schedule (as Fleet re-schedules its job)."""
    helm = helmapp.spec.helm
    return (
        str(helm.repo or ""),
        str(helm.chart or ""),
        str(helm.version or ""),
        str(helmapp.spec.helm_secret_name or ""),
    )


def index_key(helmapp: HelmApp) -> tuple[str, str]:
    """The shared thing a poll reads — one repository index or one OCI tag list — so that one poll's news
    can wake every HelmApp that reads the same one. Credentials are left out on purpose: a woken HelmApp
    polls with its own, so nothing is learnt across them, only the time of the next poll moves."""
    helm = helmapp.spec.helm
    return (str(helm.repo or "").strip().rstrip("/"), str(helm.chart or "").strip())


def parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def last_polled(helmapp: HelmApp, status: Mapping[str, Any] | None) -> datetime | None:
    """``status.lastPollingTriggered``, else the annotation; the later when both are set. The stored
    status is passed beside the model, which leaves it out (:func:`helmops.api.parse.parse_helmapp`)."""
    status = status or {}
    annotations = helmapp.metadata.annotations
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
