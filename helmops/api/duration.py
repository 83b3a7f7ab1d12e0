"""Go duration strings (``time.ParseDuration`` syntax), as Kubernetes and Fleet write them."""

from __future__ import annotations

import re
from decimal import Decimal

_NS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # greek small letter mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_MAX_NS = 2**63 - 1
_COMPONENT = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)([^0-9.]+)")
_MAX_POLLING_NS = 2562047 * _NS_PER_UNIT["h"]


def parse_duration_ns(text: str) -> int:
    """Nanoseconds in a Go duration such as ``1h30m``, ``-1.5s`` or ``300ms``.

    Follows Go's rules: an optional sign, then one or more number+unit pairs (units ns, us, µs, ms,
    s, m, h; no days), or the bare ``0``. The result must fit Go's int64 nanoseconds. Fractions
    below a nanosecond are dropped per component, as Go does. Raises ValueError otherwise.
    """
    if not isinstance(text, str):
        raise ValueError(f"duration must be a string, not {type(text).__name__}")
    rest = text
    negative = False
    if rest[:1] in ("-", "+"):
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise ValueError(f"invalid duration {text!r}")
    total = 0
    position = 0
    while position < len(rest):
        match = _COMPONENT.match(rest, position)
        if match is None:
            raise ValueError(f"invalid duration {text!r}")
        number, unit = match.groups()
        if unit not in _NS_PER_UNIT:
            raise ValueError(f"unknown unit {unit!r} in duration {text!r} (use ns, us, ms, s, m or h)")
        total += int(Decimal(number) * _NS_PER_UNIT[unit])
        if total > _MAX_NS + (1 if negative else 0):
            raise ValueError(f"invalid duration {text!r}: out of range")
        position = match.end()
    return -total if negative else total


def parse_duration(text: str) -> float:
    """Seconds in a Go duration string (see :func:`parse_duration_ns`); ValueError if invalid."""
    return parse_duration_ns(text) / 1_000_000_000


def is_polling_interval(text: str) -> bool:
    """Whether ``text`` is an acceptable ``spec.pollingInterval``.

    The same rule as the CRD's CEL validation: ``'0'``, or an unsigned Go duration of at most
    2562047h.
    """
    if text == "0":
        return True
    if not text or text[0] in "+-" or len(text) > 32:
        return False
    try:
        return parse_duration_ns(text) <= _MAX_POLLING_NS
    except ValueError:
        return False
