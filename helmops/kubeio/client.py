"""``kubernetes`` ApiClients whose JSON responses are parsed by :func:`helmops.kubeio.bounded.loads`.

Both the asyncio client (controller) and the sync one (CLI) parse with ``json.loads`` in ``deserialize``;
a deeply nested HelmApp or Cluster would raise ``RecursionError`` in every read. The subclasses replace only
that parse and hand the result to the client's own model deserializer, unchanged otherwise. helmops creates
every ApiClient through :func:`aio_client` or :func:`sync_client`.

This is the one module that builds Kubernetes clients and loads client configuration: the controller's
(kubeconfig or in-cluster), the CLI's, a downstream cluster's (from a sanitized kubeconfig only), and the
impersonating clients of ``helmops.clusters.identity``; the typed APIs (CoreV1Api, ...) are made here too.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes import client as _sync
from kubernetes import config as _sync_config_module
from kubernetes.aio import client as _aio
from kubernetes.aio import config as _aio_config_module

from helmops.kubeio.bounded import loads

if TYPE_CHECKING:
    from helmops.clusters.kubeconfig import Kubeconfig

_sync_config: Any = _sync_config_module  # the loaders are untyped
_aio_config: Any = _aio_config_module

__all__ = [
    "BoundedAioApiClient",
    "BoundedSyncApiClient",
    "KubeconfigUnusable",
    "aio_client",
    "api_client",
    "authorization_v1",
    "cli_aio_client",
    "cli_client",
    "client_configuration",
    "context_namespace",
    "coordination_v1",
    "core_v1",
    "custom_objects",
    "impersonating_client",
    "kubeconfig_configuration",
    "preload_apis",
    "proxies_configured",
    "sync_client",
    "sync_core_v1",
    "sync_custom_objects",
    "write_private",
]

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


#: environment variables aiohttp reads proxies from (either case)
_PROXY_ENV = ("http_proxy", "https_proxy", "ws_proxy", "wss_proxy", "all_proxy", "no_proxy")


def proxies_configured(environ: Any = os.environ) -> bool:
    return any(environ.get(k) or environ.get(k.upper()) for k in _PROXY_ENV)


class BoundedAioApiClient(_BoundedDeserialize, _aio.ApiClient):
    """``kubernetes.aio`` ApiClient with the bounded JSON loader.

    The client asks aiohttp to trust the environment, which then looks up proxy variables and ``~/.netrc``
    in a thread on every request. Without a proxy variable there is nothing to find (and a ``.netrc`` must
    not lend credentials to an API server a tenant's kubeconfig names), so the session is made without."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.configuration
        if getattr(cfg, "client_session_kwargs", None) is None and not proxies_configured():
            cfg.client_session_kwargs = {"trust_env": False}


class BoundedSyncApiClient(_BoundedDeserialize, _sync.ApiClient):
    """``kubernetes`` (sync) ApiClient with the bounded JSON loader."""


class KubeconfigUnusable(Exception):
    """No client configuration could be loaded (the loader's message, which names no credentials)."""


# --- building ApiClients: the only constructors in helmops ------------------------------------------------
def aio_client(configuration: Any) -> Any:
    """The one way helmops builds a ``kubernetes.aio`` ApiClient."""
    return BoundedAioApiClient(configuration=configuration)


def sync_client(configuration: Any) -> Any:
    """The one way helmops builds a sync ``kubernetes`` ApiClient (the CLI)."""
    return BoundedSyncApiClient(configuration=configuration)


def impersonating_client(base: Any, header: str, user: str) -> Any:
    """A new ``kubernetes.aio`` ApiClient with ``base``'s configuration (server and credentials) that sends
    ``header: user`` on every request (``helmops.clusters.identity``)."""
    return BoundedAioApiClient(configuration=base.configuration, header_name=header, header_value=user)


async def api_client(kubeconfig: Path | None) -> Any:
    """The controller's client: --kubeconfig, else in-cluster, else KUBECONFIG/~/.kube/config. Responses are
    parsed by the bounded JSON loader: a deeply nested object cannot break a read."""
    cfg = _aio.Configuration()
    if kubeconfig is not None:
        await _aio_config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    else:
        try:
            _aio_config.load_incluster_config(client_configuration=cfg)
        except _aio_config.ConfigException:
            await _aio_config.load_kube_config(client_configuration=cfg)
    return aio_client(cfg)


def cli_client(kubeconfig: str | None, context: str | None = None) -> Any:
    """The CLI's sync client: --kubeconfig/--context, else KUBECONFIG or ~/.kube/config when present, else
    in-cluster. Raises :class:`KubeconfigUnusable`."""
    try:
        cfg = _sync.Configuration()
        if kubeconfig or context or os.environ.get("KUBECONFIG") or Path("~/.kube/config").expanduser().exists():
            _sync_config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
        else:
            _sync_config.load_incluster_config(client_configuration=cfg)
        return sync_client(cfg)
    except (_sync_config.ConfigException, OSError) as exc:
        raise KubeconfigUnusable(str(exc)) from None


async def cli_aio_client(kubeconfig: str | None, context: str | None = None) -> Any:
    """A ``kubernetes.aio`` client from a kubeconfig (the CLI's valuesFrom reads). Raises
    :class:`KubeconfigUnusable`."""
    cfg = _aio.Configuration()
    try:
        await _aio_config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=cfg)
    except (_aio_config.ConfigException, OSError) as exc:
        raise KubeconfigUnusable(str(exc)) from None
    return aio_client(cfg)


