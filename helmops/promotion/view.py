"""What a HelmApp waits for, per cluster, as ``helmops status`` shows it: approval of its plan, a maintenance
window (and until when), or the soak of its promotion source (and until when). Pure: read from the HelmApp's
annotations (and its source's), never from the cluster."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from helmops.api.parse import lenient_helmapp
from helmops.promotion import plan as plans
from helmops.promotion.keys import APPROVED_PLAN, OVERRIDE, PLAN
from helmops.promotion.settings import SettingsError, approval, plan_hash_text
from helmops.promotion.soak import decide, soak_setting
from helmops.promotion.windows import check, windows


def _iso(t: datetime | None) -> str:
    return t.isoformat(timespec="seconds") if t is not None else ""


def waits(obj: Mapping[str, Any], source: Mapping[str, Any] | None, now: datetime) -> list[dict[str, str]]:
    """Rows of cluster, waitsFor (approval, window, soak, settings), until and detail; [] when nothing waits.
    Window openings are computed for clusters without labels (a selector-limited window is named, not
    evaluated, as the Cluster objects are not read here)."""
    meta = obj.get("metadata") or {}
    ann: Mapping[str, str] = meta.get("annotations") or {}
    rows: list[dict[str, str]] = []
    try:
        setting, ws = approval(ann), windows(ann)
        soak = soak_setting(ann, str(meta.get("namespace") or ""))
    except SettingsError as exc:
        return [{"cluster": "*", "waitsFor": "settings", "until": "", "detail": str(exc)}]
    stored = plans.load(ann.get(PLAN))
    h = stored["planHash"]
    closed = check([w for w in ws if w.selector is None], {}, now)
    for cluster, entry in sorted(stored["clusters"].items()):
        if entry.get("applied") or not h:
            continue
        summary = plans.summary(entry)
        if setting.required and plan_hash_text(ann, APPROVED_PLAN) != h:
            rows.append({"cluster": cluster, "waitsFor": "approval", "until": "", "detail": f"plan {h}: {summary}"})
        elif closed is not None and plan_hash_text(ann, OVERRIDE) != h:
            rows.append({"cluster": cluster, "waitsFor": "window", "until": _iso(closed.opens), "detail": summary})
    if soak is not None:
        verdict = decide(lenient_helmapp(obj), source, soak, now)
        if verdict.until is not None:
            rows.append({"cluster": "*", "waitsFor": "soak", "until": _iso(verdict.until), "detail": verdict.why})
    return rows


__all__ = ["waits"]
