"""``helmops diff``: what applying a HelmApp would change, per target cluster, against the live Helm release.

For each target cluster (the local cluster unless ``--cluster``/``--clusters-from`` name others) it compares
the chart version the spec resolves to now with the deployed one (``helm get metadata``), the values
(``helm get values``; Secret-derived values are shown as ``***``), and the manifests (``helm get manifest``
against ``helm template`` of the resolved chart), plus the controller's release fingerprint when the release
carries one. Downstream clusters are reached through their Fleet Cluster's ``kubeConfigSecret``, read from
the cluster ``--kubeconfig`` points at.

Exit codes: 0 no differences, 2 differences, 1 an error (a cluster could not be compared). Output is
coloured on a terminal (``--color`` overrides; NO_COLOR is honoured).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import copy
import difflib
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from helmops.api.keys import LOCAL
from helmops.cli.common import (
    EXIT_DIFFERENCES,
    EXIT_ERROR,
    EXIT_OK,
    FAILURES,
    UNREACHABLE,
    CliError,
    Helm,
    Progress,
    add_command,
    api_error,
    dump,
    error,
    fail,
    kube_session,
    unreachable,
    use_color,
)
from helmops.cli.plan import ClusterPlan, ClusterResult, plan, resolve
from helmops.cli.render import add_source_flags, helm_secret_auth, inventory, policy_warnings, scrub, template
from helmops.clusters.connections import secret_namespace_allowed
from helmops.clusters.kubeconfig import KubeconfigRefused, parse, sanitize
from helmops.reconcile.release import (
    HELM_STORAGE_SELECTOR,
    OWNER_LABEL,
    ReleaseInfo,
    foreign_owner,
    release_from_secrets,
)
from helmops.runtime.settings import name_list
from helmops.values import ValuesFromReader

COMMAND = "diff"
_MISSING = object()


# --------------------------------------------------------------------------------------------------
# pure comparisons


def _leaves(value: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(value, Mapping) and (value or not prefix):
        for key, item in value.items():
            yield from _leaves(item, (*prefix, str(key)))
    else:
        yield prefix, value


def _dotted(path: Sequence[str]) -> str:
    return ".".join(p if p and "." not in p else json.dumps(p) for p in path)


def _related(a: Sequence[str], b: Sequence[str]) -> bool:
    n = min(len(a), len(b))
    return tuple(a[:n]) == tuple(b[:n])


def values_changes(
    live: Mapping[str, Any] | None, desired: Mapping[str, Any], secret_paths: Sequence[Sequence[str]] = ()
) -> list[dict[str, Any]]:
    """Leaf-level changes from the live to the desired values: ``op`` ``+`` (added), ``-`` (removed),
    ``~`` (changed). Values under a Secret-derived path are shown as ``***``."""
    old = dict(_leaves(live or {}))
    new = dict(_leaves(desired))
    changes = []
    for path in sorted(set(old) | set(new)):
        a, b = old.get(path, _MISSING), new.get(path, _MISSING)
        if a == b and a is not _MISSING:
            continue
        secret = any(_related(s, path) for s in secret_paths)
        change: dict[str, Any] = {"path": _dotted(path), "op": "+" if a is _MISSING else "-" if b is _MISSING else "~"}
        if a is not _MISSING:
            change["from"] = "***" if secret else a
        if b is not _MISSING:
            change["to"] = "***" if secret else b
        changes.append(change)
    return changes


def _resources(text: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for index, doc in enumerate(yaml.safe_load_all(text or "")):
        if not isinstance(doc, dict):
            continue
        meta = doc.get("metadata") or {}
        key = f"{doc.get('kind', '?')} {meta.get('namespace') or ''}/{meta.get('name') or index}".replace(" /", " ")
        found[key] = doc
    return found


def _mask_secret(live: dict[str, Any] | None, desired: dict[str, Any] | None) -> None:
    """Replace Secret data in both objects (in place) with ``***``, keeping whether each key changed."""
    for field_name in ("data", "stringData"):
        a = (live or {}).get(field_name)
        b = (desired or {}).get(field_name)
        a = a if isinstance(a, dict) else {}
        b = b if isinstance(b, dict) else {}
        if live is not None and field_name in live:
            live[field_name] = {k: "***" for k in a}
        if desired is not None and field_name in desired:
            desired[field_name] = {k: "***" if a.get(k, _MISSING) == v else "*** (changed)" for k, v in b.items()}


def manifest_diff(live: str, desired: str, *, context: int = 3) -> str:
    """A unified diff of two manifest streams, resource by resource (order and formatting do not count;
    Secret data is masked, only whether it changed shows)."""
    old, new = _resources(live), _resources(desired)
    lines_old: list[str] = []
    lines_new: list[str] = []
    for key in sorted(set(old) | set(new)):
        a = copy.deepcopy(old.get(key))
        b = copy.deepcopy(new.get(key))
        if (a or b or {}).get("kind") == "Secret":
            _mask_secret(a, b)
        if a is not None:
            lines_old += [f"# {key}", *yaml.safe_dump(a, sort_keys=True).splitlines()]
        if b is not None:
            lines_new += [f"# {key}", *yaml.safe_dump(b, sort_keys=True).splitlines()]
    return "\n".join(difflib.unified_diff(lines_old, lines_new, "live", "desired", n=context, lineterm=""))


# --------------------------------------------------------------------------------------------------
# per-cluster comparison


@dataclass
class ClusterDiff:
    result: ClusterResult
    live: ReleaseInfo | None = None
    deployed_version: str | None = None
    values: list[dict[str, Any]] = field(default_factory=list)
    manifest: str = ""
    error: str | None = None

    @property
    def cluster(self) -> str:
        return self.result.cluster

    @property
    def fingerprint_changed(self) -> bool:
        desired = self.result.desired
        return bool(self.live and self.live.fingerprint and desired and self.live.fingerprint != desired.fingerprint)

    @property
    def version_changed(self) -> bool:
        return self.deployed_version != self.result.version

    @property
    def different(self) -> bool:
        return self.error is None and (
            self.live is None or self.version_changed or bool(self.values) or bool(self.manifest)
            or self.fingerprint_changed
        )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        p = self.result.plan
        out: dict[str, Any] = {
            "cluster": self.cluster,
            "target": p.target_name,
            "release": {"name": p.release_name, "namespace": p.release_namespace},
        }
        if self.error is not None:
            out["error"] = self.error
            return out
        desired = self.result.desired
        out.update(
            installed=self.live is not None,
            status=self.live.status if self.live else None,
            revision=self.live.revision if self.live else None,
            version={
                "desired": self.result.version,
                "deployed": self.deployed_version,
                "changed": self.version_changed,
            },
            fingerprint={
                "desired": desired.fingerprint if desired else None,
                "deployed": self.live.fingerprint if self.live else None,
                "changed": self.fingerprint_changed,
            },
            values={"changed": bool(self.values), "changes": self.values},
            manifest={"changed": bool(self.manifest), "diff": self.manifest},
            different=self.different,
        )
        return out


@dataclass(frozen=True)
class Connection:
    kubeconfig: str | None
    context: str | None


@contextlib.contextmanager
def connections(
    plans: Sequence[ClusterPlan], args: argparse.Namespace, api: Any
) -> Iterator[dict[str, Connection | str]]:
    """How to reach each cluster: the --kubeconfig cluster for the local one, a temporary kubeconfig file
    from the Fleet Cluster's kubeConfigSecret for the others; a string says why a cluster is unreachable."""
    from kubernetes.client.exceptions import ApiException

    from helmops.kubeio.client import sync_core_v1

    tmp = Path(tempfile.mkdtemp(prefix="helmops-diff-"))
    allowed = name_list(getattr(args, "kubeconfig_secret_namespaces", None) or [])
    out: dict[str, Connection | str] = {}
    try:
        for p in plans:
            cluster = p.cluster_object
            secret_name = cluster.spec.kube_config_secret
            if not secret_name:
                if cluster.metadata.name == LOCAL:
                    out[p.cluster] = Connection(args.kubeconfig, args.context)
                else:
                    out[p.cluster] = f"{p.describe()}: no kubeConfigSecret to reach it"
                continue
            namespace = cluster.spec.kube_config_secret_namespace or cluster.metadata.namespace
            if not secret_namespace_allowed(cluster.metadata.namespace, namespace, allowed):
                out[p.cluster] = (
                    f"{p.describe()}: kubeconfig secret {namespace}/{secret_name} is in another namespace "
                    "(allow with --kubeconfig-secret-namespaces)"
                )
                continue
            try:
                secret = sync_core_v1(api).read_namespaced_secret(secret_name, namespace)
            except ApiException as exc:
                out[p.cluster] = f"{p.describe()}: {api_error(exc, f'kubeconfig secret {namespace}/{secret_name}')}"
                continue
            raw = (secret.data or {}).get("value")
            if not raw:
                out[p.cluster] = f"{p.describe()}: kubeconfig secret {namespace}/{secret_name} has no key 'value'"
                continue
            # The Secret is a tenant's: the operator's CLI gets only the sanitized kubeconfig (no local files,
            # no exec), exactly as the controller does.
            try:
                kc = sanitize(parse(base64.b64decode(raw)))
            except (KubeconfigRefused, ValueError) as exc:
                why = exc.message if isinstance(exc, KubeconfigRefused) else "not base64"
                out[p.cluster] = f"{p.describe()}: kubeconfig secret {namespace}/{secret_name} refused: {why}"
                continue
            path = tmp / f"{len(out)}.kubeconfig"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(kc.yaml().encode())
            out[p.cluster] = Connection(str(path), None)
        yield out
    finally:
        for path in tmp.glob("*"):
            path.unlink(missing_ok=True)
        tmp.rmdir()


