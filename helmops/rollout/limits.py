"""Fleet v0.12's rollout numbers (fleet-rollout.md §1.1-1.2, ``target/status.go``): ``limit(count, values…)``.

* the first value that is set wins, else ``100%``; a count of 0 counts as 1;
* an integer is used as is, unclamped (15 of 10 is 15, -1 is -1, 0 is 0);
* an integer-like string ("5") is that integer; "0", "-5" and "abc" are errors;
* a percentage is ``floor(floor(count * p) / 100)``, and 1 when that is ≤ 0 or p ≤ 0 (so ``"0%"`` is 1).
"""

from __future__ import annotations

import math

__all__ = [
    "AUTO_PARTITION_THRESHOLD",
    "DEFAULT_AUTO_PARTITION_SIZE",
    "DEFAULT_MAX_UNAVAILABLE",
    "DEFAULT_MAX_UNAVAILABLE_PARTITIONS",
    "MAX_NEW",
    "LimitError",
    "limit",
]

DEFAULT_MAX_UNAVAILABLE = "100%"
DEFAULT_MAX_UNAVAILABLE_PARTITIONS = 0
DEFAULT_AUTO_PARTITION_SIZE = "25%"
#: Fleet v0.12 partitions automatically only from this many targets on.
AUTO_PARTITION_THRESHOLD = 200
#: Fleet creates at most this many BundleDeployments per pass (helmops: installs per reconcile).
MAX_NEW = 50


class LimitError(ValueError):
    """A rollout number Fleet cannot use (Fleet then fails the whole Bundle reconcile)."""


def limit(count: int, *values: int | str | None) -> int:
    """Fleet's ``limit``: the first set value scaled against ``count`` (see the module docstring)."""
    if count == 0:
        count = 1
    value: int | str = next((v for v in values if v is not None), DEFAULT_MAX_UNAVAILABLE)
    if isinstance(value, bool):
        raise LimitError(f"invalid value {value!r}")
    if isinstance(value, int):
        return value
    text = value.strip()
    if text.endswith("%"):
        try:
            percent = float(text[:-1])
        except ValueError:
            raise LimitError(f"invalid value {value!r}: not a percentage") from None
        if not math.isfinite(percent):
            raise LimitError(f"invalid value {value!r}: not a percentage")
        result = math.floor(math.floor(count * percent) / 100)
        return 1 if result <= 0 or percent <= 0 else result
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise LimitError(f"invalid value {value!r}: must be a positive integer or a percentage such as 25%")
