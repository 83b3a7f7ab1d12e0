"""helmops.promotion.approval: the approval gate against a fake HelmApp store and renderer (no processes)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from action_fakes import spec, step

from helmops.promotion import plan as plans
from helmops.promotion.gate import AWAITING, INVALID
from helmops.promotion.gate import PromotionGate as ApprovalGate
from helmops.promotion.settings import APPROVAL_SELECTOR, APPROVED_PLAN, PLAN, REQUIRE_APPROVAL
from helmops.reconcile.classify import Action
from helmops.reconcile.release import FINGERPRINT_LABEL


class Store:
    def __init__(self, annotations: dict[str, str], clusters: list[dict[str, Any]] | None = None) -> None:
        self.obj: dict[str, Any] = {"metadata": {"namespace": "team", "name": "app", "annotations": annotations}}
        self.clusters = clusters or []
        self.patches: list[Mapping[str, str | None]] = []

    @property
    def annotations(self) -> dict[str, str]:
        return dict(self.obj["metadata"]["annotations"])

    async def get_helmapp(self, namespace: str, name: str) -> dict[str, Any] | None:
        copy: dict[str, Any] = json.loads(json.dumps(self.obj))
        return copy

    async def patch_annotations(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> None:
        self.patches.append(annotations)
        self.obj["metadata"]["annotations"].update(annotations)

    async def list_clusters(self, namespace: str) -> list[dict[str, Any]]:
        return self.clusters


class Renderer:
    def __init__(self) -> None:
        self.calls = 0

    async def render(self, spec: Any) -> str | None:
        self.calls += 1
        return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n"


def upgrade(fp: str = "fp1", values: dict[str, Any] | None = None, cluster: str = "local") -> Any:
    s = step(Action.UPGRADE, release_spec=spec(labels={FINGERPRINT_LABEL: fp}, values=values or {"a": 1}))
    return dataclasses.replace(s, cluster=cluster)


async def test_ungated_helmapps_pass_without_rendering() -> None:
    renderer = Renderer()
    assert await ApprovalGate(Store({}), renderer).hold(upgrade()) is None
    assert renderer.calls == 0


async def test_gated_action_waits_for_the_matching_hash_only() -> None:
    store, renderer = Store({REQUIRE_APPROVAL: "true"}), Renderer()
    gate = ApprovalGate(store, renderer)
    held = await gate.hold(upgrade())
    assert held is not None and held.reason == AWAITING and not held.ok
    stored = plans.load(store.annotations[PLAN])
    h = stored["planHash"]
    assert h in held.message and f"helmops approve team/app --plan {h}" in held.message
    assert stored["clusters"]["local"]["objects"]["added"] == ["configmap.v1 apps/cm"]
    assert stored["clusters"]["local"]["values"]["added"] == ["a"]

    # again: same plan, no new write, cached (no second render)
    writes = len(store.patches)
    assert (await gate.hold(upgrade())) is not None and len(store.patches) == writes and renderer.calls == 1

    store.obj["metadata"]["annotations"][APPROVED_PLAN] = "ffffffffffffffff"  # stale
    assert await gate.hold(upgrade()) is not None

    store.obj["metadata"]["annotations"][APPROVED_PLAN] = h
    assert await gate.hold(upgrade()) is None
    assert plans.load(store.annotations[PLAN])["clusters"]["local"]["applied"] is True
    assert await gate.hold(upgrade()) is None  # a retry of the same approved plan

    # anything else (values → fingerprint) is a new plan needing a new approval
    held = await gate.hold(upgrade(fp="fp2", values={"a": 2}))
    assert held is not None and plans.load(store.annotations[PLAN])["planHash"] != h


async def test_deleting_is_not_gated() -> None:
    s = dataclasses.replace(step(Action.UNINSTALL), verb="finalize")
    assert await ApprovalGate(Store({REQUIRE_APPROVAL: "true"}), Renderer()).hold(s) is None


async def test_uninstall_of_an_untargeted_cluster_is_gated() -> None:
    s = dataclasses.replace(step(Action.UNINSTALL), verb="cleanup")
    held = await ApprovalGate(Store({REQUIRE_APPROVAL: "true"}), Renderer()).hold(s)
    assert held is not None and "uninstall" in held.message


async def test_cluster_selector_gates_some_clusters_only() -> None:
    clusters = [
        {"metadata": {"name": "prod", "labels": {"env": "prod"}}},
        {"metadata": {"name": "dev", "labels": {"env": "dev"}}},
    ]
    store = Store({REQUIRE_APPROVAL: "true", APPROVAL_SELECTOR: '{"matchLabels": {"env": "prod"}}'}, clusters)
    gate = ApprovalGate(store, Renderer())
    assert await gate.hold(upgrade(cluster="team/dev")) is None
    held = await gate.hold(upgrade(cluster="team/prod"))
    assert held is not None and list(plans.load(store.annotations[PLAN])["clusters"]) == ["team/prod"]


async def test_two_clusters_share_one_plan_and_one_approval() -> None:
    store = Store({REQUIRE_APPROVAL: "true"})
    gate = ApprovalGate(store, Renderer())
    assert await gate.hold(upgrade(cluster="team/a")) is not None
    assert await gate.hold(upgrade(cluster="team/b")) is not None
    stored = plans.load(store.annotations[PLAN])
    assert sorted(stored["clusters"]) == ["team/a", "team/b"]
    store.obj["metadata"]["annotations"][APPROVED_PLAN] = stored["planHash"]
    assert await gate.hold(upgrade(cluster="team/a")) is None
    assert await gate.hold(upgrade(cluster="team/b")) is None  # a's applied mark did not change the hash


async def test_invalid_settings_hold_with_a_clear_reason() -> None:
    held = await ApprovalGate(Store({REQUIRE_APPROVAL: "maybe"}), Renderer()).hold(upgrade())
    assert held is not None and held.reason == INVALID and REQUIRE_APPROVAL in held.message


async def test_secret_strings_never_reach_the_plan() -> None:
    store = Store({REQUIRE_APPROVAL: "true"})
    s = step(
        Action.UPGRADE,
        release_spec=spec(
            values={"pw": "sekret-canary", "nested": {"sekret-key": 1}}, redact=("sekret-canary", "sekret-key")
        ),
    )
    held = await ApprovalGate(store, Renderer()).hold(s)
    assert held is not None
    assert "sekret" not in store.annotations[PLAN] and "sekret" not in held.message


def gauge(reason: str) -> float:
    from helmops.runtime import metrics

    value = metrics.REGISTRY.get_sample_value("helmops_promotion_waiting_helmapps", {"reason": reason})
    return float(value or 0)


async def test_waiting_gauge_counts_held_helmapps_until_a_reconcile_no_longer_holds_them() -> None:
    import time

    gate = ApprovalGate(Store({REQUIRE_APPROVAL: "true"}), Renderer())  # the process has one gate: it sets the gauge
    started = time.monotonic()
    assert await gate.hold(upgrade(cluster="team/a")) is not None
    assert await gate.hold(upgrade(cluster="team/b")) is not None
    assert gauge("approval") == 1  # HelmApps, not clusters
    gate.settle(("team", "app"), started)  # both held during that reconcile: still waiting
    assert gauge("approval") == 1
    gate.settle(("team", "app"), time.monotonic())  # the next reconcile held nothing (reverted)
    assert gauge("approval") == 0
