"""The one exception type of the values pipeline.

Every failure a user can cause (a bad template, YAML that does not parse, a missing ConfigMap key) surfaces
as a `ValuesError` whose message is already worded for a HelmApp status condition: it names the cluster the
way Fleet does and never carries Secret content. `retryable` tells the controller whether waiting can help:
a template error only goes away when someone edits the HelmApp or the Cluster (both of which trigger a
reconcile anyway), while a missing ConfigMap may simply not have been created yet.
"""

from __future__ import annotations

from helmops.errors import HelmopsError


class ValuesError(HelmopsError):
    """A user-facing failure to produce values for one cluster (not retryable unless said so)."""


class TemplateError(ValuesError):
    """A `${ }` template failed to parse, was not allowed, or failed to execute.

    The message carries `template: <name>:<line>:<col>: ...` like Go's `text/template` errors.
    """

    def __init__(self, message: str, *, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message, retryable=False)
        self.line = line
        self.column = column
