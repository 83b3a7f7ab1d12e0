"""api-cost: what each kind of API call the controller makes per install costs the control plane.

On an idle bench control plane, ``--n`` calls of each kind one after the other through the controller's own
client (``helmops.kubeio.client``), and the CPU of kube-apiserver + etcd per call (the same ``plane_cpu`` as
``vs-flux``); one second of idle is added to each window so late work (watch cache, etcd compaction) lands
in it, and the idle rate is reported so it can be taken out. The HelmApps are applied the way every
scenario applies them (``kubectl apply --server-side``), which is the first row.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from support.tools import Tools

from . import report
from .options import Options
from .stack import Stack, loadavg, namespace_doc, say
from .vsflux import plane_cpu

COLUMNS = ("call", "calls", "plane_cpu_ms_per_call")
NS = "apicost"
GROUP, VERSION, PLURAL = "fleet.cattle.io", "v1alpha1", "helmapps"


def _helmapp(i: int) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "HelmApp",
        "metadata": {"name": f"app-{i:04d}", "namespace": NS},
        "spec": {
            "helm": {
                "repo": "http://127.0.0.1:1",
                "chart": "hello",
                "version": "1.0.0",
                "values": {"message": f"m{i}"},
            },
            "defaultNamespace": f"{NS}-rel",
        },
    }


def _calls(co: Any, core: Any) -> list[tuple[str, Callable[[int], Awaitable[Any]]]]:
    """The calls one install makes besides helm's, each as a function of the HelmApp's index."""
    return [
        (
            "HelmApp finalizer JSON patch",
            lambda i: co.patch_namespaced_custom_object(
                GROUP, VERSION, NS, PLURAL, f"app-{i:04d}",
                [{"op": "add", "path": "/metadata/finalizers", "value": ["bench.helmops/apicost"]}],
                _content_type="application/json-patch+json",
            ),
        ),
        (
            "HelmApp status merge patch",
            lambda i: co.patch_namespaced_custom_object_status(
                GROUP, VERSION, NS, PLURAL, f"app-{i:04d}",
                {"status": {"summary": {"ready": 1, "desiredReady": 1}, "display": {"readyBundleDeployments": "1/1"},
                            "conditions": [{"type": "Ready", "status": "True"}]}},
                _content_type="application/merge-patch+json",
            ),
        ),
        (
            "ConfigMap create (ledger)",
            lambda i: core.create_namespaced_config_map(
                NS, {"metadata": {"name": f"ledger-{i:04d}"}, "data": {"releases": '[["local","r","a"]]'}}
            ),
        ),
        (
            "Event create",
            lambda i: core.create_namespaced_event(
                NS,
                {"metadata": {"generateName": "app."}, "reason": "Installed", "message": "installed", "type": "Normal",
                 "involvedObject": {"kind": "HelmApp", "namespace": NS, "name": f"app-{i:04d}"}},
            ),
        ),
        ("Secret LIST by label (release read)",
         lambda i: core.list_namespaced_secret(NS, label_selector=f"owner=helm,name=app-{i:04d}")),
        ("HelmApp GET", lambda i: co.get_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, f"app-{i:04d}")),
    ]  # fmt: skip


def run(tools: Tools, st: Stack, opts: Options) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    assert st.cp is not None
    n = opts.largest
    st.apply([namespace_doc(NS), namespace_doc(f"{NS}-rel")], f"{NS}-setup")
    say(f"api-cost: {n} calls of each kind (load {loadavg()})")

    def row(call: str, before: float) -> dict[str, Any]:
        """One kind's figure, read after the caller's second of idle."""
        return {"call": call, "calls": n, "plane_cpu_ms_per_call": round(1000 * (plane_cpu(st) - before) / n, 2)}

    before = plane_cpu(st)
    st.apply([_helmapp(i) for i in range(n)], NS)
    time.sleep(1.0)
    rows = [row("HelmApp server-side apply (kubectl)", before)]

    async def calls() -> None:
        from helmops.kubeio.client import api_client, core_v1, custom_objects

        assert st.cp is not None
        api = await api_client(st.cp.kubeconfig)
        try:
            for name, call in _calls(custom_objects(api), core_v1(api)):
                before = plane_cpu(st)
                for i in range(n):
                    await call(i)
                await asyncio.sleep(1.0)
                rows.append(row(name, before))
        finally:
            await api.close()

    asyncio.run(calls())
    before = plane_cpu(st)
    time.sleep(5.0)
    idle = round(1000 * (plane_cpu(st) - before) / 5.0, 1)
    print(report.table(rows, COLUMNS))
    say(f"api-cost: idle control plane {idle} ms CPU per second (1 s of it is inside each row)")
    return {"idle_plane_cpu_ms_per_second": idle, "calls": rows}, rows
