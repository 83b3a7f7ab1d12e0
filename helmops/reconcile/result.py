"""What one action did, in terms the status and Events need."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ActionResult:
    ok: bool
    #: Event reason (Installed, UpgradeFailed, ...); empty for no Event.
    reason: str
    message: str
    revision: int | None = None
    #: the helm error text (already redacted), for status.
    error: str | None = None
    #: extra Events (reason, message), e.g. RolledBack after an atomic upgrade failed.
    extra_events: tuple[tuple[str, str], ...] = ()
    #: not run: a gate of the executor holds it (awaiting approval, outside a maintenance window).
    held: bool = False
    #: the manifest of the revision installed or upgraded to (helmops.helm.driver.ReleaseOutcome.manifest).
    manifest: str | None = field(default=None, repr=False)


def helm_error_text(exc: BaseException) -> str:
    """helm's stderr as a one-paragraph message (pyhelm3 errors stringify to stderr)."""
    text = str(exc).strip() or type(exc).__name__
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return "; ".join(lines)[:2000]