def live_release(api: Any, namespace: str, name: str) -> ReleaseInfo | None:
    from kubernetes.client.exceptions import ApiException

    from helmops.kubeio.client import sync_core_v1

    try:
        items = (
            sync_core_v1(api)
            .list_namespaced_secret(namespace, label_selector=HELM_STORAGE_SELECTOR.format(name=name))
            .items
        )
    except ApiException as exc:
        raise api_error(exc, f"Helm release {namespace}/{name}") from None
    pairs = [
        (dict(i.metadata.labels or {}), i.metadata.creation_timestamp) for i in items or [] if i.metadata is not None
    ]
    return release_from_secrets(namespace, name, pairs)


def compare(result: ClusterResult, conn: Connection) -> ClusterDiff:
    """Compare one resolved cluster result with its live release."""
    out = ClusterDiff(result)
    desired = result.desired
    assert desired is not None and result.values is not None
    rel = desired.release
    with kube_session(conn.kubeconfig, conn.context) as api:
        out.live = live_release(api, rel.namespace, rel.name)
    meta = result.plan.helmapp.metadata
    owner = foreign_owner(out.live, meta.namespace, meta.name)
    if owner is not None:
        raise CliError(
            f"release {rel.namespace}/{rel.name} belongs to another HelmApp ({OWNER_LABEL}={owner}); "
            "the controller will not touch it"
        )
    with Helm(conn.kubeconfig, conn.context) as helm:
        wanted = template(helm, result, upgrade=out.live is not None)
        if out.live is None:
            out.values = values_changes({}, result.values.values, list(result.values.secret_paths))
            out.manifest = manifest_diff("", wanted)
            return out
        info = json.loads(helm.run("get", "metadata", rel.name, "-n", rel.namespace, "-o", "json", cluster=True))
        out.deployed_version = str(info.get("version") or "") or None
        live_values = json.loads(helm.run("get", "values", rel.name, "-n", rel.namespace, "-o", "json", cluster=True))
        out.values = values_changes(live_values or {}, result.values.values, list(result.values.secret_paths))
        live_manifest = scrub(helm.run("get", "manifest", rel.name, "-n", rel.namespace, cluster=True), result.values)
        out.manifest = manifest_diff(live_manifest, wanted)
    return out


