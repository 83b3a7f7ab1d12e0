"""``helmops run``: the HelmApp controller process."""

from __future__ import annotations

import argparse
import asyncio
import os


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the HelmApp controller", description=__doc__)
    p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, else in-cluster)")
    p.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        metavar="NS",
        help="watch only this namespace (repeatable; default: all namespaces)",
    )
    p.add_argument(
        "--enable-helmops",
        action="store_true",
        help="reconcile HelmApps even if EXPERIMENTAL_HELM_OPS is not true",
    )
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.add_argument(
        "--leader-elect",
        action="store_true",
        help="hold a Lease in $NAMESPACE before reconciling (run more than one replica safely)",
    )
    p.add_argument(
        "--shard-id",
        default=None,
        help="reconcile only HelmApps labelled fleet.cattle.io/shard-ref=<id> (default: the unlabelled ones)",
    )
    p.add_argument(
        "--allow-exec-kubeconfig",
        action="store_true",
        help="accept downstream cluster kubeconfigs with exec credential plugins (HELMOPS_ALLOW_EXEC_KUBECONFIG)",
    )
    p.add_argument(
        "--allow-insecure-kubeconfig",
        action="store_true",
        help="accept downstream cluster kubeconfigs with insecure-skip-tls-verify (HELMOPS_ALLOW_INSECURE_KUBECONFIG)",
    )
    p.add_argument(
        "--kubeconfig-secret-namespaces",
        action="append",
        default=[],
        metavar="NS[,NS...]",
        help="namespaces besides a Cluster's own its kubeConfigSecret may be read from; '*' = any "
        "(repeatable; HELMOPS_KUBECONFIG_SECRET_NAMESPACES; default: none)",
    )
    p.add_argument(
        "--require-service-account",
        action="store_true",
        help="refuse HelmApps without a serviceAccount (or a GitRepoRestriction defaultServiceAccount); "
        "HELMOPS_REQUIRE_SERVICE_ACCOUNT",
    )
    p.add_argument("--health-port", type=int, default=None, help="liveness endpoint port (/healthz; 8080)")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="Prometheus port (default from HELMOPS_METRICS_BIND_ADDRESS, :8081)",
    )
    p.add_argument(
        "--resync-period",
        default=None,
        metavar="DURATION",
        help="re-check in-sync HelmApps this often (Go duration or seconds; HELMOPS_RESYNC_PERIOD, 10m)",
    )
    p.add_argument(
        "--drift-check-period",
        default=None,
        metavar="DURATION",
        help="compare deployed objects with their release this often; 0 = off (HELMOPS_DRIFT_CHECK_PERIOD, 60s)",
    )
    p.add_argument(
        "--drift-delay",
        default=None,
        metavar="DURATION",
        help="wait this long after noticing drift before acting, coalescing bursts (HELMOPS_DRIFT_DELAY, 1s)",
    )
    p.add_argument(
        "--max-timeout",
        default=None,
        metavar="DURATION",
        help="cap on a HelmApp's helm.timeoutSeconds; larger values are clamped (HELMOPS_MAX_TIMEOUT, 10m; 0 = no cap)",
    )
    p.add_argument(
        "--helm-concurrency-per-namespace",
        default=None,
        metavar="N",
        help="helm processes one namespace may run at once "
        "(HELMOPS_HELM_CONCURRENCY_PER_NAMESPACE; default helm concurrency - 1)",
    )
    p.add_argument(
        "--source-connect-timeout",
        default=None,
        metavar="DURATION",
        help="give up connecting to a chart repository/registry after this long (HELMOPS_SOURCE_CONNECT_TIMEOUT, 5s)",
    )
    p.add_argument(
        "--source-read-timeout",
        default=None,
        metavar="DURATION",
        help="give up on a chart source that sends nothing for this long; a cached index/chart is then used"
        " (HELMOPS_SOURCE_READ_TIMEOUT, 10s)",
    )
    p.add_argument(
        "--source-timeout",
        default=None,
        metavar="DURATION",
        help="upper bound for one chart-source request, however slowly it answers (HELMOPS_SOURCE_TIMEOUT, 60s)",
    )
    p.set_defaults(func=run_command)


#: flags that override an environment variable of the same meaning.
_ENV_FLAGS = {
    "resync_period": "HELMOPS_RESYNC_PERIOD",
    "drift_check_period": "HELMOPS_DRIFT_CHECK_PERIOD",
    "drift_delay": "HELMOPS_DRIFT_DELAY",
    "max_timeout": "HELMOPS_MAX_TIMEOUT",
    "helm_concurrency_per_namespace": "HELMOPS_HELM_CONCURRENCY_PER_NAMESPACE",
    "source_connect_timeout": "HELMOPS_SOURCE_CONNECT_TIMEOUT",
    "source_read_timeout": "HELMOPS_SOURCE_READ_TIMEOUT",
    "source_timeout": "HELMOPS_SOURCE_TIMEOUT",
}


def run_command(args: argparse.Namespace) -> int:
    from helmops.runtime import logs
    from helmops.runtime.settings import from_env

    logs.configure(args.log_format)
    env = dict(os.environ)
    for attr, var in _ENV_FLAGS.items():
        value = getattr(args, attr, None)
        if value is not None:
            env[var] = value
    settings = from_env(
        env,
        enable_flag=args.enable_helmops,
        kubeconfig=args.kubeconfig,
        namespaces=args.namespace,
        log_format=args.log_format,
        health_port=args.health_port,
        metrics_port=args.metrics_port,
        shard_id=args.shard_id,
        leader_elect=args.leader_elect,
        allow_exec_kubeconfig=args.allow_exec_kubeconfig,
        allow_insecure_kubeconfig=args.allow_insecure_kubeconfig,
        kubeconfig_secret_namespaces=args.kubeconfig_secret_namespaces,
        require_service_account=args.require_service_account,
    )
    from helmops.runtime.settings import export_source_timeouts

    export_source_timeouts(settings, os.environ)
    from helmops.runtime.app import run

    return asyncio.run(run(settings))
