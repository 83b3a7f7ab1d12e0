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
        help="wait this long after noticing drift before acting, coalescing bursts (HELMOPS_DRIFT_DELAY, 5s)",
    )
    p.set_defaults(func=run_command)


#: flags that override an environment variable of the same meaning.
_ENV_FLAGS = {
    "resync_period": "HELMOPS_RESYNC_PERIOD",
    "drift_check_period": "HELMOPS_DRIFT_CHECK_PERIOD",
    "drift_delay": "HELMOPS_DRIFT_DELAY",
}


def run_command(args: argparse.Namespace) -> int:
    from helmops.controller import logs
    from helmops.controller.settings import from_env

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
        require_service_account=args.require_service_account,
    )
    from helmops.controller.app import run

    return asyncio.run(run(settings))
