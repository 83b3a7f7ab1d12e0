"""``helmops render``: what a HelmApp deploys, per target cluster — chart version, values (with where each
came from), and the manifests ``helm template`` makes of them.

Targets are matched as the controller matches them: with ``--clusters-from`` against Fleet Cluster (and
ClusterGroup) objects, with ``--cluster`` against one cluster described by flags, otherwise the local cluster.
The chart version is resolved from its source (HTTP repository, OCI registry, tarball) and the chart rendered
with the real helm binary (``$HELMOPS_HELM`` or ``helm`` on PATH). ``--values-only`` contacts no chart source:
an exact version is reported as written, anything else as ``unresolved``.

Exit codes: 0 every cluster rendered, 1 any cluster failed (its entry names the cluster and the cause),
2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from helmops.api.objects import HelmApp
from helmops.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    CliError,
    Helm,
    HelmFailed,
    Progress,
    add_command,
    api_error,
    dump,
    error,
    key_values,
    kube_session,
)
from helmops.cli.plan import (
    ClusterResult,
    Inventory,
    inventory_from_file,
    inventory_from_flags,
    load_helmapp,
    plan,
    repo_auth,
    resolve,
    secret_data,
)
from helmops.sources import RepoAuth
from helmops.values import RenderedValues, ValuesFromReader

COMMAND = "render"


def add_source_flags(p: argparse.ArgumentParser) -> None:
    """Flags render and diff share: the HelmApp, the clusters it is matched against, credentials."""
    p.add_argument("-f", "--filename", required=True, metavar="FILE", help="HelmApp manifest ('-' reads stdin)")
    p.add_argument("-n", "--namespace", help="namespace of the HelmApp when the manifest names none (default: default)")
    group = p.add_argument_group("clusters (default: the local cluster)")
    group.add_argument("--cluster", metavar="NAME", help="match targets against one Fleet cluster of this name")
    group.add_argument(
        "--cluster-namespace", metavar="NS", help="namespace of --cluster (default: the HelmApp's namespace)"
    )
    group.add_argument(
        "--cluster-labels",
        action="extend",
        nargs="+",
        default=[],
        metavar="K=V",
        help="labels of --cluster (several per flag, and repeatable)",
    )
    group.add_argument(
        "--cluster-values",
        action="extend",
        nargs="+",
        default=[],
        metavar="K=V",
        help="spec.templateValues entries of --cluster, V parsed as YAML (several per flag, and repeatable)",
    )
    group.add_argument(
        "--clusters-from",
        metavar="FILE",
        help="YAML file of Fleet Cluster (and ClusterGroup) objects to match targets against",
    )
    p.add_argument(
        "--helm-secret",
        metavar="FILE",
        help="Secret manifest with repository credentials (username/password/cacerts), as helmSecretName names",
    )


def inventory(args: argparse.Namespace) -> Inventory:
    cluster_flags = args.cluster_namespace or args.cluster_labels or args.cluster_values
    if args.clusters_from and (args.cluster or cluster_flags):
        raise CliError("--clusters-from and --cluster* flags exclude each other")
    if cluster_flags and not args.cluster:
        raise CliError("--cluster-namespace/--cluster-labels/--cluster-values need --cluster NAME")
    if args.clusters_from:
        return inventory_from_file(args.clusters_from)
    if args.cluster:
        return inventory_from_flags(
            args.cluster,
            args.cluster_namespace,
            key_values(args.cluster_labels, "--cluster-labels"),
            key_values(args.cluster_values, "--cluster-values"),
        )
    return Inventory()


def helm_secret_auth(args: argparse.Namespace, helmapp: HelmApp, api: Any | None) -> RepoAuth:
    """Credentials: --helm-secret, else the helmSecretName Secret read with ``api`` (when given)."""
    if args.helm_secret:
        return repo_auth(helmapp, secret_data(args.helm_secret))
    name = helmapp.spec.helm_secret_name
    if not name:
        return repo_auth(helmapp, None)
    namespace = helmapp.metadata.namespace
    if api is None:
        error(
            args.command,
            f"warning: helmSecretName {name!r} not read (give --helm-secret FILE or --kubeconfig); "
            "reaching the chart source without credentials",
        )
        return repo_auth(helmapp, None)
    from kubernetes.client.exceptions import ApiException

    from helmops.kubeio.client import sync_core_v1

    try:
        secret = sync_core_v1(api).read_namespaced_secret(name, namespace)
    except ApiException as exc:
        raise api_error(exc, f"helm secret {namespace}/{name}") from None
    data = {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
    return repo_auth(helmapp, data)


@contextlib.asynccontextmanager
async def local_reader(kubeconfig: str | None, context: str | None) -> Any:
    """A valuesFrom reader on the local cluster (kubernetes.aio), closed on exit."""
    from helmops.kubeio.client import KubeconfigUnusable, cli_aio_client
    from helmops.values.kube_reader import KubeValuesFromReader

    try:
        api = await cli_aio_client(kubeconfig, context)
    except KubeconfigUnusable as exc:
        raise CliError(f"no usable kubeconfig: {exc}") from None
    try:
        yield KubeValuesFromReader(api)
    finally:
        await api.close()


def secret_strings(values: RenderedValues) -> list[str]:
    """Secret-derived string leaves (and their base64), to mask in rendered manifests."""
    found: list[str] = []
    for path in values.secret_paths:
        node: Any = values.values
        for part in path:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, str | int | float) and not isinstance(node, bool):
            text = str(node)
            if len(text) >= 4:
                found += [text, base64.b64encode(text.encode()).decode()]
    return sorted(set(found), key=len, reverse=True)


def scrub(text: str, values: RenderedValues | None) -> str:
    if values is None:
        return text
    for secret in secret_strings(values):
        # A plain word, so the manifests stay valid YAML wherever the value appeared.
        text = text.replace(secret, "REDACTED")
    return text


def template(helm: Helm, result: ClusterResult, *, upgrade: bool = False) -> str:
    """``helm template`` of the resolved chart with the cluster's values (Secret-derived strings masked)."""
    assert result.chart is not None and result.values is not None and result.desired is not None
    rel = result.desired.release
    text = helm.template(
        rel.name,
        rel.namespace,
        result.chart.path,
        result.values.yaml,
        upgrade=upgrade,
        skip_schema_validation=rel.skip_schema_validation,
        enable_dns=rel.enable_dns,
    )
    return scrub(text, result.values)


