"""HelmApp → the desired release on the local cluster (chart, values, helm options, fingerprint).

The API, chart-source and values packages are used through the small Protocols below, so this module and
its tests do not depend on their internals; ``deps.py`` wires the real implementations in.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from helmops.api.objects import HelmApp
from helmops.api.options import BundleDeploymentOptions
from helmops.errors import HelmopsError
from helmops.helm.driver import ReleaseSpec
from helmops.reconcile.fingerprint import fingerprint
from helmops.reconcile.release import FINGERPRINT_LABEL, MANAGED_LABEL, OWNER_LABEL, owner_value

DEFAULT_MAX_HISTORY = 2  # Fleet's agent default when maxHistory is 0
#: the operator's default cap on ``helm.timeoutSeconds`` (``--max-timeout``); 0 = no cap.
DEFAULT_MAX_TIMEOUT_SECONDS = 600


def clamp_timeout(seconds: int, cap: int) -> int:
    """``timeoutSeconds`` as helm gets it: at most ``cap`` (0 = no cap). A helm call holds a helm slot for up
    to this long, so the operator bounds it; 0 (helm's own 5m default) is left alone."""
    seconds = max(0, seconds)
    return min(seconds, cap) if cap > 0 else seconds


def clamp_notice(requested: int, cap: int) -> str | None:
    """The message saying a HelmApp's timeout was clamped, or None when it was not."""
    if cap <= 0 or requested <= cap:
        return None
    return (
        f"helm.timeoutSeconds {requested} exceeds the controller's maximum of {cap}s (--max-timeout); "
        f"helm runs with --timeout {cap}s"
    )


class DesiredError(HelmopsError):
    """The desired state cannot be computed (spec, chart or values); ``.retryable`` for transient causes."""


@dataclass(frozen=True)
class FetchedChart:
    name: str
    version: str
    digest: str
    path: Path


class ChartFetcher(Protocol):
    async def fetch(self, helmapp: HelmApp) -> FetchedChart:
        """Resolve and download ``spec.helm`` (repo, chart, version; helmSecretName auth)."""
        ...


@dataclass(frozen=True)
class Values:
    values: dict[str, Any] = field(repr=False)
    digest: str
    #: Secret-derived leaf strings, masked wherever helm might echo them.
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def __iter__(self) -> Iterator[Any]:
        """Unpacks as ``values, digest`` (the shape ``render`` had before redaction was added)."""
        return iter((self.values, self.digest))


class ValuesRenderer(Protocol):
    async def render_values(self, helmapp: HelmApp, release_namespace: str) -> Values:
        """The values for the local cluster. Raises DesiredError."""
        ...


@dataclass(frozen=True)
class Checked:
    """A HelmApp as read at the edge: the typed object (None when its spec does not parse) and why it is
    not accepted (empty: accepted)."""

    app: HelmApp | None
    problems: list[str]


class SpecChecker(Protocol):
    def check(self, helmapp: Mapping[str, Any]) -> Checked:
        """Limits, the model and semantic validation of a HelmApp as read (the one parse of the reconcile
        path)."""
        ...


@dataclass(frozen=True)
class Desired:
    release: ReleaseSpec
    fingerprint: str
    chart: FetchedChart
    values_digest: str
    #: the spec's ``timeoutSeconds`` when the operator's cap lowered it (None: used as given).
    timeout_clamped_from: int | None = None


def helm_options(spec: BundleDeploymentOptions) -> dict[str, Any]:
    """The options that shape the release (all in the fingerprint, as in Fleet's deployment ID; the keys
    are the manifest's, so fingerprints stay as they were)."""
    helm = spec.helm
    return {
        "atomic": bool(helm.atomic),
        "force": bool(helm.force),
        "takeOwnership": bool(helm.take_ownership),
        "timeoutSeconds": max(0, helm.timeout_seconds or 0),
        "waitForJobs": bool(helm.wait_for_jobs),
        "maxHistory": (helm.max_history or 0) or DEFAULT_MAX_HISTORY,
        "skipSchemaValidation": bool(helm.skip_schema_validation),
        "disableDNS": bool(helm.disable_dns),
        "serviceAccount": spec.service_account or "",
        "forceSyncGeneration": spec.force_sync_generation or 0,
    }


def build_release(
    helmapp: HelmApp,
    *,
    release_name: str,
    release_namespace: str,
    chart: FetchedChart,
    values: Values | Mapping[str, Any],
    values_digest: str | None = None,
    max_timeout: int = 0,
) -> Desired:
    """The desired release. ``values`` is a :class:`Values`, or a plain map with its ``values_digest``.

    ``max_timeout`` caps ``timeoutSeconds``; the fingerprint keeps the spec's value, so changing the cap does
    not redeploy every release."""
    if not isinstance(values, Values):
        if values_digest is None:
            raise TypeError("values_digest is required with plain values")
        values = Values(dict(values), values_digest)
    opts = helm_options(helmapp.spec)
    tenant = helmapp.metadata.namespace
    fp = fingerprint(chart.digest, values.digest, {**opts, "release": f"{release_namespace}/{release_name}"})
    release = ReleaseSpec(
        name=release_name,
        namespace=release_namespace,
        chart_path=chart.path,
        chart_version=chart.version,
        values=dict(values.values),
        labels={
            FINGERPRINT_LABEL: fp,
            MANAGED_LABEL: "helmops",
            OWNER_LABEL: owner_value(tenant, helmapp.metadata.name),
        },
        atomic=opts["atomic"],
        force=opts["force"],
        take_ownership=opts["takeOwnership"],
        timeout_seconds=clamp_timeout(opts["timeoutSeconds"], max_timeout),
        wait_for_jobs=opts["waitForJobs"],
        history_max=opts["maxHistory"],
        skip_schema_validation=opts["skipSchemaValidation"],
        create_namespace=True,
        enable_dns=not opts["disableDNS"],
        service_account=opts["serviceAccount"] or None,
        # The ServiceAccount is looked up next to the HelmApp, never in the (user-chosen) release namespace:
        # a HelmApp's author can only borrow identities of their own namespace.
        service_account_namespace=tenant,
        description=f"helmops: chart {chart.name} {chart.version} ({chart.digest[:19]})",
        redact=values.secrets,
        tenant=tenant,
    )
    clamped = opts["timeoutSeconds"] if release.timeout_seconds != opts["timeoutSeconds"] else None
    return Desired(
        release=release, fingerprint=fp, chart=chart, values_digest=values.digest, timeout_clamped_from=clamped
    )
