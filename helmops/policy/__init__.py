"""Operator policy for HelmApps: Fleet's GitRepoRestriction objects and the controller's own options.

``restrictions`` is pure (evaluate a HelmApp against the restrictions of its namespace); ``source`` lists the
restriction objects from the API server, cheaply and tolerating their CRD being absent.
"""

from helmops.policy.restrictions import (
    Policy,
    PolicyResult,
    Violation,
    aggregate,
    evaluate,
    source_urls,
)

__all__ = ["Policy", "PolicyResult", "Violation", "aggregate", "evaluate", "source_urls"]
