"""Maintenance windows, as Argo CD's sync windows: ``allow``/``deny``, a cron ``schedule`` (when a window
opens), a ``duration`` (how long it stays open), a ``timeZone`` (the schedule's, default UTC) and an optional
``clusterSelector``. Pure apart from the clock the caller passes in.

Rules for one cluster, over the windows whose selector matches it: inside any active deny window a mutating
action waits; when allow windows exist, outside all of them it waits too. Cron is parsed by cronsim (5
fields, or 6 with seconds first), never by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from pydantic import ValidationError

from helmops.api.duration import parse_duration
from helmops.api.selector import LabelSelector
from helmops.promotion.keys import WINDOWS
from helmops.promotion.settings import MAX_WINDOWS, SettingsError, structured

#: how far ahead the next opening is searched (a schedule that never fires within it: "not within a year").
HORIZON = timedelta(days=366)
#: the most cron occurrences examined per question (bounds a tenant's pathological schedule).
MAX_STEPS = 512
MAX_DURATION = timedelta(days=31)


@dataclass(frozen=True)
class Window:
    kind: str  # "allow" | "deny"
    schedule: str
    duration: timedelta
    zone: ZoneInfo
    selector: LabelSelector | None = None

    def applies_to(self, labels: Mapping[str, str]) -> bool:
        return self.selector is None or self.selector.matches(labels)

    def active_until(self, now: datetime) -> datetime | None:
        """The end of the occurrence of this window that contains ``now`` (None: not active)."""
        local = now.astimezone(self.zone)
        start = _first(CronSim(self.schedule, local + timedelta(microseconds=1), reverse=True))
        if start is None or start + self.duration <= local:
            return None
        return start + self.duration

    def next_start(self, now: datetime) -> datetime | None:
        start = _first(CronSim(self.schedule, now.astimezone(self.zone)))
        return start if start is not None and start - now <= HORIZON else None

    def describe(self) -> str:
        return f"{self.kind} {self.schedule!r} for {self.duration} ({self.zone.key})"


def _first(it: CronSim) -> datetime | None:
    """The first occurrence; None for a schedule cronsim finds none of (such as February 31st)."""
    try:
        return next(it)
    except (StopIteration, CronSimError):
        return None


def _window(i: int, raw: Any) -> Window:
    where = f"annotation {WINDOWS}[{i}]"
    if not isinstance(raw, dict):
        raise SettingsError(f"{where} must be an object with kind, schedule and duration")
    unknown = set(raw) - {"kind", "schedule", "duration", "timeZone", "clusterSelector"}
    if unknown:
        raise SettingsError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))[:200]}")
    kind = raw.get("kind")
    if kind not in ("allow", "deny"):
        raise SettingsError(f"{where}.kind must be allow or deny")
    schedule = raw.get("schedule")
    if not isinstance(schedule, str) or not schedule.strip() or len(schedule) > 200:
        raise SettingsError(f"{where}.schedule must be a cron expression")
    try:
        zone = ZoneInfo(str(raw.get("timeZone") or "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"{where}.timeZone is not a known time zone") from None
    try:
        CronSim(schedule, datetime.now(zone))
    except (CronSimError, ValueError):
        raise SettingsError(f"{where}.schedule is not a valid cron expression") from None
    try:
        duration = timedelta(seconds=parse_duration(str(raw.get("duration") or "")))
    except ValueError:
        raise SettingsError(f"{where}.duration must be a Go duration such as 30s, 1h or 2h30m") from None
    if not timedelta(0) < duration <= MAX_DURATION:
        raise SettingsError(f"{where}.duration must be more than 0 and at most {MAX_DURATION.days} days")
    selector = None
    if raw.get("clusterSelector") is not None:
        try:
            selector = LabelSelector.model_validate(raw["clusterSelector"])
        except ValidationError:
            raise SettingsError(f"{where}.clusterSelector is not a label selector") from None
        if selector.problems():
            raise SettingsError(f"{where}.clusterSelector is not a valid label selector")
    return Window(kind, schedule, duration, zone, selector)


def windows(annotations: Mapping[str, str]) -> list[Window]:
    """The HelmApp's windows ([] when none); SettingsError for a malformed list."""
    raw = structured(annotations, WINDOWS)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise SettingsError(f"annotation {WINDOWS} must be a list of windows")
    if len(raw) > MAX_WINDOWS:
        raise SettingsError(f"annotation {WINDOWS} lists more than {MAX_WINDOWS} windows")
    return [_window(i, w) for i, w in enumerate(raw)]


@dataclass(frozen=True)
class Closed:
    """Why a mutating action must wait, and when it may run (None: not within the search horizon)."""

    reason: str
    opens: datetime | None

    def message(self) -> str:
        when = self.opens.isoformat(timespec="seconds") if self.opens else "not within a year"
        return f"{self.reason}; next window opens {when}"


def check(ws: Sequence[Window], labels: Mapping[str, str], now: datetime) -> Closed | None:
    """None when an action may run on a cluster with ``labels`` at ``now``; otherwise why not and until when."""
    mine = [w for w in ws if w.applies_to(labels)]
    if not mine:
        return None
    allows = [w for w in mine if w.kind == "allow"]
    denies = [w for w in mine if w.kind == "deny"]
    t = now
    reason = ""
    for _ in range(MAX_STEPS):
        ends = [e for w in denies if (e := w.active_until(t)) is not None]
        if ends:
            reason = reason or "inside a deny window"
            t = max(ends)
            continue
        if allows and all(w.active_until(t) is None for w in allows):
            reason = reason or "outside every allow window"
            starts = [s for w in allows if (s := w.next_start(t)) is not None]
            if not starts:
                return Closed(reason, None)
            t = min(starts)
            continue
        break
    else:
        return Closed(reason or "windows", None)
    if t == now:
        return None
    return Closed(reason, t if t - now <= HORIZON else None)


__all__ = ["Closed", "Window", "check", "windows"]
