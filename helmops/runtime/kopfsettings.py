"""kopf's settings for ``helmops run``: kopf watches, logs in and serves liveness; reconciles are ours.

Every HelmApp event goes through kopf's cause detection, which deep-copies the whole object into a "diff
base" (the essence of its last handled state) for change handlers. helmops registers only ``on.event``
handlers, which never read it, so that copy — the largest part of kopf's work per event — is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import kopf


class NoDiffBase(kopf.DiffBaseStorage):
    """A diff base that keeps nothing: valid only while no ``on.create/update/resume`` handler exists."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def operator_settings() -> kopf.OperatorSettings:
    ks = kopf.OperatorSettings()
    ks.posting.enabled = False
    ks.peering.standalone = True
    ks.watching.server_timeout = 300
    ks.watching.client_timeout = 330
    ks.watching.connect_timeout = 30
    ks.networking.request_timeout = 120
    ks.execution.max_workers = 2
    ks.persistence.diffbase_storage = NoDiffBase()
    return ks


__all__ = ["NoDiffBase", "operator_settings"]