def kubeconfig_configuration(kubeconfig: Path) -> Any:
    """A sync Configuration loaded from one kubeconfig file (the credentials kopf is given)."""
    cfg = _sync.Configuration()
    _sync_config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    return cfg


def context_namespace(kubeconfig: str | None, context: str | None) -> str | None:
    """The namespace of ``context`` (else of the current context) in the kubeconfig; None when it names none."""
    contexts, active = _sync_config.list_kube_config_contexts(config_file=kubeconfig)
    if context:
        active = next((c for c in contexts if c.get("name") == context), active)
    return ((active or {}).get("context") or {}).get("namespace") or None


def write_private(directory: Path, name: str, data: bytes) -> Path:
    """``data`` written to ``directory/name``, readable by this user only (0600)."""
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


async def client_configuration(kc: Kubeconfig, directory: Path) -> Any:
    """A ``kubernetes.aio`` Configuration from a sanitized kubeconfig (``helmops.clusters.kubeconfig``) alone.

    Set field by field rather than through kubernetes' kubeconfig loader, which would honour file paths and
    plugins; the loader is used only for an operator-allowed ``exec``/``auth-provider`` user, and then on
    the sanitized document. A client certificate is written 0600 into ``directory`` (the TLS context reads
    it when the ApiClient is built)."""
    cfg = _aio.Configuration()
    if kc.plugin:
        await _aio_config.load_kube_config_from_dict(copy.deepcopy(kc.document), client_configuration=cfg)
        return cfg
    cfg.host = kc.server.rstrip("/")
    cfg.verify_ssl = not kc.insecure
    if kc.ca_data:
        try:
            cfg.ca_cert_data = kc.ca_data.decode("ascii")  # PEM
        except UnicodeDecodeError:
            cfg.ca_cert_data = kc.ca_data  # DER
    if kc.tls_server_name:
        cfg.tls_server_name = kc.tls_server_name
    if kc.proxy_url:
        cfg.proxy = kc.proxy_url
    if kc.client_cert and kc.client_key:
        cfg.cert_file = str(await asyncio.to_thread(write_private, directory, "client.crt", kc.client_cert))
        cfg.key_file = str(await asyncio.to_thread(write_private, directory, "client.key", kc.client_key))
    if kc.token:
        cfg.api_key["BearerToken"] = f"Bearer {kc.token}"
    elif kc.username is not None and kc.password is not None:
        basic = base64.b64encode(f"{kc.username}:{kc.password}".encode()).decode()
        cfg.api_key["BearerToken"] = f"Basic {basic}"
    return cfg


# --- typed APIs on a client (the only places they are made) ----------------------------------------------
def preload_apis() -> None:
    """Imports the typed API modules the controller uses. ``kubernetes.aio`` loads them on first use, and
    CoreV1Api alone costs about a second of CPU (thousands of validated methods): paid here, in a thread at
    start-up, not on the event loop by the first reconcile."""
    for name in ("CoreV1Api", "CustomObjectsApi", "CoordinationV1Api", "AuthorizationV1Api"):
        getattr(_aio, name)


def core_v1(api: Any) -> Any:
    """``kubernetes.aio`` CoreV1Api on ``api``."""
    return _aio.CoreV1Api(api)


def custom_objects(api: Any) -> Any:
    """``kubernetes.aio`` CustomObjectsApi on ``api``."""
    return _aio.CustomObjectsApi(api)


def coordination_v1(api: Any) -> Any:
    """``kubernetes.aio`` CoordinationV1Api on ``api`` (Leases)."""
    return _aio.CoordinationV1Api(api)


def authorization_v1(api: Any) -> Any:
    """``kubernetes.aio`` AuthorizationV1Api on ``api`` (access reviews)."""
    return _aio.AuthorizationV1Api(api)


def sync_core_v1(api: Any) -> Any:
    """Sync CoreV1Api on a CLI client."""
    return _sync.CoreV1Api(api)


def sync_custom_objects(api: Any) -> Any:
    """Sync CustomObjectsApi on a CLI client."""
    return _sync.CustomObjectsApi(api)
