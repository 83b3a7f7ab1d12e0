"""The REST mapping: apiVersion + kind → resource (plural, namespaced), from the API server's discovery.

One :class:`RestMapper` per cluster caches the discovery document of each group-version it was asked
about (one GET of ``/api/v1`` or ``/apis/<group>/<version>``). A kind the cached document lacks (a CRD
installed since) refreshes that group-version, at most once per ``refresh_after`` seconds, so a manifest
full of unknown kinds costs one GET per group-version and period, not one per object. A group-version the
server does not serve (404) is remembered as empty the same way. :class:`RestMappings` keeps one mapper
per cluster.

The client is passed per call, not held: discovery is readable by every authenticated identity, so the
mapping of a cluster is the same whichever (impersonating) client of it asks, and no closed client is kept.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from helmops.kubeio.rest import get_json

#: seconds before a group-version whose document lacked an asked-for kind is fetched again.
REFRESH_AFTER = 30.0
#: clusters whose mapping is kept (least recently used dropped first).
MAX_CLUSTERS = 256
#: group-versions remembered per cluster: a release record (tenant-writable) may name any number of them.
MAX_GROUP_VERSIONS = 512

_GROUP = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_VERSION = re.compile(r"^[a-z0-9]{1,63}$")


@dataclass(frozen=True)
class Resource:
    """One served resource: what a kind is called in REST paths and whether its objects are namespaced."""

    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str = "", name: str = "") -> str:
        """The REST path of the collection (all namespaces without ``namespace``) or of one object."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        ns = f"/namespaces/{namespace}" if namespace and self.namespaced else ""
        return f"{base}{ns}/{self.plural}" + (f"/{name}" if name else "")


class DiscoveryFailed(Exception):
    """The discovery document of a group-version could not be read (an HTTP error other than 404)."""

    def __init__(self, api_version: str, status: int) -> None:
        super().__init__(f"discovery of {api_version}: HTTP {status}")
        self.api_version, self.status = api_version, status


def split_api_version(api_version: str) -> tuple[str, str] | None:
    """(group, version), or None for a value that is no apiVersion (it never reaches a request path)."""
    group, _, version = api_version.rpartition("/")
    if not _VERSION.match(version) or (group and not _GROUP.match(group)):
        return None
    return group, version


def discovery_path(group: str, version: str) -> str:
    return f"/apis/{group}/{version}" if group else f"/api/{version}"


def parse_discovery(group: str, version: str, doc: Any) -> dict[str, Resource]:
    """kind → Resource from an ``APIResourceList`` (subresources such as ``pods/log`` are left out)."""
    out: dict[str, Resource] = {}
    items = doc.get("resources") if isinstance(doc, Mapping) else None
    for item in items if isinstance(items, list) else ():
        if not isinstance(item, Mapping):
            continue
        name, kind = item.get("name"), item.get("kind")
        if not isinstance(name, str) or not isinstance(kind, str) or not name or not kind or "/" in name:
            continue
        out.setdefault(kind, Resource(group, version, kind, name, bool(item.get("namespaced"))))
    return out


Fetch = Callable[[Any, str, str], Awaitable[dict[str, Resource]]]


async def discover(api: Any, group: str, version: str) -> dict[str, Resource]:
    """One group-version's resources, read from the API server ({} when it does not serve it)."""
    status, doc = await get_json(api, discovery_path(group, version))
    if status == 404:
        return {}
    if status >= 300 or doc is None:
        raise DiscoveryFailed(f"{group}/{version}" if group else version, status)
    return parse_discovery(group, version, doc)


class RestMapper:
    """apiVersion + kind → :class:`Resource` for one cluster (see the module docstring)."""

    def __init__(
        self,
        *,
        refresh_after: float = REFRESH_AFTER,
        clock: Callable[[], float] = time.monotonic,
        fetch: Fetch = discover,
        max_group_versions: int = MAX_GROUP_VERSIONS,
    ) -> None:
        self._refresh_after, self._clock, self._fetch = refresh_after, clock, fetch
        self._max = max(1, max_group_versions)
        #: least recently used first.
        self._known: OrderedDict[tuple[str, str], tuple[float, dict[str, Resource]]] = OrderedDict()

    async def resource(self, api: Any, api_version: str, kind: str) -> Resource | None:
        """The resource serving ``kind`` in ``api_version``; None when the cluster does not serve it.
        Raises :class:`DiscoveryFailed` when discovery cannot be read."""
        gv = split_api_version(api_version)
        if gv is None or not kind:
            return None
        now = self._clock()
        hit = self._known.get(gv)
        if hit is not None:
            self._known.move_to_end(gv)
            found = hit[1].get(kind)
            if found is not None or now - hit[0] < self._refresh_after:
                return found
        kinds = await self._fetch(api, *gv)
        self._known[gv] = (now, kinds)
        self._known.move_to_end(gv)
        while len(self._known) > self._max:
            self._known.popitem(last=False)
        return kinds.get(kind)

    def forget(self) -> None:
        """Drops every cached document (the cluster's connection was rebuilt)."""
        self._known.clear()


class RestMappings:
    """One :class:`RestMapper` per cluster, bounded."""

    def __init__(self, max_clusters: int = MAX_CLUSTERS, **mapper: Any) -> None:
        self._max = max(1, max_clusters)
        self._mapper = mapper
        self._by_cluster: OrderedDict[str, RestMapper] = OrderedDict()

    def of(self, cluster: str) -> RestMapper:
        found = self._by_cluster.get(cluster)
        if found is None:
            found = self._by_cluster[cluster] = RestMapper(**self._mapper)
            while len(self._by_cluster) > self._max:
                self._by_cluster.popitem(last=False)
        else:
            self._by_cluster.move_to_end(cluster)
        return found

    def forget(self, cluster: str) -> None:
        self._by_cluster.pop(cluster, None)


__all__ = [
    "MAX_CLUSTERS",
    "MAX_GROUP_VERSIONS",
    "REFRESH_AFTER",
    "DiscoveryFailed",
    "Resource",
    "RestMapper",
    "RestMappings",
    "discover",
    "discovery_path",
    "parse_discovery",
    "split_api_version",
]
