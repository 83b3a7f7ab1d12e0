"""Status computation for the local cluster (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from helmops.status import Outcome, State, compute_status, status_changed, status_patch

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _conds(status: dict) -> dict:  # type: ignore[type-arg]
    return {c["type"]: c for c in status["conditions"]}


def test_ready() -> None:
    s = compute_status(Outcome("app", "ns", 3, State.READY, version="1.2.0"), None, NOW)
    assert s["display"] == {"readyBundleDeployments": "1/1", "state": "", "message": "", "error": False}
    assert s["summary"]["ready"] == 1 and s["summary"]["desiredReady"] == 1
    assert "nonReadyResources" not in s["summary"]
    assert s["readyClusters"] == 1 and s["desiredReadyClusters"] == 1
    assert s["observedGeneration"] == 3 and s["version"] == "1.2.0"
    c = _conds(s)
    assert c["Accepted"]["status"] == "True" and c["Ready"]["status"] == "True"
    assert c["Reconciling"]["status"] == "False" and c["Stalled"]["status"] == "False"


def test_not_accepted_names_the_cluster() -> None:
    s = compute_status(
        Outcome("app", "team", 1, State.READY, accepted=False, accepted_error="chart not found"), None, NOW
    )
    c = _conds(s)
    assert c["Accepted"]["status"] == "False" and c["Accepted"]["reason"] == "Error"
    assert c["Accepted"]["message"] == "cluster local in namespace team: chart not found"
    assert c["Ready"]["status"] == "False" and "cluster local in namespace team" in c["Ready"]["message"]
    assert s["display"]["state"] == "ErrApplied" and s["display"]["error"] is True
    assert s["display"]["readyBundleDeployments"] == "0/1"
    assert s["summary"]["errApplied"] == 1 and s["summary"]["nonReadyResources"][0]["name"] == "app"


def test_helm_error_keeps_accepted_true() -> None:
    s = compute_status(Outcome("app", "ns", 1, State.ERR_APPLIED, error="UPGRADE FAILED: boom"), None, NOW)
    c = _conds(s)
    assert c["Accepted"]["status"] == "True"
    assert c["Ready"]["message"] == "cluster local in namespace ns: UPGRADE FAILED: boom"


def test_waiting() -> None:
    s = compute_status(Outcome("app", "ns", 1, State.WAIT_APPLIED, message="installing"), None, NOW)
    assert _conds(s)["Reconciling"]["status"] == "True" and s["display"]["state"] == "WaitApplied"
    assert s["display"]["error"] is False


def test_timestamps_kept_when_unchanged_and_no_churn() -> None:
    o = Outcome("app", "ns", 1, State.READY, version="1.0.0")
    first = compute_status(o, None, NOW)
    second = compute_status(o, first, NOW + timedelta(minutes=5))
    assert second == first
    assert not status_changed(first, second)
    failed = compute_status(Outcome("app", "ns", 1, State.ERR_APPLIED, error="x"), first, NOW + timedelta(1))
    assert status_changed(first, failed)
    assert _conds(failed)["Accepted"]["lastTransitionTime"] == _conds(first)["Accepted"]["lastTransitionTime"]
    assert _conds(failed)["Ready"]["lastTransitionTime"] != _conds(first)["Ready"]["lastTransitionTime"]


def test_pruned_observed_generation_is_not_churn() -> None:
    desired = compute_status(Outcome("app", "ns", 7, State.READY, version="1"), None, NOW)
    live = {k: v for k, v in desired.items() if k != "observedGeneration"}  # Fleet's CRD prunes it
    assert not status_changed(live, desired)
    assert status_changed({**desired, "observedGeneration": 6}, desired)


def test_recovery_resets_accepted_and_clears_non_ready() -> None:
    bad = compute_status(Outcome("app", "ns", 1, State.READY, accepted=False, accepted_error="x"), None, NOW)
    good = compute_status(Outcome("app", "ns", 1, State.READY), bad, NOW)
    assert _conds(good)["Accepted"]["status"] == "True"
    patch = status_patch(bad, good)
    assert patch["status"]["summary"]["nonReadyResources"] is None


def test_other_conditions_are_kept() -> None:
    live = {"conditions": [{"type": "Polled", "status": "True"}]}
    s = compute_status(Outcome("app", "ns", 1, State.READY), live, NOW)
    assert "Polled" in _conds(s)


def test_paused_out_of_sync() -> None:
    s = compute_status(Outcome("app", "ns", 1, State.OUT_OF_SYNC, message="paused"), None, NOW)
    c = _conds(s)
    assert s["display"]["state"] == "OutOfSync" and s["display"]["error"] is False
    assert s["summary"]["outOfSync"] == 1 and s["readyClusters"] == 0
    assert c["Ready"]["status"] == "False" and c["Ready"]["reason"] == "Paused"
    assert c["Reconciling"]["status"] == "False" and c["Accepted"]["status"] == "True"