def _header(result: ClusterResult) -> str:
    p = result.plan
    chart = result.chart
    what = f"chart {chart.name} {chart.version} ({chart.digest})" if chart else f"version {result.version}"
    return (
        f"# helmops: cluster {p.cluster} (target {p.target_name}), release "
        f"{p.release_namespace}/{p.release_name}, {what}"
    )


@contextlib.contextmanager
def _maybe_client(args: argparse.Namespace) -> Iterator[Any]:
    if not getattr(args, "kubeconfig", None) and not getattr(args, "context", None):
        yield None
        return
    with kube_session(args.kubeconfig, args.context) as api:
        yield api


def policy_warnings(args: argparse.Namespace, helmapp: HelmApp) -> list[str]:
    """What the controller's operator policy would refuse (GitRepoRestrictions of the HelmApp's namespace,
    read with --kubeconfig/--context; nothing without them). Warnings only: render and diff still show
    what the HelmApp would deploy."""
    from kubernetes.client.exceptions import ApiException

    from helmops.kubeio.client import sync_custom_objects
    from helmops.policy import aggregate, evaluate
    from helmops.policy.source import GROUP, PLURAL, VERSION

    namespace = helmapp.metadata.namespace
    with _maybe_client(args) as api:
        if api is None:
            return []
        out: Any = None
        try:
            out = sync_custom_objects(api).list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
        except ApiException as exc:
            if exc.status == 404:
                return []
            return [f"GitRepoRestrictions of namespace {namespace} not read (HTTP {exc.status})"]
        except Exception as exc:  # unreachable cluster: reported by the commands' own reads
            return [f"GitRepoRestrictions of namespace {namespace} not read ({type(exc).__name__})"]
    result = evaluate(helmapp, aggregate(dict(i) for i in (out or {}).get("items") or []))
    return [f"the controller would refuse this HelmApp: {v.message}" for v in result.violations]


