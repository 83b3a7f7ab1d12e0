"""``helmops promote``: copy the chart version a source HelmApp runs everywhere into a target HelmApp.

The source must be Ready everywhere: ``status.version`` set, the Ready condition True, every cluster ready
(``readyClusters == desiredReadyClusters > 0``) and, when the status records it, ``observedGeneration``
equal to the current generation (so a Ready left over from an older spec does not count). That version is
written to the target's ``spec.helm.version`` (a merge patch guarded by the target's resourceVersion).
``--wait`` then waits until the target reports the same: Ready everywhere at that version.

Exit codes: 0 promoted (or already at that version; with --wait: and Ready), 1 refused (source not Ready
everywhere), failed, or --wait timed out; 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from helmops import GROUP, PLURAL, VERSION
from helmops.api.parse import lenient_helmapp
from helmops.cli.common import (
    EXIT_OK,
    FAILURES,
    CliError,
    Progress,
    add_command,
    add_kube_flags,
    api_error,
    dump,
    error,
    fail,
    kube_session,
    split_ref,
)
from helmops.promotion.readiness import not_ready_reasons, promotion_patch

COMMAND = "promote"


def _get(custom: Any, namespace: str, name: str) -> dict[str, Any]:
    from kubernetes.client.exceptions import ApiException

    try:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as exc:
        raise api_error(exc, f"HelmApp {namespace}/{name}") from None
    return obj


def _wait(custom: Any, namespace: str, name: str, version: str, timeout: float) -> list[str]:
    """Watch the target until it is Ready everywhere at ``version``; the remaining reasons on timeout."""
    from kubernetes import watch as _watch_module

    watch_module: Any = _watch_module
    from kubernetes.client.exceptions import ApiException

    progress = Progress()
    deadline = time.monotonic() + timeout
    obj = _get(custom, namespace, name)
    reasons = not_ready_reasons(obj, version)
    try:
        while reasons:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return reasons
            progress.step(f"waiting for {namespace}/{name}: {'; '.join(reasons)}")
            w: Any = watch_module.Watch()
            try:
                for event in w.stream(
                    custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    field_selector=f"metadata.name={name}",
                    resource_version=obj["metadata"].get("resourceVersion"),
                    timeout_seconds=max(1, min(int(remaining), 60)),
                ):
                    if event["type"] == "DELETED":
                        raise CliError(f"HelmApp {namespace}/{name} was deleted while waiting")
                    if event["type"] not in ("ADDED", "MODIFIED"):
                        continue
                    obj = event["object"]
                    reasons = not_ready_reasons(obj, version)
                    if not reasons:
                        break
                    progress.step(f"waiting for {namespace}/{name}: {'; '.join(reasons)}")
            except ApiException as exc:
                if exc.status != 410:
                    raise api_error(exc, f"watching HelmApp {namespace}/{name}") from None
                obj = _get(custom, namespace, name)
                reasons = not_ready_reasons(obj, version)
            finally:
                w.stop()
    finally:
        progress.done()
    return reasons


def run(args: argparse.Namespace) -> int:
    from kubernetes.client.exceptions import ApiException

    from helmops.kubeio.client import sync_custom_objects

    result: dict[str, Any] = {}
    try:
        src_ns, src_name = split_ref(args.source)
        dst_ns, dst_name = split_ref(args.target)
        if (src_ns, src_name) == (dst_ns, dst_name):
            raise CliError("--from and --to name the same HelmApp")
        with kube_session(args.kubeconfig, args.context) as api:
            custom = sync_custom_objects(api)
            source = _get(custom, src_ns, src_name)
            reasons = not_ready_reasons(source)
            if reasons:
                raise CliError(
                    f"refusing to promote: source HelmApp {src_ns}/{src_name} is not Ready everywhere: "
                    + "; ".join(reasons)
                )
            version = str(source["status"]["version"])
            target = _get(custom, dst_ns, dst_name)
            # read typed where it enters (leniently: promoting into a HelmApp the controller refuses still
            # works); the patch below is written in the stored shape, guarded by what was read
            target_spec = lenient_helmapp(target).spec
            old = str(target_spec.helm.version or "")
            for index, entry in enumerate(target_spec.targets):
                pinned = entry.helm.version
                if pinned:
                    error(
                        COMMAND,
                        f"warning: {dst_ns}/{dst_name} spec.targets[{index}].helm.version pins {pinned}; "
                        "clusters of that target keep it (only spec.helm.version is changed)",
                    )
            result = {
                "from": f"{src_ns}/{src_name}",
                "to": f"{dst_ns}/{dst_name}",
                "version": version,
                "previous": old,
                "changed": old != version,
            }
            if old != version and not args.dry_run:
                patch = promotion_patch(target, version)
                try:
                    custom.patch_namespaced_custom_object(GROUP, VERSION, dst_ns, PLURAL, dst_name, patch)
                except ApiException as exc:
                    if exc.status == 409:
                        raise CliError(f"HelmApp {dst_ns}/{dst_name} changed while promoting; run again") from None
                    raise api_error(exc, f"HelmApp {dst_ns}/{dst_name}") from None
            if args.output == "text":
                if old == version:
                    print(f"{dst_ns}/{dst_name}: spec.helm.version is already {version} (unchanged)")
                else:
                    verb = "would change" if args.dry_run else "changed"
                    print(
                        f"{dst_ns}/{dst_name}: spec.helm.version {verb} {old or '(empty)'} -> {version} "
                        f"(from {src_ns}/{src_name})"
                    )
            if args.wait and not args.dry_run:
                remaining = _wait(custom, dst_ns, dst_name, version, args.timeout)
                result["ready"] = not remaining
                if remaining:
                    if args.output != "text":
                        dump(result, args.output)
                    raise CliError(
                        f"timed out after {args.timeout:g}s waiting for {dst_ns}/{dst_name} to be Ready at "
                        f"{version}: " + "; ".join(remaining)
                    )
                if args.output == "text":
                    print(f"{dst_ns}/{dst_name}: Ready at {version} on every cluster")
    except FAILURES as exc:
        return fail(COMMAND, exc)
    if args.output != "text":
        dump(result, args.output)
    sys.stdout.flush()
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = add_command(
        sub,
        COMMAND,
        "copy the version a HelmApp runs Ready everywhere into another HelmApp's spec.helm.version",
        __doc__,
    )
    p.add_argument("--from", dest="source", required=True, metavar="NS/NAME", help="the HelmApp to promote from")
    p.add_argument("--to", dest="target", required=True, metavar="NS/NAME", help="the HelmApp to promote to")
    p.add_argument("--wait", action="store_true", help="wait until the target is Ready everywhere at that version")
    p.add_argument(
        "--timeout", type=float, default=600, metavar="SECONDS", help="with --wait: give up after (default: 600)"
    )
    p.add_argument("--dry-run", action="store_true", help="show what would change; change nothing")
    add_kube_flags(p)
    p.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    p.set_defaults(func=run)
