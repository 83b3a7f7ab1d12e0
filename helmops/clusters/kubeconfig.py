"""Kubeconfigs from Secrets, reduced to what the controller may safely use (pure; no I/O).

A Fleet Cluster's kubeconfig Secret is written by whoever may write Secrets in that namespace — a tenant,
not the operator. A kubeconfig can make its reader open local files (``tokenFile``, ``client-certificate``,
``client-key``, ``certificate-authority``, paths resolved against the file's own directory) or run commands
(``exec``, ``auth-provider``); in the controller those files are the controller's own (its service-account
token) and the commands run with its identity. So nothing of a Secret's kubeconfig is passed on as written:
:func:`sanitize` builds a new, minimal kubeconfig from an allow-list — the current context's one cluster,
one user, one context, credentials inline — and refuses anything it cannot carry over safely, naming the
field (by position, never by value). helm and the Python client both get only that result.

Field names are matched case-insensitively when deciding what to refuse, because client-go decodes
kubeconfigs with Go's case-insensitive JSON field matching (``TokenFile`` works as ``tokenFile`` there).
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from helmops.errors import HelmopsError
from helmops.values import yamlio

#: a kubeconfig Secret larger than this is refused before parsing (a Secret holds at most 1 MiB anyway).
MAX_KUBECONFIG_BYTES = 1024 * 1024

#: fields client-go (and the Python client) read as local file paths.
_FILE_FIELDS = {
    "cluster": ("certificate-authority",),
    "user": ("tokenfile", "client-certificate", "client-key"),
}
#: fields that run a command or an authentication flow (operator opt-in).
_PLUGIN_FIELDS = ("exec", "auth-provider")
#: harmless fields that are dropped rather than refused (metadata, client-side options).
_DROPPED = {
    "cluster": ("extensions", "disable-compression"),
    "user": ("extensions",),
    "context": ("extensions", "namespace"),
}
_ALLOWED = {
    "cluster": (
        "server",
        "certificate-authority-data",
        "tls-server-name",
        "proxy-url",
        "insecure-skip-tls-verify",
    ),
    "user": ("token", "username", "password", "client-certificate-data", "client-key-data"),
    "context": ("cluster", "user"),
}
_SECTIONS = {"cluster": "clusters", "user": "users", "context": "contexts"}
_PROXY_SCHEMES = frozenset({"http", "https", "socks5"})
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
INLINE_HINT = "kubeconfig Secrets must carry credentials inline"


class KubeconfigRefused(HelmopsError, ValueError):
    """The kubeconfig cannot be used; the message names the field, never a value (not retryable: the same
    Secret is refused again)."""


@dataclass(frozen=True)
class Kubeconfig:
    """A sanitized kubeconfig: exactly one context, cluster and user, credentials inline."""

    #: the minimal kubeconfig document helm gets (and the Python client, when a plugin is allowed).
    document: dict[str, Any] = field(repr=False)
    server: str
    ca_data: bytes | None = field(default=None, repr=False)
    tls_server_name: str | None = None
    proxy_url: str | None = field(default=None, repr=False)
    insecure: bool = False
    token: str | None = field(default=None, repr=False)
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    client_cert: bytes | None = field(default=None, repr=False)
    client_key: bytes | None = field(default=None, repr=False)
    #: the user authenticates through ``exec`` or ``auth-provider`` (only with the operator's opt-in).
    plugin: bool = False

    def yaml(self) -> str:
        return yamlio.dump(self.document)


def parse(data: bytes) -> Any:
    """The Secret's kubeconfig as plain data: bounded, aliases expanded within a budget, errors without text."""
    if len(data) > MAX_KUBECONFIG_BYTES:
        raise KubeconfigRefused(f"the kubeconfig is larger than {MAX_KUBECONFIG_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise KubeconfigRefused("the kubeconfig is not UTF-8 text") from None
    try:
        return yamlio.load(text)
    except (ValueError, RecursionError) as exc:
        problem = exc.problem if isinstance(exc, yamlio.YamlError) else type(exc).__name__
        raise KubeconfigRefused(f"the kubeconfig is not valid YAML ({problem})") from None


def _key_name(key: str) -> str:
    return key if _SAFE_KEY.match(key) else "(a field with an unusual name)"


def _entries(config: Mapping[str, Any], kind: str) -> list[tuple[int, str, Any]]:
    """``(index, name, body)`` of each entry of the ``clusters``/``users``/``contexts`` list."""
    section = _SECTIONS[kind]
    raw = config.get(section)
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise KubeconfigRefused(f"{section} is not a list")
    out: list[tuple[int, str, Any]] = []
    seen: set[str] = set()
    for i, entry in enumerate(raw):
        if not isinstance(entry, Mapping):
            raise KubeconfigRefused(f"{section}[{i}] is not a map")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise KubeconfigRefused(f"{section}[{i}].name is missing or not a string")
        if name in seen:
            raise KubeconfigRefused(f"{section}[{i}].name repeats the name of an earlier entry (ambiguous)")
        seen.add(name)
        out.append((i, name, entry.get(kind)))
    return out


def _find(entries: list[tuple[int, str, Any]], name: str) -> tuple[int, Any] | None:
    for i, n, body in entries:
        if n == name:
            return i, body
    return None


def _string(path: str, value: Any, *, control_ok: bool = False) -> str:
    if not isinstance(value, str):
        raise KubeconfigRefused(f"{path} is not a string")
    if not control_ok and _CONTROL.search(value):
        raise KubeconfigRefused(f"{path} contains control characters")
    return value


def _b64(path: str, value: Any) -> bytes | None:
    text = _string(path, value, control_ok=True)
    if not text.strip():
        return None
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise KubeconfigRefused(f"{path} is not valid base64") from None


def _url(path: str, value: Any, schemes: frozenset[str]) -> str:
    text = _string(path, value)
    try:
        parts = urllib.parse.urlsplit(text)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise KubeconfigRefused(f"{path} is not a valid URL") from None
    if parts.scheme.lower() not in schemes or not host:
        allowed = "/".join(sorted(schemes))
        raise KubeconfigRefused(f"{path} must be an absolute {allowed} URL")
    return text


def _check_fields(path: str, body: Mapping[str, Any], kind: str, *, allow_exec: bool) -> None:
    """Refuses every field of ``body`` (a cluster, user or context) that is not allowed, naming it."""
    allowed = set(_ALLOWED[kind]) | set(_DROPPED[kind])
    if kind == "user" and allow_exec:
        allowed |= set(_PLUGIN_FIELDS)
    for key in body:
        if not isinstance(key, str):
            raise KubeconfigRefused(f"{path} has a field whose name is not a string")
        if key in allowed:
            continue
        lowered = key.lower()
        where = f"{path}.{_key_name(key)}"
        if lowered in _FILE_FIELDS.get(kind, ()):
            raise KubeconfigRefused(f"{where} is a local file path; {INLINE_HINT}")
        if lowered in {a.lower() for a in allowed}:
            raise KubeconfigRefused(f"{where} is not spelled as kubeconfig fields are (field names are exact)")
        if lowered in _PLUGIN_FIELDS:
            what = "an exec credential plugin" if lowered == "exec" else "an auth-provider plugin"
            raise KubeconfigRefused(f"{where} is {what}; refused unless the operator allows --allow-exec-kubeconfig")
        raise KubeconfigRefused(
            f"{where} is not a field kubeconfig Secrets may use (allowed: {', '.join(_ALLOWED[kind])})"
        )


def _select_context(config: Mapping[str, Any], contexts: list[tuple[int, str, Any]]) -> tuple[int, Any]:
    current = config.get("current-context")
    if current is None or current == "":
        if len(contexts) == 1:
            return contexts[0][0], contexts[0][2]
        if not contexts:
            raise KubeconfigRefused("the kubeconfig has no contexts")
        raise KubeconfigRefused(f"current-context is not set and the kubeconfig has {len(contexts)} contexts")
    if not isinstance(current, str):
        raise KubeconfigRefused("current-context is not a string")
    found = _find(contexts, current)
    if found is None:
        raise KubeconfigRefused("current-context names a context that is not in contexts")
    return found


def _cluster(path: str, body: Mapping[str, Any], *, allow_insecure: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sanitized cluster entry and the values the Python client needs."""
    out: dict[str, Any] = {}
    parsed: dict[str, Any] = {}
    if "server" not in body or body.get("server") in (None, ""):
        raise KubeconfigRefused(f"{path}.server is missing")
    out["server"] = parsed["server"] = _url(f"{path}.server", body["server"], frozenset({"http", "https"}))
    if body.get("certificate-authority-data") is not None:
        ca = _b64(f"{path}.certificate-authority-data", body["certificate-authority-data"])
        if ca:
            out["certificate-authority-data"] = base64.b64encode(ca).decode()
            parsed["ca_data"] = ca
    if body.get("tls-server-name") not in (None, ""):
        out["tls-server-name"] = parsed["tls_server_name"] = _string(f"{path}.tls-server-name", body["tls-server-name"])
    if body.get("proxy-url") not in (None, ""):
        out["proxy-url"] = parsed["proxy_url"] = _url(f"{path}.proxy-url", body["proxy-url"], _PROXY_SCHEMES)
    insecure = body.get("insecure-skip-tls-verify")
    if insecure is not None:
        if not isinstance(insecure, bool):
            raise KubeconfigRefused(f"{path}.insecure-skip-tls-verify is not a boolean")
        if insecure and not allow_insecure:
            raise KubeconfigRefused(
                f"{path}.insecure-skip-tls-verify: the kubeconfig sets insecure-skip-tls-verify "
                "(allow with --allow-insecure-kubeconfig)"
            )
        if insecure:
            out["insecure-skip-tls-verify"] = parsed["insecure"] = True
    return out, parsed


def _user(path: str, body: Mapping[str, Any], *, allow_exec: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """The sanitized user entry and the values the Python client needs."""
    out: dict[str, Any] = {}
    parsed: dict[str, Any] = {}
    if body.get("token") not in (None, ""):
        token = _string(f"{path}.token", body["token"])
        if not token.isascii() or not token.isprintable():
            raise KubeconfigRefused(f"{path}.token contains characters other than printable ASCII")
        out["token"] = parsed["token"] = token
    has_user, has_pass = body.get("username") not in (None, ""), body.get("password") not in (None, "")
    if has_user != has_pass:
        missing = "password" if has_user else "username"
        raise KubeconfigRefused(f"{path}.{missing} is missing (username and password go together)")
    if has_user:
        if "token" in out:
            raise KubeconfigRefused(f"{path} sets both token and username/password")
        out["username"] = parsed["username"] = _string(f"{path}.username", body["username"])
        out["password"] = parsed["password"] = _string(f"{path}.password", body["password"])
    cert = key = None
    if body.get("client-certificate-data") is not None:
        cert = _b64(f"{path}.client-certificate-data", body["client-certificate-data"])
    if body.get("client-key-data") is not None:
        key = _b64(f"{path}.client-key-data", body["client-key-data"])
    if bool(cert) != bool(key):
        missing = "client-key-data" if cert else "client-certificate-data"
        raise KubeconfigRefused(f"{path}.{missing} is missing (a client certificate needs its key)")
    if cert and key:
        out["client-certificate-data"] = base64.b64encode(cert).decode()
        out["client-key-data"] = base64.b64encode(key).decode()
        parsed["client_cert"], parsed["client_key"] = cert, key
    if allow_exec:
        for plugin in _PLUGIN_FIELDS:
            value = body.get(plugin)
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise KubeconfigRefused(f"{path}.{plugin} is not a map")
            out[plugin] = dict(value)
            parsed["plugin"] = True
    return out, parsed


def sanitize(config: Any, *, allow_exec: bool = False, allow_insecure: bool = False) -> Kubeconfig:
    """The minimal kubeconfig of ``config``'s current context; raises :class:`KubeconfigRefused`.

    Clusters and users the current context does not use are left out unread (their fields may be anything),
    but every list entry must have a unique name so the choice is never ambiguous."""
    if not isinstance(config, Mapping):
        raise KubeconfigRefused("the kubeconfig is not a YAML map")
    clusters, users, contexts = (_entries(config, kind) for kind in ("cluster", "user", "context"))
    ci, context = _select_context(config, contexts)
    cpath = f"contexts[{ci}].context"
    if not isinstance(context, Mapping):
        raise KubeconfigRefused(f"{cpath} is not a map")
    _check_fields(cpath, context, "context", allow_exec=allow_exec)
    cluster_name = context.get("cluster")
    if not isinstance(cluster_name, str) or not cluster_name:
        raise KubeconfigRefused(f"{cpath}.cluster is missing or not a string")
    found = _find(clusters, cluster_name)
    if found is None:
        raise KubeconfigRefused(f"{cpath}.cluster names a cluster that is not in clusters")
    i, cluster_body = found
    path = f"clusters[{i}].cluster"
    if not isinstance(cluster_body, Mapping):
        raise KubeconfigRefused(f"{path} is not a map")
    _check_fields(path, cluster_body, "cluster", allow_exec=allow_exec)
    cluster, parsed = _cluster(path, cluster_body, allow_insecure=allow_insecure)

    user: dict[str, Any] = {}
    user_name = context.get("user")
    if user_name not in (None, ""):
        if not isinstance(user_name, str):
            raise KubeconfigRefused(f"{cpath}.user is not a string")
        found = _find(users, user_name)
        if found is None:
            raise KubeconfigRefused(f"{cpath}.user names a user that is not in users")
        i, user_body = found
        path = f"users[{i}].user"
        if not isinstance(user_body, Mapping):
            raise KubeconfigRefused(f"{path} is not a map")
        _check_fields(path, user_body, "user", allow_exec=allow_exec)
        user, parsed_user = _user(path, user_body, allow_exec=allow_exec)
        parsed.update(parsed_user)
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": "user", "user": user}],
        "contexts": [{"name": "context", "context": {"cluster": "cluster", "user": "user"}}],
        "current-context": "context",
        "preferences": {},
    }
    return Kubeconfig(document=document, **parsed)


__all__ = ["INLINE_HINT", "MAX_KUBECONFIG_BYTES", "Kubeconfig", "KubeconfigRefused", "parse", "sanitize"]
