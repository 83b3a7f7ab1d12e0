"""A base for the unit tests' fakes of the reconciler's Kubernetes access (controller.base.KubeAccess): every
method a test does not care about does nothing, as on an empty cluster."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from helmops.controller.ledger import MemoryLedgerStore


class KubeFake:
    api: Any = None
    core: Any = None

    @property
    def _ledgers(self) -> MemoryLedgerStore:
        store = self.__dict__.get("_ledger_store")
        if store is None:
            store = self.__dict__["_ledger_store"] = MemoryLedgerStore()
        return store

    async def get_helmapp(self, namespace: str, name: str) -> dict[str, Any] | None:
        return None

    async def add_finalizer(self, obj: Mapping[str, Any]) -> None:
        return None

    async def remove_finalizer(self, obj: Mapping[str, Any]) -> None:
        return None

    async def patch_status(self, namespace: str, name: str, patch: Mapping[str, Any]) -> dict[str, Any] | None:
        return None

    async def patch_annotations(self, namespace: str, name: str, annotations: Mapping[str, str | None]) -> None:
        return None

    async def event(self, obj: Mapping[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
        return None

    async def list_clusters(self, namespace: str) -> list[dict[str, Any]]:
        return []

    async def list_cluster_groups(self, namespace: str) -> list[dict[str, Any]]:
        return []

    async def namespace_exists(self, name: str) -> bool:
        return False

    async def delete_namespace(self, name: str) -> bool:
        return False

    async def ensure_namespace_metadata(
        self, name: str, labels: Mapping[str, str], annotations: Mapping[str, str]
    ) -> bool:
        return False

    async def read_ledger(self, namespace: str, name: str) -> tuple[dict[str, str], str] | None:
        return await self._ledgers.read_ledger(namespace, name)

    async def write_ledger(
        self,
        namespace: str,
        name: str,
        data: Mapping[str, str],
        annotations: Mapping[str, str],
        resource_version: str | None,
    ) -> str:
        return await self._ledgers.write_ledger(namespace, name, data, annotations, resource_version)

    async def delete_ledger(self, namespace: str, name: str) -> None:
        await self._ledgers.delete_ledger(namespace, name)

    async def list_ledgers(self, namespace: str) -> dict[str, tuple[dict[str, str], str]]:
        return await self._ledgers.list_ledgers(namespace)
