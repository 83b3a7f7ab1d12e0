"""helmops.promotion.windows (pure rules over cronsim) and the gate's window side (override, requeue)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_promotion_approval import Renderer, Store, upgrade

from helmops.promotion import plan as plans
from helmops.promotion.gate import AWAITING, INVALID, OUTSIDE_WINDOW, PromotionGate
from helmops.promotion.settings import APPROVED_PLAN, OVERRIDE, PLAN, REQUIRE_APPROVAL, WINDOWS, SettingsError
from helmops.promotion.windows import check, windows

NOW = datetime(2026, 12, 1, 10, 0, 5, tzinfo=UTC)  # a Tuesday


def ws(*items: dict[str, Any]) -> list[Any]:
    return windows({WINDOWS: json.dumps(list(items))})


def test_no_windows_never_hold() -> None:
    assert check([], {}, NOW) is None and windows({}) == []


def test_deny_window_holds_until_it_ends() -> None:
    deny = ws({"kind": "deny", "schedule": "* * * * *", "duration": "20s"})
    closed = check(deny, {}, NOW)
    assert closed is not None and closed.opens == NOW.replace(second=20)
    assert "inside a deny window" in closed.message() and "2026-12-01T10:00:20" in closed.message()
    assert check(deny, {}, NOW.replace(second=20)) is None


def test_allow_window_in_its_time_zone() -> None:
    allow = ws({"kind": "allow", "schedule": "0 22 * * *", "duration": "2h", "timeZone": "Europe/Berlin"})
    closed = check(allow, {}, NOW)
    assert closed is not None and closed.opens == datetime(2026, 12, 1, 21, 0, tzinfo=UTC)
    assert check(allow, {}, datetime(2026, 12, 1, 22, 30, tzinfo=UTC)) is None
    assert check(allow, {}, datetime(2026, 12, 1, 23, 0, tzinfo=UTC)) is not None


def test_deny_inside_allow_pushes_the_opening_past_the_deny() -> None:
    both = ws(
        {"kind": "allow", "schedule": "0 10 * * *", "duration": "1h"},
        {"kind": "deny", "schedule": "0 10 * * *", "duration": "10m"},
    )
    closed = check(both, {}, NOW)
    assert closed is not None and closed.opens == NOW.replace(minute=10, second=0)


def test_seconds_schedules_and_selectors() -> None:
    deny = ws(
        {
            "kind": "deny",
            "schedule": "*/30 * * * * *",
            "duration": "15s",
            "clusterSelector": {"matchLabels": {"env": "prod"}},
        }
    )
    assert check(deny, {"env": "dev"}, NOW) is None
    closed = check(deny, {"env": "prod"}, NOW)
    assert closed is not None and closed.opens == NOW.replace(second=15)


@pytest.mark.parametrize(
    "bad",
    [
        "{}",
        "[1]",
        '[{"kind": "maybe", "schedule": "* * * * *", "duration": "1h"}]',
        '[{"kind": "deny", "schedule": "61 * * * *", "duration": "1h"}]',
        '[{"kind": "deny", "schedule": "not cron", "duration": "1h"}]',
        '[{"kind": "deny", "schedule": "* * * * *", "duration": "forever"}]',
        '[{"kind": "deny", "schedule": "* * * * *", "duration": "0s"}]',
        '[{"kind": "deny", "schedule": "* * * * *", "duration": "1h", "timeZone": "Mars/Olympus"}]',
        '[{"kind": "deny", "schedule": "* * * * *", "duration": "1h", "extra": 1}]',
        json.dumps([{"kind": "deny", "schedule": "* * * * *", "duration": "1h"}] * 17),
    ],
)
def test_malformed_windows_are_refused(bad: str) -> None:
    with pytest.raises(SettingsError):
        windows({WINDOWS: bad})


async def test_gate_holds_outside_windows_requeues_for_the_opening_and_override_runs_one_plan() -> None:
    requeued: list[tuple[tuple[str, str], float]] = []
    deny = json.dumps([{"kind": "deny", "schedule": "* * * * *", "duration": "20s"}])
    store = Store({WINDOWS: deny})
    gate = PromotionGate(store, Renderer(), clock=lambda: NOW, requeue=lambda k, d: requeued.append((k, d)))
    held = await gate.hold(upgrade())
    assert held is not None and held.reason == OUTSIDE_WINDOW and "--override" in held.message
    assert requeued == [(("team", "app"), 15.5)]
    h = plans.load(store.annotations[PLAN])["planHash"]
    store.obj["metadata"]["annotations"][OVERRIDE] = h
    assert await gate.hold(upgrade()) is None
    held = await gate.hold(upgrade(fp="fp2"))  # the next plan is held again
    assert held is not None and held.reason == OUTSIDE_WINDOW
    later = PromotionGate(store, Renderer(), clock=lambda: NOW + timedelta(seconds=20))
    assert await later.hold(upgrade(fp="fp2")) is None


async def test_approval_is_asked_first_and_the_window_after() -> None:
    deny = json.dumps([{"kind": "deny", "schedule": "* * * * *", "duration": "20s"}])
    store = Store({WINDOWS: deny, REQUIRE_APPROVAL: "true"})
    gate = PromotionGate(store, Renderer(), clock=lambda: NOW)
    held = await gate.hold(upgrade())
    assert held is not None and held.reason == AWAITING and "next window opens" in held.message
    store.obj["metadata"]["annotations"][APPROVED_PLAN] = plans.load(store.annotations[PLAN])["planHash"]
    held = await gate.hold(upgrade())
    assert held is not None and held.reason == OUTSIDE_WINDOW


async def test_bad_windows_hold_everything() -> None:
    held = await PromotionGate(Store({WINDOWS: "[{}]"}), Renderer()).hold(upgrade())
    assert held is not None and held.reason == INVALID and WINDOWS in held.message
