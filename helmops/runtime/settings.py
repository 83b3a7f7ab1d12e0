"""Process settings: flags and environment (Fleet's names where Fleet has them)."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from helmops.runtime.leader import LeaseTimes, lease_times

FLAG_ENV = "EXPERIMENTAL_HELM_OPS"
ENABLE_HINT = (
    "helmops is disabled: HelmApps are not reconciled. Set EXPERIMENTAL_HELM_OPS=true "
    "or pass --enable-helmops to enable it."
)

log = logging.getLogger("helmops.controller")

_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})


def parse_bool(value: str | None) -> bool:
    """Go's ``strconv.ParseBool``; anything it rejects counts as false (as Fleet treats the flag)."""
    return value in _TRUE if value is not None else False


def _int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = env.get(key, "").strip()
    try:
        value = int(raw) if raw else default
    except ValueError:
        return default
    return value if value > 0 else default


def _float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key, "").strip()
    try:
        return float(raw) if raw else default
    except ValueError:
        return default


def _duration(env: Mapping[str, str], key: str) -> float | None:
    """A Go duration (``90s``, ``5m``) or plain seconds; None when unset or invalid (then a warning)."""
    raw = env.get(key, "").strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        from helmops.api.duration import parse_duration

        return parse_duration(raw)
    except ValueError:
        log.warning("ignoring %s=%r: not a Go duration or a number of seconds", key, raw)
        return None


def resync_period(env: Mapping[str, str], default: float = 600.0) -> float:
    """``HELMOPS_RESYNC_PERIOD`` (Go duration or seconds), else the deprecated ``HELMOPS_RESYNC_SECONDS``."""
    value = _duration(env, "HELMOPS_RESYNC_PERIOD")
    if value is None and env.get("HELMOPS_RESYNC_SECONDS", "").strip():
        log.warning("HELMOPS_RESYNC_SECONDS is deprecated; use HELMOPS_RESYNC_PERIOD (e.g. 10m)")
        value = _float(env, "HELMOPS_RESYNC_SECONDS", default)
    return value if value is not None and value > 0 else default


def _period(env: Mapping[str, str], key: str, default: float, *, allow_zero: bool = False) -> float:
    value = _duration(env, key)
    if value is None or value < 0 or (value == 0 and not allow_zero):
        return default
    return value


#: helm's own default --timeout; a smaller cap would not bound HelmApps that leave timeoutSeconds at 0.
MIN_MAX_TIMEOUT_SECONDS = 300