# --------------------------------------------------------------------------------------------------
# output


class Painter:
    CODES = {"red": "31", "green": "32", "yellow": "33", "cyan": "36", "bold": "1"}

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, colour: str) -> str:
        return f"\x1b[{self.CODES[colour]}m{text}\x1b[0m" if self.enabled else text


def _show(value: Any) -> str:
    return json.dumps(value, default=str) if not isinstance(value, str) or value == "***" else json.dumps(value)


def print_text(diffs: Sequence[ClusterDiff], out: TextIO, paint: Painter) -> None:
    for d in diffs:
        p = d.result.plan
        head = f"=== cluster {d.cluster} (target {p.target_name}): release {p.release_namespace}/{p.release_name}"
        if d.error is not None:
            out.write(paint(head, "bold") + "\n" + paint(f"error: {d.error}", "red") + "\n")
            continue
        state = f"{d.live.status}, revision {d.live.revision}" if d.live else "not installed"
        out.write(paint(f"{head} ({state})", "bold") + "\n")
        if not d.different:
            out.write("no differences\n")
            continue
        if d.version_changed:
            out.write(f"version: {d.deployed_version or '(none)'} -> {paint(d.result.version, 'green')}\n")
        if d.fingerprint_changed and not (d.version_changed or d.values or d.manifest):
            out.write("helm options changed (release fingerprint differs): an upgrade would run\n")
        if d.values:
            out.write("values:\n")
            for c in d.values:
                if c["op"] == "+":
                    out.write(paint(f"  + {c['path']}: {_show(c['to'])}", "green") + "\n")
                elif c["op"] == "-":
                    out.write(paint(f"  - {c['path']}: {_show(c['from'])}", "red") + "\n")
                else:
                    out.write(paint(f"  ~ {c['path']}: {_show(c['from'])} -> {_show(c['to'])}", "yellow") + "\n")
        if d.manifest:
            out.write("manifest:\n")
            for line in d.manifest.splitlines():
                if line.startswith(("+++", "---")):
                    out.write(paint(line, "bold") + "\n")
                elif line.startswith("+"):
                    out.write(paint(line, "green") + "\n")
                elif line.startswith("-"):
                    out.write(paint(line, "red") + "\n")
                elif line.startswith("@@"):
                    out.write(paint(line, "cyan") + "\n")
                else:
                    out.write(line + "\n")


