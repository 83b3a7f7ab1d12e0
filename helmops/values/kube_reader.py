"""`ValuesFromReader` on the official asyncio Kubernetes client (`kubernetes.aio`).

Give it an `ApiClient` for the cluster the release goes to (Fleet's agent reads `valuesFrom` downstream).
Errors name the object and the HTTP status, never the object's content or the API server's response body.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

import aiohttp
from kubernetes.aio.client.exceptions import ApiException

from helmops.kubeio.client import core_v1

from .errors import ValuesError


def _problem(noun: str, namespace: str, name: str, err: ApiException, who: str | None = None) -> ValuesError:
    status = err.status
    if status == 404:
        return ValuesError(f"valuesFrom {noun} {namespace}/{name} not found", retryable=True)
    if status in (401, 403):
        plural = "configmaps" if noun == "configmap" else "secrets"
        by = f" ({who} may not get {plural} in namespace {namespace})" if who else ""
        return ValuesError(
            f"valuesFrom {noun} {namespace}/{name} could not be read: access denied{by} (HTTP {status})",
            retryable=True,
        )
    return ValuesError(
        f"valuesFrom {noun} {namespace}/{name} could not be read: HTTP {status} {err.reason or ''}".rstrip(),
        retryable=True,
    )


def _text(noun: str, namespace: str, name: str, key: str, raw: Any, *, encoded: bool) -> str:
    try:
        if isinstance(raw, str):
            data = base64.b64decode(raw, validate=True) if encoded else raw.encode("utf-8")
        elif isinstance(raw, bytes | bytearray):
            data = bytes(raw)
        else:
            raise TypeError
        return data.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, TypeError):
        raise ValuesError(f"valuesFrom {noun} {namespace}/{name} key {key} is not UTF-8 text", retryable=True) from None


class KubeValuesFromReader:
    """Reads ConfigMaps and Secrets with `CoreV1Api` on the given `ApiClient` (which the caller owns).

    ``who`` names the identity the client acts as (e.g. ``serviceAccount ns/name``), for denial messages."""

    def __init__(self, api_client: Any, *, request_timeout: float = 30.0, who: str | None = None) -> None:
        self._api = core_v1(api_client)
        self._timeout = request_timeout
        self._who = who
        #: acting as a named identity (a HelmApp's serviceAccount), the API server's RBAC decides which
        #: namespaces may be read.
        self.confines_namespaces = who is not None

    async def read_configmap(self, namespace: str, name: str) -> tuple[dict[str, str], str]:
        try:
            obj = await self._api.read_namespaced_config_map(name, namespace, _request_timeout=self._timeout)
        except ApiException as err:
            raise _problem("configmap", namespace, name, err, self._who) from None
        except (TimeoutError, aiohttp.ClientError) as err:
            raise ValuesError(
                f"valuesFrom configmap {namespace}/{name} could not be read: {type(err).__name__}",
                retryable=True,
            ) from None
        data: dict[str, str] = {}
        for key, value in (obj.data or {}).items():
            data[key] = _text("configmap", namespace, name, key, value, encoded=False)
        for key, value in (getattr(obj, "binary_data", None) or {}).items():
            data.setdefault(key, _text("configmap", namespace, name, key, value, encoded=True))
        version = obj.metadata.resource_version if obj.metadata is not None else None
        return data, str(version or "")

    async def read_secret(self, namespace: str, name: str) -> tuple[dict[str, str], str]:
        try:
            obj = await self._api.read_namespaced_secret(name, namespace, _request_timeout=self._timeout)
        except ApiException as err:
            raise _problem("secret", namespace, name, err, self._who) from None
        except (TimeoutError, aiohttp.ClientError) as err:
            raise ValuesError(
                f"valuesFrom secret {namespace}/{name} could not be read: {type(err).__name__}",
                retryable=True,
            ) from None
        data = {
            key: _text("secret", namespace, name, key, value, encoded=True) for key, value in (obj.data or {}).items()
        }
        version = obj.metadata.resource_version if obj.metadata is not None else None
        return data, str(version or "")


class OwnNamespaceReader:
    """Limits another reader to one namespace: what a HelmApp without a serviceAccount may read, since the
    controller's own identity would otherwise fetch any namespace's ConfigMap or Secret for it."""

    confines_namespaces = True

    def __init__(self, inner: Any, namespace: str) -> None:
        self._inner, self._namespace = inner, namespace

    def _check(self, noun: str, namespace: str, name: str) -> None:
        if namespace != self._namespace:
            raise ValuesError(
                f"valuesFrom {noun} {namespace}/{name}: without a serviceAccount, valuesFrom is read only from "
                f"the HelmApp's namespace {self._namespace} (set spec.serviceAccount to read other namespaces "
                "with that account's rights)"
            )

    async def read_configmap(self, namespace: str, name: str) -> tuple[dict[str, str], str]:
        self._check("configmap", namespace, name)
        result: tuple[dict[str, str], str] = await self._inner.read_configmap(namespace, name)
        return result

    async def read_secret(self, namespace: str, name: str) -> tuple[dict[str, str], str]:
        self._check("secret", namespace, name)
        result: tuple[dict[str, str], str] = await self._inner.read_secret(namespace, name)
        return result
