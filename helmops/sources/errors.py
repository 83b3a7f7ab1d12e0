"""Typed, user-worded errors for chart sources.

Every message is meant to be shown to a user in a HelmApp condition as-is, so it names the chart, the
repository and the constraint, and never carries a credential or the body of an authentication failure.

``retryable`` answers one question for the controller: can the very same request succeed later without
anybody changing the HelmApp, its Secret or the repository's content?  Network trouble, timeouts, 429 and
5xx answers do; a missing version, a bad constraint, wrong credentials or an untrusted certificate do not
(those are re-tried when the spec or Secret changes, or by polling, not by a tight backoff loop).
"""

from __future__ import annotations

from collections.abc import Sequence

from helmops.errors import HelmopsError


class SourceError(HelmopsError):
    """Base class: something kept us from resolving or downloading a chart (not retryable by default)."""


class InvalidReference(SourceError):
    """The repo/chart/version combination cannot name a chart (e.g. a tarball URL with a repo)."""


class ConstraintError(SourceError):
    """The version text is neither a version nor a constraint Helm would accept."""

    def __init__(self, constraint: str) -> None:
        super().__init__(f'improper constraint: "{constraint}"')
        self.constraint = constraint


class ChartNotFound(SourceError):
    """The repository, registry repository or chart does not exist (or answered 404)."""


class VersionNotFound(SourceError):
    """The chart exists but no version satisfies the constraint."""

    def __init__(self, chart: str, constraint: str, where: str, nearest: Sequence[str] = ()) -> None:
        msg = f'no chart version found for {chart} matching "{constraint}" in {where}'
        if nearest:
            msg += f" (nearest versions: {', '.join(nearest)})"
        super().__init__(msg)
        self.chart = chart
        self.constraint = constraint
        self.nearest = tuple(nearest)


class AuthError(SourceError):
    """Credentials are missing, wrong or malformed (the Secret needs fixing)."""


class TLSError(SourceError):
    """The server's certificate is not trusted, or the configured CA bundle is unusable."""


class SourceUnavailable(SourceError):
    """Transient trouble reaching the source: connection, DNS, timeout, 429/5xx."""

    retryable = True


class IntegrityError(SourceError):
    """Downloaded bytes do not match the digest the index or registry promised."""

    retryable = True


class InvalidChart(SourceError):
    """The downloaded file is not a usable chart archive (no Chart.yaml, too large, not gzip)."""


class LimitExceeded(InvalidChart):
    """The source sent more than a configured limit allows (size, count, nesting, expansion ratio).

    Not retryable: the same URL will send the same thing; polling or a spec change tries again.
    """
