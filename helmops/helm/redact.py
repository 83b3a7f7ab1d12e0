"""Keeps secrets out of logs, status, Events and exception text."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

MASK = "***"

#: flags whose following argument is secret.
SECRET_FLAGS = frozenset({"--password", "--kube-token", "--token", "--key-file-password"})

_PATTERNS = (
    re.compile(r"(?i)(authorization:\s*(?:basic|bearer)\s+)\S+"),
    re.compile(r"(?i)((?:password|passwd|token|secret)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]+"),
    re.compile(r"(?i)(https?://[^/\s:@]+:)[^@\s/]+(@)"),
)


#: a text holding none of these cannot match any of _PATTERNS (most helm arguments): the regexes are skipped
_HINTS = ("authorization", "pass", "token", "secret", "@")


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Masks the given literal secrets and anything that looks like a credential."""
    for s in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        text = text.replace(s, MASK)
    lowered = text.lower()
    if not any(h in lowered for h in _HINTS):
        return text
    for pat in _PATTERNS:
        text = pat.sub(lambda m: m.group(1) + MASK + (m.group(2) if m.lastindex and m.lastindex > 1 else ""), text)
    return text


def redact_argv(argv: Sequence[str], secrets: Iterable[str] = ()) -> list[str]:
    """argv for logging: values of secret flags masked, stdin shown as ``<stdin>``."""
    secrets = list(secrets)
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        flag, eq, _ = arg.partition("=")
        if flag in SECRET_FLAGS:
            if eq:
                out.append(f"{flag}={MASK}")
            else:
                out.append(arg)
                hide_next = True
            continue
        out.append("<stdin>" if arg == "-" else redact(arg, secrets))
    return out
