"""Repository credentials and TLS settings, built from a Fleet ``helmSecretName`` Secret.

Keys follow Fleet (``internal/bundlereader/auth.go``): ``username`` + ``password`` (both or neither),
``cacerts`` (a PEM bundle added to the system trust store), and the later-Fleet ``insecureSkipVerify`` and
``basicHTTP`` flags.  For HelmApps Fleet overwrites the Secret's ``insecureSkipVerify`` with
``spec.insecureSkipTLSVerify``; we do the same so a manifest behaves identically under both controllers.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .errors import AuthError

__all__ = ["RepoAuth", "auth_from_secret", "same_origin"]

_SALT = os.urandom(16)
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})


@dataclass(frozen=True)
class RepoAuth:
    """How to reach one repository: credentials, trust and transport.

    ``pass_credentials`` mirrors helm's ``--pass-credentials``: without it, credentials are only sent to the
    repository's own scheme/host/port, never to a chart URL that points elsewhere.
    """

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_pem: str | None = None
    insecure_skip_verify: bool = False
    plain_http: bool = False
    pass_credentials: bool = False

    @property
    def has_credentials(self) -> bool:
        return bool(self.username) and bool(self.password)

    @property
    def identity(self) -> str:
        """A stable, non-reversible key for caches: two RepoAuths with one identity see the same content.

        The password goes through an HMAC keyed with a per-process random salt, so the key can sit in a
        dict, a log line or a metric label without offering an offline guessing target.
        """
        h = hmac.new(_SALT, digestmod=hashlib.sha256)
        for part in (self.username or "", self.password or "", self.ca_pem or ""):
            h.update(part.encode())
            h.update(b"\0")
        h.update(f"{self.insecure_skip_verify}{self.plain_http}{self.pass_credentials}".encode())
        return h.hexdigest()[:32]

    @property
    def tls_identity(self) -> str:
        """What TLS/transport settings are in force, without the credentials."""
        h = hashlib.sha256((self.ca_pem or "").encode())
        h.update(f"{self.insecure_skip_verify}{self.plain_http}".encode())
        return h.hexdigest()[:32]

    def __repr__(self) -> str:
        return (
            f"RepoAuth(username={self.username!r}, password={'***' if self.password else None}, "
            f"ca_pem={f'<{len(self.ca_pem)} bytes>' if self.ca_pem else None}, "
            f"insecure_skip_verify={self.insecure_skip_verify}, plain_http={self.plain_http}, "
            f"pass_credentials={self.pass_credentials})"
        )

    __str__ = __repr__


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise AuthError("the helm Secret holds a value that is not UTF-8 text") from None
    return value


def _flag(data: Mapping[str, bytes | str], key: str) -> bool:
    raw = _text(data.get(key)).strip()
    if not raw or raw in _FALSE:
        return False
    if raw in _TRUE:
        return True
    raise AuthError(f'the helm Secret key "{key}" must be "true" or "false"')


def auth_from_secret(
    data: Mapping[str, bytes | str],
    *,
    insecure_skip_tls_verify: bool,
    fallback_ca_pem: str | None,
) -> RepoAuth:
    """Turn a Secret's (already base64-decoded) data into :class:`RepoAuth`.

    ``str`` values are taken as they are (``stringData`` or pre-decoded); ``bytes`` are UTF-8 decoded.
    ``fallback_ca_pem`` is the operator-wide CA bundle (Rancher's ``tls-ca``), used only when the Secret
    has no ``cacerts``.  Errors never quote a value.
    """
    username = _text(data.get("username"))
    password = _text(data.get("password"))
    if username and not password:
        raise AuthError("username is set in the helm Secret, but password isn't")
    if password and not username:
        raise AuthError("password is set in the helm Secret, but username isn't")
    ca = _text(data.get("cacerts")).strip()
    if ca and "-----BEGIN CERTIFICATE-----" not in ca:
        raise AuthError('the helm Secret key "cacerts" is not a PEM certificate bundle')
    _flag(data, "insecureSkipVerify")  # validated, then overridden by the spec as Fleet does
    return RepoAuth(
        username=username or None,
        password=password or None,
        ca_pem=(ca + "\n") if ca else (fallback_ca_pem or None),
        insecure_skip_verify=insecure_skip_tls_verify,
        plain_http=_flag(data, "basicHTTP"),
    )


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def same_origin(a: str, b: str) -> bool:
    """Do both URLs address the same scheme, host and port (the unit credentials are scoped to)?"""
    return _origin(a) == _origin(b)
