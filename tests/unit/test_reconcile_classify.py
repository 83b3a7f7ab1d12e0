"""Pure reconcile core: release from storage labels, classify, decide, fingerprint, backoff."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from helmops.reconcile import (
    FINGERPRINT_LABEL,
    MUTATING,
    Action,
    Classification,
    Decision,
    Phase,
    ReleaseInfo,
    backoff,
    classify,
    decide,
    fingerprint,
    release_from_secrets,
)

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _labels(version: int, status: str, fp: str | None = None, modified: datetime | None = None) -> dict[str, str]:
    d = {"owner": "helm", "name": "rel", "status": status, "version": str(version)}
    if fp:
        d[FINGERPRINT_LABEL] = fp
    if modified:
        d["modifiedAt"] = str(int(modified.timestamp()))
    return d


def _rel(status: str, fp: str | None = "fp", age: float = 0) -> ReleaseInfo:
    return ReleaseInfo("rel", "ns", 2, status, fp, NOW - timedelta(seconds=age))


def test_newest_revision_wins() -> None:
    info = release_from_secrets(
        "ns",
        "rel",
        [
            (_labels(1, "superseded", "old"), None),
            (_labels(10, "deployed", "new"), None),
            (_labels(9, "superseded"), None),
            ({"owner": "helm", "name": "other", "version": "99"}, None),
        ],
    )
    assert info is not None and info.revision == 10 and info.status == "deployed" and info.fingerprint == "new"


def test_absent_and_uninstalled() -> None:
    assert release_from_secrets("ns", "rel", []) is None
    assert release_from_secrets("ns", "rel", [(_labels(3, "uninstalled"), None)]) is None


def test_updated_from_modified_at_or_creation() -> None:
    info = release_from_secrets("ns", "rel", [(_labels(1, "pending-upgrade", modified=NOW), None)])
    assert info is not None and info.updated == NOW
    info = release_from_secrets("ns", "rel", [(_labels(1, "pending-upgrade"), "2026-01-01T11:00:00Z")])
    assert info is not None and info.updated == NOW - timedelta(hours=1)


@pytest.mark.parametrize(
    ("release", "phase", "action"),
    [
        (None, Phase.ABSENT, Action.INSTALL),
        (_rel("deployed"), Phase.IN_SYNC, Action.NONE),
        (_rel("deployed", fp="other"), Phase.OUT_OF_SYNC, Action.UPGRADE),
        (_rel("deployed", fp=None), Phase.OUT_OF_SYNC, Action.UPGRADE),
        (_rel("failed"), Phase.FAILED, Action.UPGRADE),  # retried, never uninstalled
        (_rel("superseded"), Phase.OUT_OF_SYNC, Action.UPGRADE),
        (_rel("pending-upgrade", age=10), Phase.PENDING_UPGRADE, Action.WAIT),
        (_rel("pending-upgrade", age=1000), Phase.PENDING_UPGRADE, Action.RECOVER),
        (_rel("pending-install", age=1000), Phase.PENDING_INSTALL, Action.RECOVER),
        (_rel("pending-rollback", age=1000), Phase.PENDING_ROLLBACK, Action.RECOVER),
        (_rel("uninstalling", age=1000), Phase.UNINSTALLING, Action.RECOVER),
    ],
)
def test_classify_and_decide(release: ReleaseInfo | None, phase: Phase, action: Action) -> None:
    c = classify(release, "fp", held=False, now=NOW, timeout_seconds=300, grace_seconds=60)
    assert c.phase is phase
    assert decide(c, deleting=False, keep_resources=False, now=NOW).action is action


def test_pending_held_by_us_is_never_recovered() -> None:
    c = classify(_rel("pending-upgrade", age=10_000), "fp", held=True, now=NOW, timeout_seconds=300, grace_seconds=60)
    assert not c.stale
    assert decide(c, deleting=False, keep_resources=False, now=NOW).action is Action.WAIT


def test_wait_until_stale() -> None:
    c = classify(_rel("pending-upgrade", age=100), "fp", held=False, now=NOW, timeout_seconds=300, grace_seconds=60)
    d = decide(c, deleting=False, keep_resources=False, now=NOW)
    assert d.action is Action.WAIT and d.wait_seconds == pytest.approx(260)


@pytest.mark.parametrize(
    ("release", "keep", "held", "action"),
    [
        (None, False, False, Action.NONE),
        (_rel("deployed"), True, False, Action.NONE),
        (_rel("deployed"), False, False, Action.UNINSTALL),
        (_rel("failed"), False, False, Action.UNINSTALL),
        (_rel("pending-install", age=1), False, False, Action.UNINSTALL),
        (_rel("pending-upgrade", age=1), False, True, Action.WAIT),
    ],
)
def test_decide_on_deletion(release: ReleaseInfo | None, keep: bool, held: bool, action: Action) -> None:
    c = classify(release, "fp", held=held, now=NOW, timeout_seconds=300, grace_seconds=60)
    assert decide(c, deleting=True, keep_resources=keep, now=NOW).action is action


def test_fingerprint_stable_and_sensitive() -> None:
    base = fingerprint("sha256:c", "sha256:v", {"atomic": False, "maxHistory": 2})
    assert len(base) == 63 and all(ch in "0123456789abcdef" for ch in base)
    assert base == fingerprint("sha256:c", "sha256:v", {"maxHistory": 2, "atomic": False})
    assert base != fingerprint("sha256:c2", "sha256:v", {"atomic": False, "maxHistory": 2})
    assert base != fingerprint("sha256:c", "sha256:v2", {"atomic": False, "maxHistory": 2})
    assert base != fingerprint("sha256:c", "sha256:v", {"atomic": True, "maxHistory": 2})


def test_backoff() -> None:
    assert backoff(0) == 0
    assert [backoff(n, base=5, cap=300) for n in range(1, 9)] == [5, 10, 20, 40, 80, 160, 300, 300]
    assert backoff(1, base=5, cap=300, jitter=0.5) == 7.5
    assert backoff(1000, base=5, cap=300) == 300


def test_release_owner() -> None:
    from helmops.reconcile.release import OWNER_LABEL, foreign_owner, owner_value

    assert owner_value("team", "app") == "team.app"
    long = owner_value("team", "a" * 80)
    assert long.startswith("sha256-") and len(long) <= 63
    mine = ReleaseInfo("rel", "ns", 1, "deployed", "fp", NOW, {OWNER_LABEL: "team.app"})
    theirs = ReleaseInfo("rel", "ns", 1, "deployed", "fp", NOW, {OWNER_LABEL: "other.app"})
    unowned = ReleaseInfo("rel", "ns", 1, "deployed", "fp", NOW, {})
    assert foreign_owner(mine, "team", "app") is None
    assert foreign_owner(unowned, "team", "app") is None
    assert foreign_owner(None, "team", "app") is None
    assert foreign_owner(theirs, "team", "app") == "other.app"


# --- drift: Phase.DRIFTED and Action.CORRECT_DRIFT ---

DRIFT = "Deployment ns/web modified"


def _classify(release: ReleaseInfo | None, drift: str = DRIFT, held: bool = False) -> Classification:
    return classify(release, "fp", held=held, now=NOW, timeout_seconds=300, grace_seconds=60, drift=drift)


def test_deployed_in_sync_with_drift_is_drifted() -> None:
    rel = _rel("deployed")
    c = _classify(rel)
    assert c.phase is Phase.DRIFTED and c.drift == DRIFT and c.release == rel
    assert not c.stale and c.stale_at is None
    assert _classify(rel, held=True).held


def test_no_drift_text_is_in_sync() -> None:
    c = _classify(_rel("deployed"), drift="")
    assert c.phase is Phase.IN_SYNC and c.drift == ""


@pytest.mark.parametrize(
    ("release", "phase"),
    [
        (_rel("deployed", fp="other"), Phase.OUT_OF_SYNC),
        (_rel("deployed", fp=None), Phase.OUT_OF_SYNC),
        (_rel("superseded"), Phase.OUT_OF_SYNC),
        (_rel("failed"), Phase.FAILED),
        (_rel("pending-install", age=1000), Phase.PENDING_INSTALL),
        (_rel("pending-upgrade", age=10), Phase.PENDING_UPGRADE),
        (_rel("pending-rollback", age=1000), Phase.PENDING_ROLLBACK),
        (_rel("uninstalling", age=1000), Phase.UNINSTALLING),
        (None, Phase.ABSENT),
    ],
)
def test_drift_is_ignored_unless_deployed_and_in_sync(release: ReleaseInfo | None, phase: Phase) -> None:
    c = _classify(release)
    assert c.phase is phase and c.drift == ""
    assert c == _classify(release, drift="")  # drift changes nothing else either
    for correct in (False, True):
        assert decide(c, deleting=False, keep_resources=False, now=NOW, correct_drift=correct) == decide(
            c, deleting=False, keep_resources=False, now=NOW
        )


def test_drifted_is_corrected_only_with_correct_drift() -> None:
    c = _classify(_rel("deployed"))
    assert decide(c, deleting=False, keep_resources=False, now=NOW, correct_drift=True) == Decision(
        Action.CORRECT_DRIFT, "live objects drifted: correctDrift"
    )
    assert decide(c, deleting=False, keep_resources=False, now=NOW, correct_drift=False) == Decision(
        Action.NONE, "live objects drifted: reported (correctDrift off)"
    )
    assert decide(c, deleting=False, keep_resources=False, now=NOW).action is Action.NONE  # off by default


def test_in_sync_is_left_alone_with_correct_drift() -> None:
    c = _classify(_rel("deployed"), drift="")
    assert decide(c, deleting=False, keep_resources=False, now=NOW, correct_drift=True) == Decision(
        Action.NONE, "release in sync"
    )


@pytest.mark.parametrize("correct", [False, True])
@pytest.mark.parametrize(
    ("keep", "held", "action"),
    [(False, False, Action.UNINSTALL), (True, False, Action.NONE), (False, True, Action.WAIT)],
)
def test_deleting_ignores_drift(correct: bool, keep: bool, held: bool, action: Action) -> None:
    c = _classify(_rel("deployed"), held=held)
    assert c.phase is Phase.DRIFTED
    d = decide(c, deleting=True, keep_resources=keep, now=NOW, correct_drift=correct)
    assert d.action is action
    assert d.action is not Action.CORRECT_DRIFT


def test_correct_drift_is_a_mutating_action() -> None:
    assert Action.CORRECT_DRIFT in MUTATING
    assert Action.NONE not in MUTATING and Action.WAIT not in MUTATING