async def _resolve(
    args: argparse.Namespace, plans: Sequence[ClusterPlan], conns: Mapping[str, Connection | str], auth: Any
) -> list[ClusterResult]:
    from helmops.cli.render import local_reader

    async with contextlib.AsyncExitStack() as stack:
        readers: dict[str, ValuesFromReader | None] = {}
        for p in plans:
            conn = conns.get(p.cluster)
            if isinstance(conn, Connection):
                readers[p.cluster] = await stack.enter_async_context(local_reader(conn.kubeconfig, conn.context))
        reachable = [p for p in plans if isinstance(conns.get(p.cluster), Connection)]
        return await resolve(reachable, auth=auth, fetch_charts=True, readers=readers, progress=Progress())


def run(args: argparse.Namespace) -> int:
    from helmops.cli.plan import load_helmapp

    try:
        helmapp = load_helmapp(args.filename, args.namespace)
        plans = plan(helmapp, inventory(args))
        for warning in policy_warnings(args, helmapp):
            error(COMMAND, f"warning: {warning}")
        with kube_session(args.kubeconfig, args.context) as api:
            auth = helm_secret_auth(args, helmapp, api)
            with connections(plans, args, api) as conns:
                results = asyncio.run(_resolve(args, plans, conns, auth))
                by_cluster = {r.cluster: r for r in results}
                diffs: list[ClusterDiff] = []
                for p in plans:
                    conn = conns[p.cluster]
                    result = by_cluster.get(p.cluster)
                    if result is None or not isinstance(conn, Connection):
                        d = ClusterDiff(result or ClusterResult(p))
                        d.error = conn if isinstance(conn, str) else "not resolved"
                        diffs.append(d)
                        continue
                    if result.error is not None:
                        d = ClusterDiff(result)
                        d.error = result.error
                        diffs.append(d)
                        continue
                    try:
                        try:
                            diffs.append(compare(result, conn))
                        except UNREACHABLE as exc:
                            raise unreachable(exc) from None
                    except CliError as exc:
                        d = ClusterDiff(result)
                        d.error = f"{p.describe()}: {scrub(str(exc), result.values)}"
                        diffs.append(d)
    except FAILURES as exc:
        return fail(COMMAND, exc)
    for d in diffs:
        for warning in d.result.warnings:
            error(COMMAND, f"warning: {warning}")
    errors = [d for d in diffs if d.error is not None]
    different = any(d.different for d in diffs)
    if args.output in ("json", "yaml"):
        dump({"differences": different, "clusters": [d.as_dict() for d in diffs]}, args.output)
    else:
        print_text(diffs, sys.stdout, Painter(use_color(args.color, sys.stdout)))
    for d in errors:
        error(COMMAND, d.error or "failed")
    if errors:
        return EXIT_ERROR
    return EXIT_DIFFERENCES if different else EXIT_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = add_command(
        sub, COMMAND, "compare a HelmApp with the live Helm release per target cluster (exit 2 on differences)", __doc__
    )
    add_source_flags(p)
    p.add_argument(
        "--kubeconfig", help="kubeconfig of the local (management) cluster (default: $KUBECONFIG, ~/.kube/config)"
    )
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument(
        "--kubeconfig-secret-namespaces",
        action="append",
        default=[],
        metavar="NS[,NS...]",
        help="namespaces besides a Cluster's own its kubeConfigSecret may be read from (as the controller's flag)",
    )
    p.add_argument(
        "-o", "--output", choices=("text", "json", "yaml"), default="text", help="output format (default: text)"
    )
    p.add_argument(
        "--color", choices=("auto", "always", "never"), default="auto", help="colour the text output (default: auto)"
    )
    p.set_defaults(func=run)
