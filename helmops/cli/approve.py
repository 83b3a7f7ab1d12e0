"""``helmops plan NS/NAME`` and ``helmops approve NS/NAME --plan HASH``: the plan the controller holds for a
HelmApp annotated ``helmops.cattle.io/require-approval``, and approving exactly that plan.

``plan`` prints what the controller computed (the ``helmops.cattle.io/plan`` annotation): per cluster the
action, chart and version from → to, the value keys and objects added, changed and removed (no values), and
the plan hash (``planHash`` with ``-o json``). ``approve`` records the hash in
``helmops.cattle.io/approved-plan``; with ``--override`` also in ``helmops.cattle.io/window-override``, so
that plan runs now even outside its maintenance windows. Approving a hash that is not the current plan's is
refused (exit 1): it would approve nothing. Whoever may patch the HelmApp may approve it.

Exit codes: 0 shown/approved, 1 error or stale hash, 2 usage error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
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
    kube_session,
    split_ref,
)
from helmops.promotion import plan as plans
from helmops.promotion.settings import APPROVED_PLAN, OVERRIDE, PLAN, REQUIRE_APPROVAL, plan_hash_text


def _get(custom: Any, namespace: str, name: str) -> dict[str, Any]:
    from kubernetes.client.exceptions import ApiException

    try:
        obj: dict[str, Any] = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
    except ApiException as exc:
        raise api_error(exc, f"HelmApp {namespace}/{name}") from None
    return obj


def plan_view(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The plan as ``helmops plan -o json`` prints it."""
    meta = obj.get("metadata") or {}
    ann = meta.get("annotations") or {}
    stored = plans.load(ann.get(PLAN))
    approved = plan_hash_text(ann, APPROVED_PLAN)
    return {
        "helmapp": f"{meta.get('namespace')}/{meta.get('name')}",
        "requireApproval": str(ann.get(REQUIRE_APPROVAL, "")).lower() == "true",
        "planHash": stored["planHash"],
        "approved": bool(stored["planHash"]) and approved == stored["planHash"],
        "approvedPlan": approved,
        "summary": plans.plan_summary(stored) if stored["planHash"] else "",
        "clusters": [stored["clusters"][k] for k in sorted(stored["clusters"])],
    }


def _lines(label: str, items: Mapping[str, Any] | None) -> list[str]:
    if items is None:
        return [f"    {label}: not computed"]
    out = []
    for kind, sign in (("added", "+"), ("changed", "~"), ("removed", "-")):
        out += [f"    {label} {sign} {item}" for item in items.get(kind) or ()]
    return out or [f"    {label}: no changes"]


def print_plan(view: Mapping[str, Any]) -> None:
    if not view["planHash"]:
        print(f"{view['helmapp']}: no plan awaits approval")
        return
    state = "approved" if view["approved"] else "awaiting approval" if view["requireApproval"] else "held"
    print(f"{view['helmapp']}: plan {view['planHash']} ({state})")
    for entry in view["clusters"]:
        done = " [applied]" if entry.get("applied") else ""
        print(
            f"  cluster {entry.get('cluster')}: {entry.get('action')} release {entry.get('release')}, "
            f"chart {entry.get('chart')} {entry.get('from') or '-'} -> {entry.get('to') or '-'}{done}"
        )
        print("\n".join(_lines("value", entry.get("values")) + _lines("object", entry.get("objects"))))
    if not view["approved"]:
        print(f"approve with: helmops approve {view['helmapp']} --plan {view['planHash']}")


def run_plan(args: argparse.Namespace) -> int:
    from helmops.kubeio.client import sync_custom_objects

    try:
        namespace, name = split_ref(args.helmapp)
        with kube_session(args.kubeconfig, args.context) as api:
            view = plan_view(_get(sync_custom_objects(api), namespace, name))
    except FAILURES as exc:
        return fail("plan", exc)
    if args.output == "text":
        print_plan(view)
    else:
        dump(view, args.output)
    sys.stdout.flush()
    return EXIT_OK


def run_approve(args: argparse.Namespace) -> int:
    from kubernetes.client.exceptions import ApiException

    from helmops.kubeio.client import sync_custom_objects

    try:
        namespace, name = split_ref(args.helmapp)
        wanted = args.plan.strip()
        with kube_session(args.kubeconfig, args.context) as api:
            custom = sync_custom_objects(api)
            obj = _get(custom, namespace, name)
            current = plan_view(obj)["planHash"]
            if wanted != current:
                raise CliError(
                    f"plan {wanted} is not the plan of {namespace}/{name} "
                    f"(current: {current or 'none'}); nothing approved. See: helmops plan {namespace}/{name}"
                )
            annotations = {APPROVED_PLAN: wanted} | ({OVERRIDE: wanted} if args.override else {})
            patch = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"], "annotations": annotations}}
            try:
                custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)
            except ApiException as exc:
                if exc.status == 409:
                    raise CliError(f"HelmApp {namespace}/{name} changed while approving; run again") from None
                raise api_error(exc, f"HelmApp {namespace}/{name}") from None
    except FAILURES as exc:
        return fail("approve", exc)
    result = {"helmapp": f"{namespace}/{name}", "approvedPlan": wanted, "override": bool(args.override)}
    if args.output == "text":
        extra = " (runs now, outside maintenance windows)" if args.override else ""
        print(f"{namespace}/{name}: plan {wanted} approved{extra}")
    else:
        dump(result, args.output)
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = add_command(sub, "plan", "show the plan a HelmApp awaits approval for, and its hash", __doc__)
    p.add_argument("helmapp", metavar="NS/NAME")
    add_kube_flags(p)
    p.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    p.set_defaults(func=run_plan)
    a = add_command(sub, "approve", "approve exactly the plan with this hash", __doc__)
    a.add_argument("helmapp", metavar="NS/NAME")
    a.add_argument("--plan", required=True, metavar="HASH", help="the plan hash `helmops plan` shows")
    a.add_argument("--override", action="store_true", help="also run it now, outside maintenance windows")
    add_kube_flags(a)
    a.add_argument("-o", "--output", choices=("text", "json", "yaml"), default="text")
    a.set_defaults(func=run_approve)


__all__ = ["add_parser", "plan_view", "print_plan"]
