"""The one shape of a failure helmops reports to users: a message and whether waiting can help.

Every room raises its own subclass (``SourceError``, ``ValuesError``, ``DesiredError``, ``PollError``,
``ClusterUnreachable``, ``KubeconfigRefused``) so callers can catch exactly what they handle, while the
controller treats them alike: ``message`` is the text shown as-is in a HelmApp condition, an Event or the
CLI (it names what failed and never carries a credential, Secret content or a server's response body), and
``retryable`` says whether the very same request can succeed later without anybody changing anything.
"""

from __future__ import annotations

__all__ = ["HelmopsError"]


class HelmopsError(Exception):
    """A user-facing failure: ``message`` (safe to show), ``retryable`` (a subclass sets the default)."""

    #: whether waiting (a backoff retry) can help; an instance may say otherwise than its class.
    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        #: the safe-to-show text (also ``str(exc)``).
        self.message = message
        if retryable is not None:
            self.retryable = retryable

    def __str__(self) -> str:
        return self.message
