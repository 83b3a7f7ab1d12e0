"""``helmops status``: HelmApps as their ``.status`` describes them — a table of chart, version, ready clusters,
state and message; for one HelmApp, a row per cluster. ``--watch`` keeps the table current (Kubernetes watch
API): on a terminal the table is redrawn, otherwise each change is printed as it comes.

Exit codes: 0 shown, 1 error (e.g. the HelmApp does not exist, the cluster is unreachable), 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from helmops import GROUP, PLURAL, VERSION
from helmops.cli.common import (
    EXIT_OK,
    FAILURES,
    CliError,
    add_command,
    add_kube_flags,
    api_error,
    dump,
    fail,
    is_tty,
    kube_session,
    split_ref,
    table,
)

COMMAND = "status"
#: Fleet's per-cluster resource states, worst first (resources[].perClusterState keys).
_CLUSTER_STATES = (
    ("waitApplied", "WaitApplied"),
    ("modified", "Modified"),
    ("missing", "Missing"),
    ("orphaned", "Orphaned"),
    ("notReady", "NotReady"),
    ("pending", "Pending"),
    ("unknown", "Unknown"),
)


def condition(obj: Mapping[str, Any], ctype: str) -> Mapping[str, Any]:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(c, Mapping) and c.get("type") == ctype:
            return c
    return {}


def state_and_message(obj: Mapping[str, Any]) -> tuple[str, str]:
    """The state column: Fleet's display.state, else Ready/NotReady from the Ready condition, else Pending
    (no status yet); NotAccepted when the spec or chart was refused."""
    status = obj.get("status") or {}
    display = status.get("display") or {}
    accepted, ready = condition(obj, "Accepted"), condition(obj, "Ready")
    if accepted.get("status") == "False":
        return "NotAccepted", str(accepted.get("message") or display.get("message") or "")
    if display.get("state"):
        return str(display["state"]), str(display.get("message") or ready.get("message") or "")
    if ready.get("status") == "True":
        return "Ready", ""
    if ready:
        return "NotReady", str(ready.get("message") or "")
    return "Pending", ""


def summary_row(obj: Mapping[str, Any]) -> dict[str, Any]:
    """One HelmApp as read from the API server: its spec parsed there (leniently: a HelmApp the controller
    refuses is still shown), its status as stored."""
    from helmops.api.parse import lenient_helmapp

    app = lenient_helmapp(obj)
    helm = app.spec.helm
    status = obj.get("status") or {}
    state, message = state_and_message(obj)
    return {
        "namespace": app.metadata.namespace,
        "name": app.metadata.name,
        "chart": helm.chart or helm.repo or "",
        "specVersion": helm.version or "",
        "version": status.get("version") or "",
        "readyClusters": int(status.get("readyClusters") or 0),
        "desiredReadyClusters": int(status.get("desiredReadyClusters") or 0),
        "state": state,
        "message": message,
    }


def cluster_rows(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per cluster from perClusterResourceCounts and resources[].perClusterState; a HelmApp whose
    status has no per-cluster detail (the local-only controller) gets one row for its local cluster."""
    status = obj.get("status") or {}
    counts: Mapping[str, Any] = status.get("perClusterResourceCounts") or {}
    states: dict[str, str] = {}
    for resource in status.get("resources") or []:
        per = (resource or {}).get("perClusterState") or {}
        for key, name in reversed(_CLUSTER_STATES):
            for cluster in per.get(key) or []:
                states[cluster] = name
        for cluster in per.get("ready") or []:
            states.setdefault(cluster, "Ready")
    clusters = sorted(set(counts) | set(states))
    if not clusters:
        row = summary_row(obj)
        local = f"{row['namespace']}/local"
        return [{"cluster": local, "resources": "", "state": row["state"], "message": row["message"]}]
    rows = []
    for cluster in clusters:
        c = counts.get(cluster) or {}
        resources = f"{int(c.get('ready') or 0)}/{int(c.get('desiredReady') or 0)}" if c else ""
        state = states.get(cluster) or ("Ready" if c and c.get("ready") == c.get("desiredReady") else "NotReady")
        rows.append({"cluster": cluster, "resources": resources, "state": state, "message": ""})
    return rows


