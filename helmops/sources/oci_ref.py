"""OCI chart references: ``oci://host[:port]/path/chart[:tag][@sha256:…]`` parsed into an :class:`OciRef`.

Pure syntax, shared by the classifier of chart requests (:mod:`helmops.sources`), the registry clients
(:mod:`helmops.sources.oci_client`) and chart resolution (:mod:`helmops.sources.oci`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import InvalidReference

__all__ = ["OciRef", "parse_oci_ref", "valid_digest"]


@dataclass(frozen=True)
class OciRef:
    host: str
    repository: str  # path inside the registry, e.g. "charts/hello"
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return self.repository.rsplit("/", 1)[-1]

    @property
    def display(self) -> str:
        return f"oci://{self.host}/{self.repository}"


def valid_digest(text: str) -> bool:
    algo, _, hexpart = text.partition(":")
    return algo == "sha256" and len(hexpart) == 64 and all(c in "0123456789abcdef" for c in hexpart)


def parse_oci_ref(text: str) -> OciRef:
    """``oci://host[:port]/path/chart[:tag][@sha256:…]``; the host is always the first component."""
    if not text.startswith("oci://"):
        raise InvalidReference(f'"{text}" is not an oci:// reference')
    rest = text[len("oci://") :].rstrip("/")
    digest = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not valid_digest(digest):
            raise InvalidReference(f'"{text}": the digest must be sha256:<64 hex digits>')
    host, _, path = rest.partition("/")
    if not host or not path or "@" in host:
        raise InvalidReference(f'"{text}" must name a registry host and a repository path')
    tag = None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        path, tag = path.rsplit(":", 1)
        if not tag:
            raise InvalidReference(f'"{text}" has an empty tag')
    if any(not part for part in path.split("/")) or path != path.lower():
        raise InvalidReference(f'"{text}": repository paths are lowercase and have no empty segments')
    return OciRef(host=host, repository=path, tag=tag, digest=digest)
