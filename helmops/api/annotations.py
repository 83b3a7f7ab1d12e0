"""helmops-only options carried as ``helmops.cattle.io/...`` annotations on a HelmApp.

When Fleet v0.12's CRD is the one installed, fields beyond its schema are rejected by kubectl's strict
field validation or pruned by the API server, so options Fleet v0.12 lacks must also be expressible
where every schema keeps them: metadata annotations.
"""

from __future__ import annotations

from collections.abc import Mapping

from helmops.api.duration import is_polling_interval, parse_duration
from helmops.api.objects import HelmApp
from helmops.api.problems import Problem
from helmops.api.validate import validate
from helmops.promotion.keys import ANNOTATIONS as PROMOTION_ANNOTATIONS

__all__ = [
    "KNOWN_ANNOTATIONS",
    "POLLING_INTERVAL",
    "PREFIX",
    "annotation_problems",
    "polling_interval",
    "polling_interval_seconds",
    "validate_app",
]

PREFIX = "helmops.cattle.io/"
#: Same meaning and syntax as ``spec.pollingInterval``, which wins when both are set.
POLLING_INTERVAL = PREFIX + "polling-interval"
#: Every annotation helmops reads, with what it does.
KNOWN_ANNOTATIONS: dict[str, str] = {
    POLLING_INTERVAL: "poll the chart source for new versions this often (Go duration; '0' = off)",
    # written by the controller, not by users: status.lastPollingTriggered where the CRD prunes it
    PREFIX + "last-polling-triggered": "set by helmops: when the chart source was last polled (RFC 3339)",
    # written by the controller: which clusters hold a release of this HelmApp (see helmops.clusters.resolve)
    PREFIX + "deployed-clusters": "set by helmops: JSON list of the clusters this HelmApp deployed to",
    **PROMOTION_ANNOTATIONS,  # safe promotion: approval, windows, soak (helmops.promotion.settings)
}


def _path(key: str) -> str:
    return f"metadata.annotations[{key}]"


def polling_interval(app: HelmApp) -> str | None:
    """The polling interval text: ``spec.pollingInterval``, else the annotation, else None."""
    if app.spec.polling_interval:
        return app.spec.polling_interval
    return app.metadata.annotations.get(POLLING_INTERVAL) or None


def polling_interval_seconds(app: HelmApp) -> float:
    """Seconds between polls of the chart source; 0 when polling is off or the value is invalid."""
    text = polling_interval(app)
    if not text or not is_polling_interval(text):
        return 0.0
    return parse_duration(text)


def annotation_problems(annotations: Mapping[str, str]) -> list[Problem]:
    """Problems with ``helmops.cattle.io/`` annotations: invalid values (errors), unknown keys (warnings)."""
    found = []
    for key, value in sorted(annotations.items()):
        if not key.startswith(PREFIX):
            continue
        if key not in KNOWN_ANNOTATIONS:
            known = ", ".join(sorted(KNOWN_ANNOTATIONS))
            found.append(Problem(_path(key), f"unknown helmops annotation (known: {known})", "warning"))
        elif key == POLLING_INTERVAL and not is_polling_interval(value):
            found.append(Problem(_path(key), "must be '0' or a Go duration such as 30s, 5m or 1h30m, at most 2562047h"))
    # safe promotion (helmops.promotion): imported here, as that package imports this one
    from helmops.promotion.settings import problems as promotion_problems

    found += [Problem(_path(key), why) for key, why in promotion_problems(annotations)]
    return found


def validate_app(app: HelmApp) -> list[Problem]:
    """:func:`helmops.api.validate.validate` of the spec plus the annotation checks, errors first."""
    found = validate(app.spec) + annotation_problems(app.metadata.annotations)
    return [p for p in found if p.severity == "error"] + [p for p in found if p.severity == "warning"]
