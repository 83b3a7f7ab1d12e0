"""The controller's Kubernetes I/O (``kubernetes.aio``): HelmApps, finalizers, status, Events, namespaces."""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes.aio import client as kclient
from kubernetes.aio.client.exceptions import ApiException

from helmops import GROUP, KIND, PLURAL, VERSION
from helmops.kubeio.client import core_v1, custom_objects
from helmops.kubeio.latest import LatestHelmApps
from helmops.reconcile.release import KubeReleaseReader

log = logging.getLogger("helmops.controller")

__all__ = ["FINALIZER", "GROUP", "KIND", "PLURAL", "VERSION", "Conflict", "Kube"]

FINALIZER = "fleet.cattle.io/helmapp-finalizer"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"


class Conflict(Exception):
    """The object changed under us (resourceVersion test failed): requeue and re-read."""


def _now() -> str:
    return datetime.now(tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Kube:
    def __init__(self, api: Any) -> None:
        self.api = api
        self.core: Any = core_v1(api)
        self.custom: Any = custom_objects(api)
        self.releases = KubeReleaseReader(self.core)
        self._instance = socket.gethostname()
        #: the watched HelmApps' newest copies (watch events, refreshed by our writes' answers): kubeio.latest
        self.latest = LatestHelmApps()

    async def close(self) -> None:
        await self.api.close()

    async def get_helmapp(self, namespace: str, name: str, *, fresh: bool = False) -> dict[str, Any] | None:
        """The watched copy (kept current by the watch and our writes), else the server's; ``fresh`` always
        asks the server."""
        if not fresh and (held := self.latest.get((namespace, name))) is not None:
            return held
        try:
            obj = await self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except ApiException as exc:
            if exc.status == 404:
                self.latest.forget((namespace, name))
                return None
            raise
        self.latest.refresh(obj)
        return dict(obj)

    def _answered(self, out: Any) -> dict[str, Any] | None:
        """A write's answer (the object as written) is the newest copy there is."""
        if not isinstance(out, dict) or not out:
            return None
        self.latest.refresh(out)
        return dict(out)

    async def _json_patch(self, namespace: str, name: str, ops: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The patched object (None: it is gone)."""
        try:
            out = await self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, ops, _content_type=JSON_PATCH
            )
        except ApiException as exc:
            if exc.status in (409, 422):
                self.latest.forget((namespace, name))  # the retry reads the server
                raise Conflict(str(exc.reason)) from exc
            if exc.status == 404:
                self.latest.forget((namespace, name))
                return None
            raise
        return self._answered(out)

    async def add_finalizer(self, obj: Mapping[str, Any]) -> dict[str, Any] | None:
        """The object with the finalizer, as the patch returned it (None: it is gone)."""
        meta = obj["metadata"]
        fins = list(meta.get("finalizers") or [])
        if FINALIZER in fins:
            return dict(obj)
        rv = {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]}
        op: dict[str, Any]
        if fins:
            op = {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}
        else:
            op = {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}
        return await self._json_patch(meta["namespace"], meta["name"], [rv, op])

    async def remove_finalizer(self, obj: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        fins = list(meta.get("finalizers") or [])
        if FINALIZER not in fins:
            return
        i = fins.index(FINALIZER)
        ops = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
            {"op": "test", "path": f"/metadata/finalizers/{i}", "value": FINALIZER},
            {"op": "remove", "path": f"/metadata/finalizers/{i}"},
        ]
        await self._json_patch(meta["namespace"], meta["name"], ops)

    # --- HelmApp status: the one writer (the reconciler's status, the poller's Polled condition) ---------
    async def patch_status(
        self, namespace: str, name: str, patch: Mapping[str, Any], *, resource_version: str | None = None
    ) -> dict[str, Any] | None:
        """Merge-patches the HelmApp's status subresource; returns the object as written, or None when the
        HelmApp is gone (404). With ``resource_version`` the patch applies only to that version of the
        object (for a patch that replaces a list such as ``conditions``): a newer one raises
        :class:`Conflict` (409) — re-read and retry."""
        body = dict(patch)
        if resource_version is not None:
            body["metadata"] = {**dict(body.get("metadata") or {}), "resourceVersion": resource_version}
        try:
            out = await self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, PLURAL, name, body, _content_type=MERGE_PATCH
            )
        except ApiException as exc:
            if exc.status == 404:
                self.latest.forget((namespace, name))
                return None
            if exc.status == 409:
                self.latest.forget((namespace, name))  # the retry reads the server
                raise Conflict(str(exc.reason)) from exc
            raise
        return self._answered(out) or {}

    async def event(self, obj: Mapping[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
        """A core/v1 Event on the HelmApp; failures to post are logged, never fatal."""
        meta = obj["metadata"]
        now = _now()
        body: Any = kclient.CoreV1Event.from_dict(
            {
                "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
                "involvedObject": {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": KIND,
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "uid": meta.get("uid"),
                    "resourceVersion": meta.get("resourceVersion"),
                },
                "reason": reason,
                "message": message[:1024],
                "type": "Warning" if warning else "Normal",
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
                "source": {"component": "helmops"},
                "reportingComponent": "helmops",
                "reportingInstance": self._instance,
            }
        )
        try:
            await self.core.create_namespaced_event(meta["namespace"], body)
        except (ApiException, ValueError) as exc:
            log.warning("could not post Event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], exc)

    async def namespace_exists(self, name: str) -> bool:
        """Whether a namespace exists, read with the controller's identity: it only decides whether helm is
        asked to create it (a tenant's serviceAccount usually may not read cluster-scoped namespaces)."""
        try:
            await self.core.read_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def delete_namespace(self, name: str) -> bool:
        """True if a delete was issued (False when it is already gone)."""
        try:
            await self.core.delete_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def ensure_namespace_metadata(
        self, name: str, labels: Mapping[str, str], annotations: Mapping[str, str]
    ) -> bool:
        """Adds/overwrites the given labels and annotations on a namespace (others are kept). True if a
        patch was needed; False if already so or the namespace does not exist."""
        try:
            ns = await self.core.read_namespace(name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        have_l = dict(ns.metadata.labels or {})
        have_a = dict(ns.metadata.annotations or {})
        want_l = {k: str(v) for k, v in labels.items() if have_l.get(k) != str(v)}
        want_a = {k: str(v) for k, v in annotations.items() if have_a.get(k) != str(v)}
        if not want_l and not want_a:
            return False
        meta: dict[str, Any] = {}
        if want_l:
            meta["labels"] = want_l
        if want_a:
            meta["annotations"] = want_a
        await self.core.patch_namespace(name, {"metadata": meta}, _content_type=MERGE_PATCH)
        return True

    async def read_config_map(self, namespace: str, name: str) -> dict[str, str] | None:
        try:
            cm = await self.core.read_namespaced_config_map(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(cm.data or {})

    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        """Secret data, base64 as stored."""
        try:
            s = await self.core.read_namespaced_secret(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(s.data or {})

    # --- Fleet Clusters and ClusterGroups (multi-cluster targeting) ---------------------------------
    async def _list(self, namespace: str, plural: str) -> list[dict[str, Any]]:
        """Objects of a Fleet kind in one namespace; none when the CRD is not installed."""
        try:
            out = await self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
        except ApiException as exc:
            if exc.status == 404:
                return []
            raise
        return [dict(item) for item in out.get("items") or []]

    async def list_clusters(self, namespace: str) -> list[dict[str, Any]]:
        return await self._list(namespace, "clusters")

    async def list_cluster_groups(self, namespace: str) -> list[dict[str, Any]]:
        return await self._list(namespace, "clustergroups")

    async def patch_annotations(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> None:
        """Merge-patches HelmApp annotations (None removes one); a vanished HelmApp is ignored."""
        body = {"metadata": {"annotations": dict(annotations)}}
        try:
            out = await self.custom.patch_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, name, body, _content_type=MERGE_PATCH
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.latest.forget((namespace, name))
            return
        self._answered(out)

    # --- the ownership ledger (helmops.controller.ledger): ConfigMaps in the controller's own namespace ----
    async def read_ledger(self, namespace: str, name: str) -> tuple[dict[str, str], str] | None:
        try:
            cm = await self.core.read_namespaced_config_map(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return dict(cm.data or {}), str(cm.metadata.resource_version)

    async def write_ledger(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        annotations: Mapping[str, str],
        resource_version: str | None,
    ) -> str:
        from helmops.controller.ledger import LEDGER_LABEL, LedgerConflict

        meta: dict[str, Any] = {
            "name": name,
            "namespace": namespace,
            "labels": {LEDGER_LABEL: "true", "app.kubernetes.io/managed-by": "helmops"},
            "annotations": dict(annotations),
        }
        if resource_version is not None:
            meta["resourceVersion"] = resource_version
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": dict(data)}
        for attempt in range(2):
            try:
                if resource_version is None:
                    out = await self.core.create_namespaced_config_map(namespace, body)
                else:
                    out = await self.core.replace_namespaced_config_map(name, namespace, body)
            except ApiException as exc:
                if exc.status == 409:
                    raise LedgerConflict(name) from exc
                if exc.status == 404 and resource_version is None and attempt == 0:
                    # outside a cluster (tests, a controller run by hand) the system namespace may not exist
                    await self._ensure_namespace(namespace)
                    continue
                if exc.status == 404:
                    raise LedgerConflict(name) from exc  # deleted since read: re-read and create
                raise
            return str(out.metadata.resource_version)
        raise LedgerConflict(name)

    async def list_ledgers(self, namespace: str) -> dict[str, tuple[dict[str, str], str]]:
        from helmops.controller.ledger import LEDGER_LABEL

        found = await self.core.list_namespaced_config_map(namespace, label_selector=f"{LEDGER_LABEL}=true")
        return {
            str(cm.metadata.name): (dict(cm.data or {}), str(cm.metadata.resource_version)) for cm in found.items or []
        }

    async def delete_ledger(self, namespace: str, name: str) -> None:
        try:
            await self.core.delete_namespaced_config_map(name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise

    async def _ensure_namespace(self, name: str) -> None:
        try:
            await self.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        except ApiException as exc:
            if exc.status != 409:
                raise
        log.info("created namespace %s for the controller's ownership ledger", name)
