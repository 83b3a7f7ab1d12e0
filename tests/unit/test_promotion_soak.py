"""helmops.promotion.soak: Ready-run tracking, the soak decision (pure) and the promoter against a fake store."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from helmops.api.parse import lenient_helmapp
from helmops.promotion.keys import PROMOTE_FROM, PROMOTED, READY_SINCE, SOAK
from helmops.promotion.settings import SettingsError
from helmops.promotion.soak import Promoter, ReadyRun, Soak, decide, next_run, ready_run, soak_setting

T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)


def app(name: str, version: str, *, ready: bool = True, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "team", "name": name, "generation": 2, "resourceVersion": "7",
                     "annotations": dict(annotations or {})},
        "spec": {"helm": {"version": version}},
        "status": {
            "version": version, "observedGeneration": 2, "readyClusters": 2 if ready else 1, "desiredReadyClusters": 2,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }  # fmt: skip


def test_soak_setting() -> None:
    assert soak_setting({}, "team") is None
    assert soak_setting({PROMOTE_FROM: "dev", SOAK: "1h"}, "team") == Soak("dev", 3600)
    assert soak_setting({PROMOTE_FROM: "team/dev"}, "team") == Soak("dev", 0)
    for bad in ({PROMOTE_FROM: "other/dev"}, {PROMOTE_FROM: "Not A Name"}, {PROMOTE_FROM: "dev", SOAK: "soon"},
                {PROMOTE_FROM: "dev", SOAK: "-1h"}, {PROMOTE_FROM: "dev", SOAK: "10000h"}):  # fmt: skip
        with pytest.raises(SettingsError):
            soak_setting(bad, "team")


def test_ready_run_tracking() -> None:
    changed, run = next_run(app("dev", "1.0.0"), T0)
    assert changed and run == ReadyRun("1.0.0", T0)
    tracked = app("dev", "1.0.0", annotations={READY_SINCE: run.text()})
    assert next_run(tracked, T0 + timedelta(hours=1)) == (False, run)  # continuous: the start stays
    assert next_run(app("dev", "1.0.0", ready=False, annotations={READY_SINCE: run.text()}), T0) == (True, None)
    changed, run2 = next_run(app("dev", "1.1.0", annotations={READY_SINCE: run.text()}), T0 + timedelta(hours=2))
    assert changed and run2 == ReadyRun("1.1.0", T0 + timedelta(hours=2))
    assert next_run(app("dev", "1.0.0", ready=False), T0) == (False, None)


@pytest.mark.parametrize(
    "text", ["", "nope", '{"version": "1"}', '{"version": "1", "since": "2026-12-01T10:00:00"}', "x" * 600]
)
def test_garbage_ready_since_is_no_run(text: str) -> None:
    assert ready_run({READY_SINCE: text}) is None


def test_decide_waits_for_the_whole_soak() -> None:
    soak = Soak("dev", 600)
    src = app("dev", "1.1.0", annotations={READY_SINCE: ReadyRun("1.1.0", T0).text()})
    dst = app("prod", "1.0.0")
    v = decide(lenient_helmapp(dst), src, soak, T0 + timedelta(seconds=599))
    assert v.version is None and v.until == T0 + timedelta(seconds=600)
    assert decide(lenient_helmapp(dst), src, soak, T0 + timedelta(seconds=600)).version == "1.1.0"
    assert decide(lenient_helmapp(app("prod", "1.1.0")), src, soak, T0 + timedelta(hours=1)).version is None
    assert decide(lenient_helmapp(dst), None, soak, T0).version is None
    not_ready = app("dev", "1.1.0", ready=False, annotations={READY_SINCE: ReadyRun("1.1.0", T0).text()})
    assert decide(lenient_helmapp(dst), not_ready, soak, T0 + timedelta(hours=1)).version is None
    untracked = app("dev", "1.1.0")
    assert decide(lenient_helmapp(dst), untracked, soak, T0 + timedelta(hours=1)).version is None


class Store:
    def __init__(self, *objs: dict[str, Any]) -> None:
        self.objs = {o["metadata"]["name"]: o for o in objs}
        self.events: list[tuple[str, str, str]] = []
        self.conflict = False

    async def get_helmapp(self, namespace: str, name: str) -> dict[str, Any] | None:
        obj = self.objs.get(name)
        return json.loads(json.dumps(obj)) if obj is not None else None

    async def patch_annotations(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> None:
        ann = self.objs[name]["metadata"]["annotations"]
        for k, v in annotations.items():
            if v is None:
                ann.pop(k, None)
            else:
                ann[k] = v

    async def patch_helmapp(self, namespace: str, name: str, patch: Mapping[str, Any]) -> bool:
        if self.conflict:
            return False
        obj = self.objs[name]
        obj["spec"]["helm"]["version"] = patch["spec"]["helm"]["version"]
        obj["metadata"]["annotations"].update(patch["metadata"].get("annotations") or {})
        return True

    async def event(self, obj: Mapping[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
        self.events.append((obj["metadata"]["name"], reason, message))


async def test_promoter_promotes_after_the_soak_and_requeues_until_then() -> None:
    now = [T0]
    requeued: list[tuple[tuple[str, str], float]] = []
    store = Store(app("dev", "1.1.0"), app("prod", "1.0.0", annotations={PROMOTE_FROM: "dev", SOAK: "10m"}))
    p = Promoter(store, lambda k, d: requeued.append((k, d)), clock=lambda: now[0])
    await p.after_reconcile(("team", "dev"))  # takes no part in promotion yet: not read, not written
    assert READY_SINCE not in store.objs["dev"]["metadata"]["annotations"]
    p.observe(("team", "prod"), store.objs["prod"]["metadata"]["annotations"])  # the watch sees a follower
    await p.after_reconcile(("team", "prod"))  # the source is not tracked yet
    assert requeued[-1] == (("team", "dev"), 0.0)  # so it is reconciled at once, which starts its Ready run
    assert store.objs["prod"]["spec"]["helm"]["version"] == "1.0.0" and p.followers == {
        ("team", "dev"): {("team", "prod")}
    }
    await p.after_reconcile(("team", "dev"))  # tracks dev's Ready run, re-checks its follower at once
    assert ready_run(store.objs["dev"]["metadata"]["annotations"]) == ReadyRun("1.1.0", T0)
    assert requeued[-1] == (("team", "prod"), 0.0)
    now[0] = T0 + timedelta(minutes=4)
    await p.after_reconcile(("team", "prod"))
    assert requeued[-1] == (("team", "prod"), 360.5) and store.objs["prod"]["spec"]["helm"]["version"] == "1.0.0"
    now[0] = T0 + timedelta(minutes=10)
    await p.after_reconcile(("team", "prod"))
    assert store.objs["prod"]["spec"]["helm"]["version"] == "1.1.0"
    record = json.loads(store.objs["prod"]["metadata"]["annotations"][PROMOTED])
    assert record["version"] == "1.1.0" and record["previous"] == "1.0.0" and record["from"] == "team/dev"
    assert store.events[-1][:2] == ("prod", "Promoted") and "1.0.0 -> 1.1.0" in store.events[-1][2]


async def test_a_source_not_ready_during_the_soak_starts_over() -> None:
    now = [T0]
    store = Store(app("dev", "1.1.0"), app("prod", "1.0.0", annotations={PROMOTE_FROM: "dev", SOAK: "10m"}))
    p = Promoter(store, lambda k, d: None, clock=lambda: now[0])
    p.observe(("team", "prod"), store.objs["prod"]["metadata"]["annotations"])
    await p.after_reconcile(("team", "prod"))
    await p.after_reconcile(("team", "dev"))
    now[0] = T0 + timedelta(minutes=5)
    store.objs["dev"]["status"]["conditions"][0]["status"] = "False"
    await p.after_reconcile(("team", "dev"))
    assert READY_SINCE not in store.objs["dev"]["metadata"]["annotations"]
    now[0] = T0 + timedelta(minutes=6)
    store.objs["dev"]["status"]["conditions"][0]["status"] = "True"
    await p.after_reconcile(("team", "dev"))
    now[0] = T0 + timedelta(minutes=12)  # 10 minutes after the first Ready, 6 after the second
    await p.after_reconcile(("team", "prod"))
    assert store.objs["prod"]["spec"]["helm"]["version"] == "1.0.0"
    now[0] = T0 + timedelta(minutes=16)
    await p.after_reconcile(("team", "prod"))
    assert store.objs["prod"]["spec"]["helm"]["version"] == "1.1.0"


async def test_conflicts_and_bad_settings() -> None:
    requeued: list[tuple[tuple[str, str], float]] = []
    src = app("dev", "1.1.0", annotations={READY_SINCE: ReadyRun("1.1.0", T0).text()})
    store = Store(src, app("prod", "1.0.0", annotations={PROMOTE_FROM: "dev"}))
    store.conflict = True
    p = Promoter(store, lambda k, d: requeued.append((k, d)), clock=lambda: T0)
    p.observe(("team", "prod"), store.objs["prod"]["metadata"]["annotations"])
    await p.after_reconcile(("team", "prod"))
    # the new source is requeued once; the conflicted promotion is retried in a second
    assert requeued == [(("team", "dev"), 0.0), (("team", "prod"), 1.0)]
    assert store.objs["prod"]["spec"]["helm"]["version"] == "1.0.0"
    store.objs["prod"]["metadata"]["annotations"][SOAK] = "whenever"
    await p.after_reconcile(("team", "prod"))
    await p.after_reconcile(("team", "prod"))
    assert [e[1] for e in store.events] == ["InvalidPromotionSettings"]  # said once