def conditions(obj: Mapping[str, Any]) -> list[dict[str, str]]:
    """The status conditions, in the order written: type, status, reason, message."""
    out = []
    for c in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(c, Mapping):
            out.append({k: str(c.get(k) or "") for k in ("type", "status", "reason", "message")})
    return out


def promotion_waits(
    obj: Mapping[str, Any], others: Mapping[tuple[str, str], Mapping[str, Any]]
) -> list[dict[str, str]]:
    """What the HelmApp waits for (approval, window, soak; helmops.promotion.view)."""
    from datetime import UTC, datetime

    from helmops.promotion.keys import PROMOTE_FROM
    from helmops.promotion.view import waits

    meta = obj.get("metadata") or {}
    source = str((meta.get("annotations") or {}).get(PROMOTE_FROM) or "").rpartition("/")[2]
    return waits(obj, others.get((str(meta.get("namespace")), source)) if source else None, datetime.now(UTC))


def _print(
    items: Sequence[Mapping[str, Any]],
    args: argparse.Namespace,
    one: bool,
    others: Mapping[tuple[str, str], Mapping[str, Any]] | None = None,
) -> None:
    known = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in items} | dict(others or {})
    if args.output in ("json", "yaml"):
        if one:
            obj = items[0]
            detail = {"clusters": cluster_rows(obj), "conditions": conditions(obj)}
            dump({**summary_row(obj), **detail, "waiting": promotion_waits(obj, known)}, args.output)
        else:
            dump({"items": [summary_row(o) for o in items]}, args.output)
        return
    if one:
        row = summary_row(items[0])
        table(
            ["namespace", "name", "chart", "version", "clusters-ready", "state", "message"],
            [_summary_cells(row, True)],
        )
        print()
        table(["cluster", "resources-ready", "state", "message"], [list(r.values()) for r in cluster_rows(items[0])])
        conds = conditions(items[0])
        if conds:
            print()
            table(["condition", "status", "reason", "message"], [list(c.values()) for c in conds])
        waiting = promotion_waits(items[0], known)
        if waiting:
            print()
            table(["cluster", "waits-for", "until", "detail"], [list(w.values()) for w in waiting])
        return
    wide = args.all_namespaces
    headers = ["namespace"] if wide else []
    headers += ["name", "chart", "version", "clusters-ready", "state", "message"]
    if not items:
        sys.stderr.write("No HelmApps found.\n")
        return
    table(headers, [_summary_cells(summary_row(o), wide) for o in items])


def _summary_cells(row: Mapping[str, Any], with_namespace: bool) -> list[str]:
    cells = [row["namespace"]] if with_namespace else []
    version = row["version"] or "-"
    return [
        *cells,
        row["name"],
        row["chart"],
        version,
        f"{row['readyClusters']}/{row['desiredReadyClusters']}",
        row["state"],
        row["message"],
    ]


def default_namespace(args: argparse.Namespace) -> str:
    """-n, else the kubeconfig context's namespace, else ``default``."""
    if args.namespace:
        return str(args.namespace)
    try:
        from helmops.kubeio.client import context_namespace

        return context_namespace(args.kubeconfig, args.context) or "default"
    except Exception:
        return "default"


def _list(custom: Any, args: argparse.Namespace, namespace: str, name: str | None) -> tuple[list[dict[str, Any]], str]:
    """The HelmApps to show and the resourceVersion to watch from."""
    from kubernetes.client.exceptions import ApiException

    try:
        if name is not None:
            obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            return [obj], str(obj["metadata"].get("resourceVersion") or "")
        if args.all_namespaces:
            out = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
        else:
            out = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)
    except ApiException as exc:
        if name is None and exc.status == 404:
            raise CliError("HelmApps: not found (is the helmapps.fleet.cattle.io CRD installed?)") from None
        what = f"HelmApp {namespace}/{name}" if name else "HelmApps"
        raise api_error(exc, what) from None
    items = sorted(out.get("items") or [], key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))
    return items, str((out.get("metadata") or {}).get("resourceVersion") or "")