async def _resolve_all(args: argparse.Namespace, helmapp: HelmApp, inv: Inventory) -> list[ClusterResult]:
    plans = plan(helmapp, inv)
    with _maybe_client(args) as api:
        auth = helm_secret_auth(args, helmapp, api) if not args.values_only else RepoAuth()
    progress = Progress()
    if (args.kubeconfig or args.context) and not inv.given:
        async with local_reader(args.kubeconfig, args.context) as reader:
            readers: dict[str, ValuesFromReader | None] = {p.cluster: reader for p in plans}
            return await resolve(plans, auth=auth, fetch_charts=not args.values_only, readers=readers,
                                 progress=progress)  # fmt: skip
    return await resolve(plans, auth=auth, fetch_charts=not args.values_only, progress=progress)


def run(args: argparse.Namespace) -> int:
    try:
        helmapp = load_helmapp(args.filename, args.namespace)
        inv = inventory(args)
        for warning in policy_warnings(args, helmapp):
            error(COMMAND, f"warning: {warning}")
        results = asyncio.run(_resolve_all(args, helmapp, inv))
    except CliError as exc:
        error(COMMAND, str(exc))
        return EXIT_ERROR
    ref = f"{helmapp.metadata.namespace}/{helmapp.metadata.name}"
    if not results:
        error(COMMAND, f"HelmApp {ref} targets none of the given clusters")
    manifests: dict[str, str] = {}
    if not args.values_only:
        try:
            with Helm() as helm:
                for result in results:
                    if result.error is None:
                        try:
                            manifests[result.cluster] = template(helm, result)
                        except HelmFailed as exc:
                            result.fail(scrub(str(exc), result.values))
        except CliError as exc:
            error(COMMAND, str(exc))
            return EXIT_ERROR
    for result in results:
        for warning in result.warnings:
            error(COMMAND, f"warning: {warning}")
    failed = [r for r in results if r.error is not None]
    if args.output in ("json", "yaml"):
        dump({"helmapp": ref, "clusters": [r.as_dict(manifest=manifests.get(r.cluster)) for r in results]},
             args.output)  # fmt: skip
    else:
        out = sys.stdout
        for result in results:
            if result.error is not None:
                continue
            out.write(_header(result) + "\n")
            assert result.values is not None
            if args.values_only:
                for line in result.values.describe():
                    out.write(f"#   {line}\n")
                dump(result.values.redacted(), "yaml", out)
                out.write("---\n")
            else:
                out.write(manifests[result.cluster].rstrip("\n") + "\n")
    for result in failed:
        error(COMMAND, result.error or "failed")
    return EXIT_ERROR if failed else EXIT_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = add_command(
        sub, COMMAND, "show the chart version, values (with provenance) and manifests per target cluster", __doc__
    )
    add_source_flags(p)
    p.add_argument(
        "--values-only",
        action="store_true",
        help="print only the merged values; contact no chart source",
    )
    p.add_argument(
        "-o",
        "--output",
        choices=("manifests", "json", "yaml"),
        default="manifests",
        help="manifests (or values with --values-only) as YAML text, or the per-cluster data as json/yaml",
    )
    kube = p.add_argument_group("cluster access (optional: reads helmSecretName and valuesFrom on the local cluster)")
    kube.add_argument("--kubeconfig", help="kubeconfig of the local cluster")
    kube.add_argument("--context", help="kubeconfig context")
    p.set_defaults(func=run)
