"""``kubernetes`` ApiClients whose JSON responses are parsed by :func:`helmops.kubeio.bounded.loads`.

Both the asyncio client (controller) and the sync one (CLI) parse with ``json.loads`` in ``deserialize``;
a deeply nested HelmApp or Cluster would raise ``RecursionError`` in every read. The subclasses replace only
that parse and hand the result to the client's own model deserializer, unchanged otherwise. helmops creates
every ApiClient through :func:`aio_client` or :func:`sync_client`.
"""

from __future__ import annotations

import re
from typing import Any

from kubernetes import client as _sync
from kubernetes.aio import client as _aio

from helmops.kubeio.bounded import loads

__all__ = ["BoundedAioApiClient", "BoundedSyncApiClient", "aio_client", "sync_client"]

_MODEL_MAPPER = "_ApiClient__deserialize"  # the client's private (name-mangled) model mapping
_JSON = re.compile(r"^application/(json|[\w!#$&.+\-^_]+\+json)\s*(;|$)", re.IGNORECASE)


def _parse(response_text: str, content_type: str | None) -> tuple[bool, Any]:
    """(True, data) when the body is JSON this module parses; (False, None) to leave it to the client."""
    if content_type is None:
        try:
            return True, loads(response_text)
        except ValueError:
            return True, response_text
    if _JSON.match(content_type):
        return True, ("" if response_text == "" else loads(response_text))
    return False, None


class _BoundedDeserialize:
    """Put before either client's ApiClient in the bases: replaces only the JSON parse of ``deserialize``."""

    def deserialize(self, response_text: str, response_type: str, content_type: str | None) -> Any:
        handled, data = _parse(response_text, content_type)
        if not handled:
            return super().deserialize(response_text, response_type, content_type)  # type: ignore[misc]
        return getattr(self, _MODEL_MAPPER)(data, response_type)  # the client's model mapping


class BoundedAioApiClient(_BoundedDeserialize, _aio.ApiClient):
    """``kubernetes.aio`` ApiClient with the bounded JSON loader."""


class BoundedSyncApiClient(_BoundedDeserialize, _sync.ApiClient):
    """``kubernetes`` (sync) ApiClient with the bounded JSON loader."""


def aio_client(configuration: Any) -> Any:
    """The one way helmops builds a ``kubernetes.aio`` ApiClient."""
    return BoundedAioApiClient(configuration=configuration)


def sync_client(configuration: Any) -> Any:
    """The one way helmops builds a sync ``kubernetes`` ApiClient (the CLI)."""
    return BoundedSyncApiClient(configuration=configuration)