def max_timeout(env: Mapping[str, str], default: int = 600) -> int:
    """``HELMOPS_MAX_TIMEOUT`` (Go duration or seconds; 0 = no cap), raised to helm's 5m default if lower."""
    value = _duration(env, "HELMOPS_MAX_TIMEOUT")
    if value is None or value < 0:
        return default
    if value == 0:
        return 0
    seconds = int(-(-value // 1))
    if seconds < MIN_MAX_TIMEOUT_SECONDS:
        log.warning(
            "HELMOPS_MAX_TIMEOUT=%ss is below helm's default timeout; using %ss", seconds, MIN_MAX_TIMEOUT_SECONDS
        )
        return MIN_MAX_TIMEOUT_SECONDS
    return seconds


def parse_bind_address(addr: str, default_port: int) -> tuple[str, int]:
    """``:8081`` / ``0.0.0.0:8081`` / ``8081`` → (host, port)."""
    host, _, port = addr.rpartition(":") if ":" in addr else ("", "", addr)
    try:
        p = int(port)
    except ValueError:
        p = default_port
    return (host or "0.0.0.0", p)


@dataclass(frozen=True)
class Settings:
    enabled: bool = False
    kubeconfig: Path | None = None
    namespaces: Sequence[str] = ()
    log_format: str = "text"
    health_host: str = "0.0.0.0"
    health_port: int = 8080
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 8081
    workers: int = 1
    helm_concurrency: int = 4
    helm: str = "helm"
    #: extra wait before a pending-* release not held by us is treated as abandoned.
    pending_grace_seconds: float = 60.0
    #: level-triggered re-check of in-sync HelmApps (one Secret list, no helm); ±10% jitter is added.
    resync_seconds: float = 600.0
    #: how often deployed releases are compared with the live objects (0 = drift detection off).
    drift_check_seconds: float = 60.0
    #: delay between noticing drift and acting on it, so bursts of edits are handled once (Fleet: 5s;
    #: the watches already coalesce an edit's events, so 1s keeps edit → reverted within seconds).
    drift_delay_seconds: float = 1.0
    #: watch the kinds releases deploy, so drift is noticed when it happens and not at the next check.
    drift_watch: bool = True
    #: polls of chart sources running at once.
    poll_concurrency: int = 8
    backoff_base_seconds: float = 5.0
    backoff_cap_seconds: float = 300.0
    #: how long helm gets after SIGTERM to mark its release failed.
    helm_term_grace_seconds: float = 20.0
    system_namespace: str = "cattle-fleet-system"
    #: fallback CA bundle Secrets (namespace, name, key), e.g. Rancher's cattle-system/tls-ca.
    ca_bundle: Sequence[tuple[str, str, str]] = ()
    #: campaign for a Lease in system_namespace before reconciling (needed with more than one replica).
    leader_elect: bool = False
    lease_times: LeaseTimes = field(default_factory=LeaseTimes)
    #: Fleet sharding: reconcile only HelmApps labelled fleet.cattle.io/shard-ref=<id> (None: unlabelled ones).
    shard_id: str | None = None
    extra_protected_namespaces: Sequence[str] = field(default_factory=tuple)
    #: accept downstream kubeconfigs with exec/auth-provider credential plugins (they run commands).
    allow_exec_kubeconfig: bool = False
    #: accept downstream kubeconfigs with insecure-skip-tls-verify.
    allow_insecure_kubeconfig: bool = False
    #: cap on a HelmApp's helm.timeoutSeconds (larger values are clamped, with an Event); 0 = no cap.
    max_timeout_seconds: int = 600
    #: helm slots one namespace may hold at once; 0 = helm_concurrency - 1 (at least 1).
    helm_tenant_slots: int = 0
    #: reconciles of one namespace running at once; 0 = workers - 1 (at least 1).
    tenant_workers: int = 0
    #: namespaces besides a Cluster's own from which its kubeConfigSecret may be read ("*": any).
    kubeconfig_secret_namespaces: Sequence[str] = ()
    #: chart sources: seconds to connect, seconds without a byte before a hanging source is given up
    #: (then a cached index/chart is used: stale-if-error), and seconds for a whole request.  Sizes and
    #: counts are HELMOPS_SOURCE_* variables read by helmops.sources.limits (docs/sources.md).
    source_connect_timeout: float = 5.0
    source_read_timeout: float = 10.0
    source_timeout: float = 60.0
    #: refuse HelmApps without a serviceAccount (none set and no GitRepoRestriction defaultServiceAccount).
    require_service_account: bool = False
    #: the chart cache directory, kept across restarts and shareable by two processes (HELMOPS_CHART_CACHE_DIR;
    #: default ``$XDG_CACHE_HOME/helmops`` or ``~/.cache/helmops``), and its size bound in bytes.
    chart_cache_dir: Path = field(default_factory=lambda: default_cache_dir({}))
    chart_cache_max_bytes: int = 1 << 30


def from_env(
    env: Mapping[str, str],
    *,
    enable_flag: bool = False,
    kubeconfig: str | None = None,
    namespaces: Sequence[str] = (),
    log_format: str = "text",
    health_port: int | None = None,
    metrics_port: int | None = None,
    shard_id: str | None = None,
    leader_elect: bool = False,
    allow_exec_kubeconfig: bool = False,
    allow_insecure_kubeconfig: bool = False,
    kubeconfig_secret_namespaces: Sequence[str] = (),
    require_service_account: bool = False,
) -> Settings:
    kc = kubeconfig or env.get("KUBECONFIG") or None
    mhost, mport = parse_bind_address(env.get("HELMOPS_METRICS_BIND_ADDRESS", ":8081"), 8081)
    if metrics_port is not None:
        mport = metrics_port
    helm = env.get("HELMOPS_HELM") or shutil.which("helm") or "helm"
    return Settings(
        enabled=enable_flag or parse_bool(env.get(FLAG_ENV)),
        kubeconfig=Path(kc.split(os.pathsep)[0]) if kc else None,
        namespaces=tuple(namespaces),
        log_format=log_format,
        health_port=health_port if health_port is not None else _int(env, "HELMOPS_HEALTH_PORT", 8080),
        metrics_host=mhost,
        metrics_port=mport,
        workers=_int(env, "HELMOPS_RECONCILER_WORKERS", 8),  # helm itself is capped separately
        helm_concurrency=_int(env, "HELMOPS_HELM_CONCURRENCY", 4),
        helm=helm,
        pending_grace_seconds=_float(env, "HELMOPS_PENDING_GRACE_SECONDS", 60.0),
        resync_seconds=resync_period(env),
        drift_check_seconds=_period(env, "HELMOPS_DRIFT_CHECK_PERIOD", 60.0, allow_zero=True),
        drift_delay_seconds=_period(env, "HELMOPS_DRIFT_DELAY", 1.0, allow_zero=True),
        drift_watch=parse_bool(env.get("HELMOPS_DRIFT_WATCH", "true")),
        poll_concurrency=_int(env, "HELMOPS_POLL_CONCURRENCY", 8),
        backoff_base_seconds=_float(env, "HELMOPS_BACKOFF_BASE_SECONDS", 5.0),
        backoff_cap_seconds=_float(env, "HELMOPS_BACKOFF_CAP_SECONDS", 300.0),
        helm_term_grace_seconds=_float(env, "HELMOPS_HELM_TERM_GRACE_SECONDS", 20.0),
        system_namespace=env.get("NAMESPACE") or "cattle-fleet-system",
        shard_id=shard_id or None,
        ca_bundle=ca_bundle_refs(env),
        leader_elect=leader_elect,
        lease_times=lease_times(env),
        allow_exec_kubeconfig=allow_exec_kubeconfig or parse_bool(env.get("HELMOPS_ALLOW_EXEC_KUBECONFIG")),
        allow_insecure_kubeconfig=allow_insecure_kubeconfig or parse_bool(env.get("HELMOPS_ALLOW_INSECURE_KUBECONFIG")),
        max_timeout_seconds=max_timeout(env),
        helm_tenant_slots=_int(env, "HELMOPS_HELM_CONCURRENCY_PER_NAMESPACE", 0),
        tenant_workers=_int(env, "HELMOPS_RECONCILER_WORKERS_PER_NAMESPACE", 0),
        kubeconfig_secret_namespaces=name_list(
            [*kubeconfig_secret_namespaces, env.get("HELMOPS_KUBECONFIG_SECRET_NAMESPACES", "")]
        ),
        source_connect_timeout=_period(env, SOURCE_TIMEOUT_ENV["source_connect_timeout"], 5.0),
        source_read_timeout=_period(env, SOURCE_TIMEOUT_ENV["source_read_timeout"], 10.0),
        source_timeout=_period(env, SOURCE_TIMEOUT_ENV["source_timeout"], 60.0),
        require_service_account=require_service_account or parse_bool(env.get("HELMOPS_REQUIRE_SERVICE_ACCOUNT")),
        chart_cache_dir=Path(env.get("HELMOPS_CHART_CACHE_DIR", "").strip() or default_cache_dir(env)),
        chart_cache_max_bytes=max(1 << 20, _int(env, "HELMOPS_CHART_CACHE_MAX_BYTES", 1 << 30)),
    )


def default_cache_dir(env: Mapping[str, str]) -> Path:
    """The controller's cache dir: ``$XDG_CACHE_HOME/helmops``, else ``~/.cache/helmops`` (the chart's
    deployment sets HELMOPS_CHART_CACHE_DIR to its own volume)."""
    base = env.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "helmops"


def name_list(values: Sequence[str]) -> tuple[str, ...]:
    """Comma-separated names (from repeated flags and an environment variable), trimmed, deduplicated."""
    out: list[str] = []
    for value in values:
        for part in value.split(","):
            name = part.strip()
            if name and name not in out:
                out.append(name)
    return tuple(out)


#: Settings field -> environment variable for the chart-source timeouts (Go durations or seconds).
SOURCE_TIMEOUT_ENV = {
    "source_connect_timeout": "HELMOPS_SOURCE_CONNECT_TIMEOUT",
    "source_read_timeout": "HELMOPS_SOURCE_READ_TIMEOUT",
    "source_timeout": "HELMOPS_SOURCE_TIMEOUT",
}


def export_source_timeouts(settings: Settings, environ: MutableMapping[str, str]) -> None:
    """Write the chart-source timeouts, in seconds, where ``helmops.sources`` reads them (the process env).

    ChartSources is built deep inside the controller; its limits come from the environment so they need no
    plumbing through every constructor."""
    for attr, var in SOURCE_TIMEOUT_ENV.items():
        environ[var] = f"{getattr(settings, attr):g}"


def ca_bundle_refs(env: Mapping[str, str]) -> tuple[tuple[str, str, str], ...]:
    """HELMOPS_CA_BUNDLE_NAMESPACE + _SECRET/_KEY (+ _ADDITIONAL_SECRET/_ADDITIONAL_KEY); none without a
    namespace."""
    ns = env.get("HELMOPS_CA_BUNDLE_NAMESPACE", "").strip()
    if not ns:
        return ()
    refs = [(ns, env.get("HELMOPS_CA_BUNDLE_SECRET") or "tls-ca", env.get("HELMOPS_CA_BUNDLE_KEY") or "cacerts.pem")]
    extra = env.get("HELMOPS_CA_BUNDLE_ADDITIONAL_SECRET", "").strip()
    if extra:
        refs.append((ns, extra, env.get("HELMOPS_CA_BUNDLE_ADDITIONAL_KEY") or "ca-additional.pem"))
    return tuple(refs)


__all__ = [
    "ENABLE_HINT",
    "FLAG_ENV",
    "SOURCE_TIMEOUT_ENV",
    "Settings",
    "ca_bundle_refs",
    "export_source_timeouts",
    "from_env",
    "max_timeout",
    "name_list",
    "parse_bind_address",
    "parse_bool",
    "resync_period",
]
