"""Helm's version constraint language, evaluated with python-semver.

Helm resolves ``--version`` with Masterminds semver v3.  python-semver has versions and ordering but no
ranges, so this module supplies the range language and keeps Helm's choices:

* an exact string match among the candidates wins before any constraint logic;
* otherwise the highest candidate that satisfies the constraint is picked;
* an empty constraint means ``*``: the highest *stable* version;
* a prerelease candidate is only eligible for an AND group when every term of that group names a
  prerelease itself (``>=1.0.0-0 <2`` therefore never picks ``1.5.0-rc.1``);
* chart-repository index versions are read leniently (``v1.2``, ``2``), OCI tags strictly, after turning
  the ``_`` that registries force on us back into ``+``.

The answers were checked against ``helm search repo --version`` (see the unit table test).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from semver import Version

from .errors import ConstraintError

__all__ = [
    "Constraint",
    "ConstraintError",
    "decode_tag",
    "encode_tag",
    "is_exact",
    "nearest",
    "parse_constraint",
    "parse_version",
    "resolve",
]

_WILDCARDS = frozenset({"x", "X", "*"})

# One term: an optional operator, optional blanks, then a possibly partial, possibly wildcarded version.
_TERM_RE = re.compile(
    r"""
    (?P<op>=>|=<|!=|>=|<=|~>|=|<|>|~|\^)?
    \s*
    v?(?P<major>[0-9]+|[xX*])
    (?:\.(?P<minor>[0-9]+|[xX*]))?
    (?:\.(?P<patch>[0-9]+|[xX*]))?
    (?:-(?P<pre>[0-9A-Za-z.-]+))?
    (?:\+(?P<build>[0-9A-Za-z.-]+))?
    """,
    re.VERBOSE,
)
_SEPARATOR_RE = re.compile(r"[\s,]+")
# "A - B" (blanks required around the dash, as in Helm) is sugar for ">=A <=B".
_HYPHEN_RE = re.compile(r"(?P<lo>[^\s,]+)\s+-\s+(?P<hi>[^\s,]+)")
_OP_ALIASES = {"=>": ">=", "=<": "<=", "~>": "~", "": "="}


def encode_tag(version: str) -> str:
    """OCI tags cannot hold ``+``; Helm pushes ``1.0.0+build`` as tag ``1.0.0_build``."""
    return version.replace("+", "_")


def decode_tag(tag: str) -> str:
    return tag.replace("_", "+")


def parse_version(text: str, *, strict: bool = False) -> Version | None:
    """Read a candidate version the way Helm does, or ``None`` if Helm would skip it.

    ``strict`` is for OCI tags (no ``v``, all three parts); otherwise index versions such as ``v2.2`` are
    accepted, with missing parts read as zero.
    """
    if strict:
        try:
            return Version.parse(decode_tag(text))
        except ValueError:
            return None
    body = text[1:] if text[:1] == "v" else text
    try:
        return Version.parse(body, optional_minor_and_patch=True)
    except ValueError:
        return None


def is_exact(version_text: str) -> bool:
    """A strict semver (a leading ``v`` allowed) pins one version; anything else is a constraint.

    Polling only applies to constraints, as in Fleet.
    """
    body = version_text[1:] if version_text.startswith("v") else version_text
    return bool(body) and Version.is_valid(body)


@dataclass(frozen=True)
class _Term:
    op: str  # one of = != > >= < <= ~ ^
    base: Version  # the version with wildcard/missing parts set to zero
    wild: int | None  # index (0 major, 1 minor, 2 patch) of the first wildcard or missing part
    has_pre: bool

    def allows(self, v: Version) -> bool:
        # The prerelease gate: a term that names no prerelease never admits one, except an exact "!=".
        if v.prerelease and not self.has_pre and not (self.op == "!=" and self.wild is None):
            return False
        return _CHECKS[self.op](self, v)


def _same_prefix(v: Version, base: Version, wild: int | None) -> bool:
    """Equal up to the first wildcard: ``1.x`` compares majors, ``1.2.x`` majors and minors."""
    if wild == 0:
        return True
    if wild == 1:
        return v.major == base.major
    return (v.major, v.minor) == (base.major, base.minor)


def _eq(t: _Term, v: Version) -> bool:
    if t.wild is None:
        return v.compare(t.base) == 0
    return v.compare(t.base) >= 0 and _same_prefix(v, t.base, t.wild)


def _ne(t: _Term, v: Version) -> bool:
    if t.wild is None or t.wild == 0:  # helm: "!=*" only excludes 0.0.0
        return v.compare(t.base) != 0
    return not _same_prefix(v, t.base, t.wild)


def _tilde(t: _Term, v: Version) -> bool:
    if v.compare(t.base) < 0:
        return False
    if t.wild is None and (t.base.major, t.base.minor, t.base.patch) == (0, 0, 0):
        return True  # ~0.0.0 is ">=0.0.0" in Masterminds
    # ~1.2.3 and ~1.2 keep the minor; ~1 keeps the major.
    return _same_prefix(v, t.base, 2 if t.wild is None else t.wild)


def _caret(t: _Term, v: Version) -> bool:
    # A wildcard major ("^*") reads as plain 0.0.0 here, which helm answers with exactly 0.0.0.
    if v.compare(t.base) < 0:
        return False
    b = t.base
    if b.major > 0 or t.wild == 1:
        return v.major == b.major
    if b.minor > 0 or t.wild == 2:
        return v.major == 0 and v.minor == b.minor
    return (v.major, v.minor, v.patch) == (0, 0, b.patch)


def _upper_exclusive(t: _Term) -> Version:
    """For a wildcarded bound: ``1.x`` ends before 2.0.0, ``1.2.x`` before 1.3.0."""
    return t.base.bump_major() if t.wild == 1 else t.base.bump_minor()


def _gt(t: _Term, v: Version) -> bool:
    if t.wild is None or t.wild == 0:  # helm: ">*" is ">0.0.0"
        return v.compare(t.base) > 0
    return v.compare(_upper_exclusive(t)) >= 0


def _ge(t: _Term, v: Version) -> bool:
    return v.compare(t.base) >= 0


def _lt(t: _Term, v: Version) -> bool:
    return v.compare(t.base) < 0


def _le(t: _Term, v: Version) -> bool:
    if t.wild == 0:  # helm (Masterminds) quirk: "<=*" admits 0.0.x only
        return (v.major, v.minor) == (0, 0)
    if t.wild is None:
        return v.compare(t.base) <= 0
    return v.compare(_upper_exclusive(t)) < 0


_CHECKS = {"=": _eq, "!=": _ne, "~": _tilde, "^": _caret, ">": _gt, ">=": _ge, "<": _lt, "<=": _le}


@dataclass(frozen=True)
class Constraint:
    """A parsed constraint: OR of AND groups of terms."""

    text: str
    groups: tuple[tuple[_Term, ...], ...]

    def matches(self, version: str | Version, *, strict: bool = False) -> bool:
        v = parse_version(version, strict=strict) if isinstance(version, str) else version
        if v is None:
            return False
        return any(all(term.allows(v) for term in group) for group in self.groups)

    def anchor(self) -> Version:
        """The first version the constraint names; used to rank "nearest" versions for messages."""
        return self.groups[0][0].base

    def __str__(self) -> str:
        return self.text


def _parse_term(m: re.Match[str]) -> _Term:
    parts = [m["major"], m["minor"], m["patch"]]
    wild = next((i for i, p in enumerate(parts) if p is None or p in _WILDCARDS), None)
    numbers = [int(p) if (wild is None or i < wild) and p is not None else 0 for i, p in enumerate(parts)]
    base = Version(numbers[0], numbers[1], numbers[2], prerelease=m["pre"], build=m["build"])
    op = _OP_ALIASES.get(m["op"] or "", m["op"] or "=")
    return _Term(op=op, base=base, wild=wild, has_pre=m["pre"] is not None)


def _parse_group(text: str, original: str) -> tuple[_Term, ...]:
    text = _HYPHEN_RE.sub(r">=\g<lo> <=\g<hi>", text)
    terms: list[_Term] = []
    pos, end = 0, len(text)
    while pos < end:
        sep = _SEPARATOR_RE.match(text, pos)
        if sep:
            pos = sep.end()
            continue
        m = _TERM_RE.match(text, pos)
        if m is None or (m.end() < end and not _SEPARATOR_RE.match(text, m.end())):
            raise ConstraintError(original)
        terms.append(_parse_term(m))
        pos = m.end()
    if not terms:
        raise ConstraintError(original)
    return tuple(terms)


def parse_constraint(text: str) -> Constraint:
    """Parse Helm constraint syntax; raises :class:`ConstraintError` (``improper constraint: "<c>"``)."""
    stripped = text.strip()
    if not stripped:
        return Constraint(text=text, groups=(_parse_group("*", text),))
    groups = tuple(_parse_group(g, text) for g in stripped.split("||"))
    return Constraint(text=text, groups=groups)


def _pick_exact(candidates: list[str], text: str, oci_tags: bool) -> str | None:
    for c in candidates:
        if c == text:
            return c
    if oci_tags:
        for c in candidates:
            if decode_tag(c) == text:
                return c
    return None


def resolve(candidates: Iterable[str], constraint: str, *, oci_tags: bool = False) -> str | None:
    """Pick the candidate Helm would pick, or ``None``.

    ``oci_tags`` switches to registry tags: strict parsing after ``_`` -> ``+``.  The returned string is the
    candidate as given (the tag, still with ``_``).  Raises :class:`ConstraintError` for bad syntax.
    """
    pool = list(candidates)
    text = constraint.strip()
    if text:
        exact = _pick_exact(pool, text, oci_tags)
        if exact is not None:
            return exact
    con = parse_constraint(text)
    best: tuple[Version, str] | None = None
    for cand in pool:
        v = parse_version(cand, strict=oci_tags)
        if v is None or not con.matches(v):
            continue
        if best is None or v.compare(best[0]) > 0 or (v.compare(best[0]) == 0 and cand > best[1]):
            best = (v, cand)
    return best[1] if best else None


def nearest(
    candidates: Iterable[str], constraint: str, n: int = 3, *, oci_tags: bool = False
) -> list[str]:
    """Up to ``n`` candidates closest to what the constraint asks for, highest first (for error messages)."""
    parsed = [(v, c) for c in candidates if (v := parse_version(c, strict=oci_tags)) is not None]
    if not parsed or n <= 0:
        return []
    try:
        anchor: Version | None = parse_constraint(constraint).anchor() if constraint.strip() else None
    except ConstraintError:
        anchor = None
    if anchor is None:
        chosen = sorted(parsed, key=lambda p: (p[0], p[1]), reverse=True)[:n]
    else:
        a = anchor

        def distance(p: tuple[Version, str]) -> tuple[bool, int, int, int]:
            v = p[0]  # stable versions are the more useful suggestion
            gap = (abs(v.major - a.major), abs(v.minor - a.minor), abs(v.patch - a.patch))
            return (bool(v.prerelease), *gap)

        chosen = sorted(parsed, key=distance)[:n]
    chosen.sort(key=lambda p: (p[0], p[1]), reverse=True)
    return [c for _, c in chosen]