def _watch(custom: Any, args: argparse.Namespace, namespace: str, name: str | None) -> None:
    from kubernetes import watch as _watch_module

    watch_module: Any = _watch_module
    from kubernetes.client.exceptions import ApiException

    items, rv = _list(custom, args, namespace, name)
    current = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in items}
    tty = is_tty(sys.stdout)
    deadline = time.monotonic() + args.watch_timeout if args.watch_timeout else None

    def redraw() -> None:
        if tty:
            sys.stdout.write("\x1b[H\x1b[2J")
        shown = sorted(current.values(), key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))
        if name is not None and not shown:
            sys.stdout.write(f"HelmApp {namespace}/{name} was deleted\n")
        elif shown or name is None:
            _print(shown, args, name is not None)
        sys.stdout.flush()

    redraw()
    while deadline is None or time.monotonic() < deadline:
        remaining = int(deadline - time.monotonic()) if deadline is not None else 300
        if remaining <= 0:
            break
        kwargs: dict[str, Any] = {"resource_version": rv, "timeout_seconds": min(remaining, 300)}
        if name is not None:
            kwargs["field_selector"] = f"metadata.name={name}"
        fn: Any = custom.list_cluster_custom_object if args.all_namespaces else custom.list_namespaced_custom_object
        fargs: tuple[str, ...] = (
            (GROUP, VERSION, PLURAL) if args.all_namespaces else (GROUP, VERSION, namespace, PLURAL)
        )
        w: Any = watch_module.Watch()
        try:
            for event in w.stream(fn, *fargs, **kwargs):
                obj = event["object"]
                kind = event["type"]
                if kind == "ERROR":
                    break
                if kind == "BOOKMARK":
                    rv = str(obj["metadata"].get("resourceVersion") or rv)
                    continue
                rv = str(obj["metadata"].get("resourceVersion") or rv)
                key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
                if kind == "DELETED":
                    current.pop(key, None)
                else:
                    current[key] = obj
                if not tty:
                    sys.stdout.write(f"--- {kind.lower()} {key[0]}/{key[1]}\n")
                redraw()
                if deadline is not None and time.monotonic() >= deadline:
                    break
        except ApiException as exc:
            if exc.status == 410:  # resourceVersion too old: list again
                items, rv = _list(custom, args, namespace, name)
                current = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in items}
                continue
            raise api_error(exc, "watching HelmApps") from None
        finally:
            w.stop()


def _sources(custom: Any, items: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], Mapping[str, Any]]:
    """The promotion source of a shown HelmApp (helmops.cattle.io/promote-from), when it can be read."""
    from helmops.promotion.keys import PROMOTE_FROM

    out: dict[tuple[str, str], Mapping[str, Any]] = {}
    for obj in items:
        ns = obj["metadata"]["namespace"]
        source = str((obj["metadata"].get("annotations") or {}).get(PROMOTE_FROM) or "").rpartition("/")[2]
        if source:
            try:
                out[(ns, source)] = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, source)
            except Exception:
                continue
    return out


def run(args: argparse.Namespace) -> int:
    from helmops.kubeio.client import sync_custom_objects

    try:
        if args.ref and args.all_namespaces:
            raise CliError("give either NAMESPACE/NAME or -A, not both")
        namespace = default_namespace(args)
        name: str | None = None
        if args.ref:
            namespace, name = split_ref(args.ref, namespace)
        with kube_session(args.kubeconfig, args.context) as api:
            custom = sync_custom_objects(api)
            if args.watch:
                try:
                    _watch(custom, args, namespace, name)
                except KeyboardInterrupt:
                    pass
            else:
                items, _ = _list(custom, args, namespace, name)
                _print(items, args, name is not None, _sources(custom, items) if name is not None else None)
    except FAILURES as exc:
        return fail(COMMAND, exc)
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = add_command(
        sub, COMMAND, "show HelmApps (or one, per cluster) with version, ready clusters, state and message", __doc__
    )
    p.add_argument("ref", nargs="?", metavar="NAMESPACE/NAME", help="one HelmApp (NAME alone uses -n)")
    add_kube_flags(p)
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="HelmApps of every namespace")
    scope.add_argument("-n", "--namespace", help="namespace (default: the kubeconfig context's, else default)")
    p.add_argument("-w", "--watch", action="store_true", help="keep watching and refresh on every change")
    p.add_argument(
        "--watch-timeout",
        type=float,
        default=0,
        metavar="SECONDS",
        help="with --watch: stop after this many seconds (default: until interrupted)",
    )
    p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    p.set_defaults(func=run)
