"""helmops.promotion.view: what `helmops status` says a HelmApp waits for."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from test_promotion_soak import app

from helmops.promotion import plan as plans
from helmops.promotion.keys import APPROVED_PLAN, PLAN, PROMOTE_FROM, READY_SINCE, REQUIRE_APPROVAL, SOAK, WINDOWS
from helmops.promotion.soak import ReadyRun
from helmops.promotion.view import waits

NOW = datetime(2026, 12, 1, 10, 0, 5, tzinfo=UTC)


def with_plan(annotations: dict[str, str]) -> dict[str, Any]:
    entry = plans.cluster_plan(
        cluster="team/prod", release="apps/rel", action="upgrade", chart="demo", version_from="1", version_to="2",
        fingerprint="fp", values=None, objects=None,
    )  # fmt: skip
    stored = plans.with_entry(plans.load(None), entry)
    return app("prod", "1.0.0", annotations={PLAN: plans.dumps(stored), **annotations}) | {"_hash": stored["planHash"]}


def test_nothing_waits() -> None:
    assert waits(app("prod", "1.0.0"), None, NOW) == []


def test_waits_for_approval_then_for_the_window() -> None:
    deny = json.dumps([{"kind": "deny", "schedule": "* * * * *", "duration": "20s"}])
    obj = with_plan({REQUIRE_APPROVAL: "true", WINDOWS: deny})
    (row,) = waits(obj, None, NOW)
    assert row["waitsFor"] == "approval" and obj["_hash"] in row["detail"]
    obj["metadata"]["annotations"][APPROVED_PLAN] = obj["_hash"]
    (row,) = waits(obj, None, NOW)
    assert row == {"cluster": "team/prod", "waitsFor": "window", "until": "2026-12-01T10:00:20+00:00",
                   "detail": "upgrade demo 1 -> 2, manifest not rendered"}  # fmt: skip


def test_waits_for_the_soak_until() -> None:
    src = app("dev", "1.1.0", annotations={READY_SINCE: ReadyRun("1.1.0", NOW).text()})
    (row,) = waits(app("prod", "1.0.0", annotations={PROMOTE_FROM: "dev", SOAK: "1h"}), src, NOW)
    assert row["waitsFor"] == "soak" and row["until"] == "2026-12-01T11:00:05+00:00"


def test_bad_settings_are_shown() -> None:
    (row,) = waits(app("prod", "1.0.0", annotations={WINDOWS: "nonsense: ["}), None, NOW)
    assert row["waitsFor"] == "settings"
