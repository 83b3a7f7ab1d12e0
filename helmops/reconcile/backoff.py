"""Exponential backoff for failed reconciles (ours: kopf's is fixed)."""

from __future__ import annotations

BASE_SECONDS = 5.0
CAP_SECONDS = 300.0


def backoff(attempt: int, *, base: float = BASE_SECONDS, cap: float = CAP_SECONDS, jitter: float = 0.0) -> float:
    """Delay before retry number ``attempt`` (1-based): base·2^(attempt-1), capped, plus up to ``jitter``
    (a fraction of the delay; pass a random number in [0, 1) times the desired spread)."""
    if attempt < 1:
        return 0.0
    delay = min(cap, base * (2.0 ** min(attempt - 1, 30)))
    return min(cap, delay * (1.0 + max(0.0, jitter)))
