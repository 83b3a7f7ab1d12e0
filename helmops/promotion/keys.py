"""The safe-promotion annotation names (no imports: the API package lists them among the known annotations)."""

from __future__ import annotations

PREFIX = "helmops.cattle.io/"
REQUIRE_APPROVAL = PREFIX + "require-approval"
#: a label selector (JSON or YAML) of the clusters that need approval; absent = every cluster.
APPROVAL_SELECTOR = PREFIX + "approval-cluster-selector"
#: written by ``helmops approve``: the plan hash that may run.
APPROVED_PLAN = PREFIX + "approved-plan"
#: written by the controller: the plan awaiting approval (JSON; see helmops.promotion.plan).
PLAN = PREFIX + "plan"
#: maintenance windows (JSON or YAML list; see helmops.promotion.windows).
WINDOWS = PREFIX + "windows"
#: written by ``helmops approve --override`` (or by hand): run this plan hash now, whatever the windows say.
OVERRIDE = PREFIX + "window-override"
#: automatic promotion: the source HelmApp (NAME or NS/NAME) and how long it must have run Ready.
PROMOTE_FROM = PREFIX + "promote-from"
SOAK = PREFIX + "soak"
#: written by the controller on a source HelmApp: {"version": V, "since": RFC 3339} of its Ready run.
READY_SINCE = PREFIX + "ready-since"
#: written by the controller on a promoted HelmApp: who promoted which version, when and why.
PROMOTED = PREFIX + "promoted"

#: every annotation of this module, with what it does (merged into helmops.api.annotations.KNOWN_ANNOTATIONS).
ANNOTATIONS: dict[str, str] = {
    REQUIRE_APPROVAL: '"true": mutating helm actions wait for `helmops approve` of their plan',
    APPROVAL_SELECTOR: "label selector (JSON/YAML) of the clusters that need approval (default: all)",
    APPROVED_PLAN: "set by `helmops approve`: the approved plan hash",
    PLAN: "set by helmops: the plan awaiting approval (JSON)",
    WINDOWS: "maintenance windows: JSON/YAML list of {kind, schedule, duration, timeZone, clusterSelector}",
    OVERRIDE: "a plan hash that runs now, outside the maintenance windows (set by `helmops approve --override`)",
    PROMOTE_FROM: "promote automatically from this HelmApp (NAME or NAMESPACE/NAME)",
    SOAK: "with promote-from: how long the source must have run a version Ready everywhere (Go duration)",
    READY_SINCE: "set by helmops: since when this HelmApp has run its version Ready everywhere",
    PROMOTED: "set by helmops: the last automatic promotion (version, source, time)",
}
