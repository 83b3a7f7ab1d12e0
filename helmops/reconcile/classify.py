"""Pure classification of a live release against the desired one, and the single action to take."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from helmops.reconcile.release import ReleaseInfo


class Phase(enum.StrEnum):
    ABSENT = "absent"
    PENDING_INSTALL = "pending-install"
    PENDING_UPGRADE = "pending-upgrade"
    PENDING_ROLLBACK = "pending-rollback"
    FAILED = "failed"
    IN_SYNC = "deployed-in-sync"
    #: deployed and in sync with the spec, but live objects differ from the release's manifest.
    DRIFTED = "deployed-drifted"
    OUT_OF_SYNC = "deployed-out-of-sync"
    UNINSTALLING = "uninstalling"


PENDING = frozenset({Phase.PENDING_INSTALL, Phase.PENDING_UPGRADE, Phase.PENDING_ROLLBACK, Phase.UNINSTALLING})


@dataclass(frozen=True)
class Classification:
    phase: Phase
    release: ReleaseInfo | None = None
    #: a helm process of ours currently works on the release.
    held: bool = False
    #: a pending/uninstalling release older than its timeout + grace (nobody is finishing it).
    stale: bool = False
    #: when a pending release becomes stale (None if unknown or not pending).
    stale_at: datetime | None = None
    #: for DRIFTED: what drifted, as status and Events name it.
    drift: str = ""


def classify(
    release: ReleaseInfo | None,
    desired_fingerprint: str,
    *,
    held: bool,
    now: datetime,
    timeout_seconds: float,
    grace_seconds: float,
    drift: str = "",
) -> Classification:
    """``drift``: what the drift monitor found changed on the live objects of this release ("" = nothing)."""
    if release is None:
        return Classification(Phase.ABSENT, held=held)
    status = release.status
    phase: Phase
    if status in ("pending-install", "pending-upgrade", "pending-rollback", "uninstalling"):
        phase = Phase(status)
        stale_at = release.updated + timedelta(seconds=timeout_seconds + grace_seconds) if release.updated else None
        stale = not held and (stale_at is None or now >= stale_at)
        return Classification(phase, release, held=held, stale=stale, stale_at=stale_at)
    if status == "failed":
        phase = Phase.FAILED
    elif status == "deployed" and release.fingerprint == desired_fingerprint:
        if drift:
            return Classification(Phase.DRIFTED, release, held=held, drift=drift)
        phase = Phase.IN_SYNC
    else:  # deployed with another fingerprint, superseded/unknown as newest: converge by upgrading
        phase = Phase.OUT_OF_SYNC
    return Classification(phase, release, held=held)


class Action(enum.StrEnum):
    NONE = "none"
    INSTALL = "install"
    UPGRADE = "upgrade"
    RECOVER = "recover"
    #: Fleet's correctDrift: roll the release back to its current revision.
    CORRECT_DRIFT = "correct-drift"
    UNINSTALL = "uninstall"
    WAIT = "wait"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    #: for WAIT: seconds until it is worth looking again.
    wait_seconds: float | None = None


def _wait(c: Classification, now: datetime, what: str) -> Decision:
    if c.held:
        return Decision(Action.WAIT, f"{what}: a helm operation of this controller is in progress", 5.0)
    secs = max(1.0, (c.stale_at - now).total_seconds()) if c.stale_at else 5.0
    return Decision(Action.WAIT, f"{what}: another helm operation may still be running", secs)


#: the actions that change a release (everything the executor runs).
MUTATING = frozenset({Action.INSTALL, Action.UPGRADE, Action.RECOVER, Action.CORRECT_DRIFT, Action.UNINSTALL})


def decide(
    c: Classification, *, deleting: bool, keep_resources: bool, now: datetime, correct_drift: bool = False
) -> Decision:
    """The one action for this reconcile, finalize or cleanup. Never uninstalls a wanted release, whatever
    its state. ``correct_drift``: correctDrift is enabled (and the HelmApp not paused)."""
    if deleting:
        if keep_resources:
            return Decision(Action.NONE, "keepResources: the release is left in place")
        if c.phase is Phase.ABSENT:
            return Decision(Action.NONE, "release already gone")
        if c.held:
            return _wait(c, now, f"release is {c.phase}")
        return Decision(Action.UNINSTALL, "HelmApp is being deleted")
    if c.phase is Phase.ABSENT:
        return Decision(Action.INSTALL, "release not installed")
    if c.phase is Phase.IN_SYNC:
        return Decision(Action.NONE, "release in sync")
    if c.phase is Phase.DRIFTED:
        if correct_drift:
            return Decision(Action.CORRECT_DRIFT, "live objects drifted: correctDrift")
        return Decision(Action.NONE, "live objects drifted: reported (correctDrift off)")
    if c.phase in (Phase.OUT_OF_SYNC, Phase.FAILED):
        return Decision(Action.UPGRADE, f"release is {c.phase}")
    # pending-* or uninstalling
    if c.stale:
        return Decision(Action.RECOVER, f"release stuck in {c.phase}")
    return _wait(c, now, f"release is {c.phase}")
