"""Names Fleet derives from a HelmApp: the Helm release name and namespace, and target names.

They follow Fleet's rules exactly (same hash, same cut), so a HelmApp gets the release names it gets
under Fleet; the validation rules (:mod:`helmops.api.validate`) reuse the same patterns.
"""

from __future__ import annotations

import hashlib
import re

from helmops.api.options import RELEASE_NAME_MAX_LENGTH, RELEASE_NAME_PATTERN, BundleDeploymentOptions, BundleTarget
from helmops.api.spec import HelmAppSpec

__all__ = ["DNS_LABEL_RE", "derive_release_name", "release_name", "release_namespace", "target_name"]

_RELEASE_NAME_RE = re.compile(RELEASE_NAME_PATTERN)
#: A DNS-1123 label: what the API server takes as a namespace name.
DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_NOT_NAME_CHARS_RE = re.compile(r"[^a-zA-Z0-9-]+")
_DASHES_RE = re.compile(r"-+")


def _short_hash(text: str, length: int) -> str:
    # md5 only as a stable, short fingerprint; it is what Fleet uses, so names come out the same.
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()[:length]


def _limit(text: str, count: int) -> str:
    """Cut ``text`` to ``count`` characters, ending in ``-`` + 5 hex digits of its hash when cut."""
    if len(text) <= count:
        return text
    if count <= 6:
        return text[:count]
    keep = count - 6
    separator = "" if text[keep - 1] == "-" else "-"
    return f"{text[:keep]}{separator}{_short_hash(text, 5)}"


def derive_release_name(name: str) -> str:
    """A valid Helm release name (≤ 53 chars) derived from ``name`` the way Fleet derives it.

    A name that is already lower-case and made of ``[a-z0-9-]`` keeps its characters; otherwise 8
    hex digits of a hash of the original are appended before it is lower-cased and every run of
    other characters becomes one ``-``. A result longer than 53 characters is cut and suffixed with
    ``-`` + 5 hex digits of its hash. Names that cannot be cleaned up become a 24-digit hash.
    """
    original = name
    text = name.replace("/", "-")
    if text != text.lower() or _NOT_NAME_CHARS_RE.search(text):
        text = f"{text}-{_short_hash(text, 8)}"
    text = _NOT_NAME_CHARS_RE.sub("-", text.lower())
    text = _DASHES_RE.sub("-", text).strip("-")
    if _RELEASE_NAME_RE.match(text) and DNS_LABEL_RE.match(text):
        return _limit(text, RELEASE_NAME_MAX_LENGTH)
    return _short_hash(original, 24)


def release_name(helmapp_name: str, spec: HelmAppSpec, target: BundleTarget | None = None) -> str:
    """The Helm release name: ``helm.releaseName`` (a target's overrides the spec's), else derived
    from the HelmApp name (see :func:`derive_release_name`)."""
    for options in (target, spec):
        if options is not None and options.helm.release_name:
            return options.helm.release_name
    return derive_release_name(helmapp_name)


def release_namespace(spec: BundleDeploymentOptions, target: BundleTarget | None = None) -> str:
    """Namespace of the Helm release: ``namespace``, else ``defaultNamespace``, else ``default``.

    With a target, its non-empty ``namespace``/``defaultNamespace`` override the spec's first.
    """
    namespace = (target.namespace if target else None) or spec.namespace
    default_namespace = (target.default_namespace if target else None) or spec.default_namespace
    return namespace or default_namespace or "default"


def target_name(target: BundleTarget, index: int) -> str:
    """The target's name, or Fleet's positional default ``target000``, ``target001``, ..."""
    return target.name or f"target{index:03d}"
