"""The identity of a HelmApp: Kubernetes API clients that impersonate its serviceAccount.

Fleet's ``serviceAccount`` says "act as this account". helm already runs with ``--kube-as-user``
(``helmops.helm.driver.impersonation_flags``); every other call the controller makes *on a HelmApp's behalf*
(namespace create/label/annotate/delete, readiness and drift reads, valuesFrom reads) goes through the client
built here, so the API server applies the account's RBAC, not the controller's. The account is always looked
up in the HelmApp's own namespace: its author can only borrow identities of that namespace.

Only ``Impersonate-User: system:serviceaccount:<ns>:<name>`` is sent; the API server adds the account's
groups itself (``system:serviceaccounts``, ``system:serviceaccounts:<ns>``, ``system:authenticated``), so the
controller needs nothing but ``impersonate`` on ``serviceaccounts``.

Clients are cached per (cluster, namespace, serviceAccount) with a size bound. A client evicted from the
cache (or built on a connection that was since replaced) is closed after a grace period, since a
reconcile may still be using it; everything is closed on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from helmops.api.keys import LOCAL
from helmops.kubeio import client as kubeio_client

log = logging.getLogger("helmops.clusters")

IMPERSONATE_USER = "Impersonate-User"
#: how many impersonating clients are kept open at most.
DEFAULT_MAX_CLIENTS = 128
#: how long an evicted client stays open for calls already under way.
CLOSE_GRACE_SECONDS = 60.0


def service_account_user(namespace: str, service_account: str) -> str:
    """The user name Kubernetes gives a ServiceAccount."""
    return f"system:serviceaccount:{namespace}:{service_account}"


@dataclass(frozen=True)
class Identity:
    """Who a call is made as: a ServiceAccount of the HelmApp's namespace, or (``service_account`` None)
    the controller itself. A HelmApp's own is :func:`helmops.controller.connect.identity_of` (the typed
    model's ``spec.serviceAccount``)."""

    namespace: str
    service_account: str | None

    @property
    def impersonated(self) -> bool:
        return bool(self.service_account)

    def describe(self) -> str:
        if not self.service_account:
            return "the controller"
        return f"serviceAccount {self.namespace}/{self.service_account}"


def impersonating_client(base: Any, user: str) -> Any:
    """A new ApiClient with ``base``'s server and credentials that sends ``Impersonate-User: user``."""
    return kubeio_client.impersonating_client(base, IMPERSONATE_USER, user)


@dataclass
class _Entry:
    base: Any
    api: Any


class ImpersonatingClients:
    """The one place impersonating clients are made; see the module docstring."""

    def __init__(self, max_clients: int = DEFAULT_MAX_CLIENTS, close_grace: float = CLOSE_GRACE_SECONDS) -> None:
        self._max = max(1, max_clients)
        self._grace = close_grace
        self._cache: OrderedDict[tuple[str, str, str], _Entry] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        self._retired: list[Any] = []

    def __len__(self) -> int:
        return len(self._cache)

    def api_for(self, base: Any, cluster: str, identity: Identity) -> Any:
        """``base`` itself for the controller's identity; else the cached impersonating client of
        ``identity`` on that cluster (rebuilt when ``base``, the cluster's connection, changed)."""
        if not identity.service_account:
            return base
        key = (cluster, identity.namespace, identity.service_account)
        entry = self._cache.get(key)
        if entry is not None and entry.base is base:
            self._cache.move_to_end(key)
            return entry.api
        if entry is not None:
            self._cache.pop(key)
            self._retire(entry.api)
        user = service_account_user(identity.namespace, identity.service_account)
        entry = _Entry(base, impersonating_client(base, user))
        self._cache[key] = entry
        while len(self._cache) > self._max:
            _, old = self._cache.popitem(last=False)
            self._retire(old.api)
        return entry.api

    def forget(self, cluster: str) -> None:
        """Drops (and later closes) every client for a cluster that went away."""
        for key in [k for k in self._cache if k[0] == cluster]:
            self._retire(self._cache.pop(key).api)

    def _retire(self, api: Any) -> None:
        self._retired.append(api)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # closed by close()

        async def later() -> None:
            await asyncio.sleep(self._grace)
            with contextlib.suppress(ValueError):
                self._retired.remove(api)
            await _close(api)

        task = loop.create_task(later(), name="helmops-identity-close")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Closes every client, the cached ones and those waiting out their grace period."""
        for task in list(self._closing):
            task.cancel()
        await asyncio.gather(*self._closing, return_exceptions=True)
        apis = [e.api for e in self._cache.values()] + self._retired
        self._cache.clear()
        self._retired = []
        for api in apis:
            await _close(api)


async def _close(api: Any) -> None:
    with contextlib.suppress(Exception):
        await api.close()


def denied(exc: BaseException) -> bool:
    """An API answer that means "this identity may not" (401/403)."""
    return getattr(exc, "status", None) in (401, 403)


def denial_message(identity: Identity, verb: str, resource: str, namespace: str | None, name: str = "") -> str:
    """What a refused call says: who, which verb on which resource where; never any object content."""
    what = f"{resource} {name}".rstrip()
    where = f" in namespace {namespace}" if namespace else ""
    return f"access denied: {identity.describe()} may not {verb} {what}{where}"


class AccessReviews:
    """ "May this identity get that resource in that namespace?", answered by the API server through a
    SelfSubjectAccessReview sent *as* the identity (no extra controller RBAC: every authenticated user may
    ask about itself). Answers are cached for ``ttl`` seconds, at most ``max_entries`` of them."""

    def __init__(
        self,
        clients: ImpersonatingClients,
        base: Any,
        *,
        ttl: float = 120.0,
        max_entries: int = 4096,
        cluster: str = LOCAL,
    ) -> None:
        self._clients, self._base = clients, base
        #: the cluster ``base`` reaches (LOCAL or a downstream Cluster's namespace/name): its own clients.
        self._cluster = cluster
        self._ttl, self._max = ttl, max_entries
        self._cache: OrderedDict[tuple[str, str, str, str, str, str], tuple[float, bool]] = OrderedDict()

    async def allowed(self, identity: Identity | None, verb: str, group: str, resource: str, namespace: str) -> bool:
        """None (unknown identity) is refused; the controller's own identity is always allowed."""
        if identity is None:
            return False
        if not identity.service_account:
            return True
        key = (identity.namespace, identity.service_account, verb, group, resource, namespace)
        now = asyncio.get_running_loop().time()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        api = self._clients.api_for(self._base, self._cluster, identity)
        attrs: dict[str, Any] = {"verb": verb, "group": group, "resource": resource}
        if namespace:
            attrs["namespace"] = namespace
        body: Any = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": attrs},
        }
        try:
            out = await kubeio_client.authorization_v1(api).create_self_subject_access_review(body)
            ok = bool(getattr(out.status, "allowed", False))
        except Exception as exc:  # cannot ask: treat as not allowed, briefly
            log.debug("access review for %s failed: %s", identity.describe(), type(exc).__name__)
            ok = False
        self._cache[key] = (now + self._ttl, ok)
        self._cache.move_to_end(key)
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)
        return ok


__all__ = [
    "CLOSE_GRACE_SECONDS",
    "DEFAULT_MAX_CLIENTS",
    "IMPERSONATE_USER",
    "AccessReviews",
    "Identity",
    "ImpersonatingClients",
    "denial_message",
    "denied",
    "impersonating_client",
    "service_account_user",
]
