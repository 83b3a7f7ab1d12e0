"""OCI with bearer-token auth: a real docker-registry in ``auth: token`` mode and a small token issuer.

The issuer checks Basic credentials and signs an RS256 JWT with the openssl CLI; the registry verifies it
against the issuer's certificate (``x5c``).  Charts are pushed through a plain sibling registry that shares
the storage.  This exercises oras's ``token`` backend the way cloud registries use it, and proves that one
client per repository avoids oras's single-token cache (a token for repo A is useless for repo B).
"""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from helmops.sources import AuthError, ChartRequest, ChartSources, RepoAuth
from support import proc
from support.charts import ChartFactory
from support.tools import Tools

pytestmark = pytest.mark.integration

SERVICE = "helmops-test-registry"
ISSUER = "helmops-test-issuer"


def _b64u(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


@dataclass
class TokenRegistry:
    host: str
    push_host: str
    username: str
    password: str
    scopes: list[str] = field(default_factory=list)


def _issuer(openssl: Path, key: Path, der: bytes, reg: TokenRegistry) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            want = "Basic " + base64.b64encode(f"{reg.username}:{reg.password}".encode()).decode()
            if self.headers.get("Authorization") != want:
                self.send_response(401)
                self.end_headers()
                return
            query = parse_qs(urlsplit(self.path).query)
            access = []
            for scope in query.get("scope", []):
                kind, name, actions = scope.split(":")
                reg.scopes.append(scope)
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
            now = int(time.time())
            header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
            claims = {"iss": ISSUER, "sub": reg.username, "aud": SERVICE, "exp": now + 300, "nbf": now - 10,
                      "iat": now, "jti": secrets.token_hex(8), "access": access}
            signing = _b64u(json.dumps(header).encode()) + b"." + _b64u(json.dumps(claims).encode())
            sig = subprocess.run([str(openssl), "dgst", "-sha256", "-sign", str(key)], input=signing,
                                 capture_output=True, check=True).stdout
            body = json.dumps({"token": (signing + b"." + _b64u(sig)).decode(), "expires_in": 300}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _answers(url: str, status: int) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return bool(r.status == status)
    except urllib.error.HTTPError as e:
        return e.code == status


@pytest.fixture(scope="module")
def token_registry(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenRegistry]:
    d = tmp_path_factory.mktemp("token-registry")
    key, crt = d / "issuer.key", d / "issuer.crt"
    subprocess.run([str(tools.openssl), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(crt), "-days", "2", "-subj", f"/CN={ISSUER}"], check=True, capture_output=True)
    der = subprocess.run([str(tools.openssl), "x509", "-in", str(crt), "-outform", "DER"],
                         check=True, capture_output=True).stdout
    port, push_port = proc.free_port(), proc.free_port()
    reg = TokenRegistry(f"127.0.0.1:{port}", f"127.0.0.1:{push_port}", "robot", secrets.token_hex(10))
    issuer = _issuer(tools.openssl, key, der, reg)
    storage = {"filesystem": {"rootdirectory": str(d / "data")}}
    main = {
        "version": 0.1, "log": {"level": "warn"}, "storage": storage,
        "http": {"addr": reg.host, "secret": secrets.token_hex(8)},
        "auth": {"token": {"realm": f"http://127.0.0.1:{issuer.server_address[1]}/token", "service": SERVICE,
                           "issuer": ISSUER, "rootcertbundle": str(crt)}},
    }
    sibling = {**main, "http": {"addr": reg.push_host, "secret": secrets.token_hex(8)}}
    sibling.pop("auth")
    procs = []
    try:
        for name, cfg in (("main", main), ("push", sibling)):
            (d / f"{name}.yml").write_text(yaml.safe_dump(cfg))
            p = proc.start([tools.docker_registry, "serve", d / f"{name}.yml"], d / f"{name}.log")
            procs.append(p)
        proc.wait_until(lambda: _answers(f"http://{reg.host}/v2/", 401), what="token registry", timeout=30,
                        proc=procs[0], log_path=d / "main.log")
        proc.wait_until(lambda: _answers(f"http://{reg.push_host}/v2/", 200), what="push sibling", timeout=30,
                        proc=procs[1], log_path=d / "push.log")
        yield reg
    finally:
        for p in procs:
            proc.stop(p)
        issuer.shutdown()


def _push(charts: ChartFactory, reg: TokenRegistry, path: str, version: str) -> str:
    charts.helm("push", str(charts.package("hello", version)), f"oci://{reg.push_host}/{path}", "--plain-http")
    return f"oci://{reg.host}/{path}/hello"


@pytest.mark.timeout(120)
async def test_token_auth_per_repository(
    token_registry: TokenRegistry, charts: ChartFactory, tmp_path: Path
) -> None:
    reg = token_registry
    ref_a = _push(charts, reg, "tok-a", "21.0.0")
    ref_b = _push(charts, reg, "tok-b", "22.0.0")
    auth = RepoAuth(username=reg.username, password=reg.password, plain_http=True)
    async with ChartSources(tmp_path / "cache") as sources:
        a = await sources.fetch(ChartRequest("", ref_a, "^21"), auth)
        b = await sources.fetch(ChartRequest("", ref_b, "^22"), auth)  # oras alone would reuse A's token
        a_again = await sources.resolve_version(ChartRequest("", ref_a, "21.0.0"), auth)
    assert (a.version, b.version, a_again[0]) == ("21.0.0", "22.0.0", "21.0.0")
    assert any("tok-a/hello" in s for s in reg.scopes) and any("tok-b/hello" in s for s in reg.scopes)


@pytest.mark.timeout(60)  # oras's retry decorator would sleep ~131 s per call
async def test_token_auth_wrong_and_missing(
    token_registry: TokenRegistry, charts: ChartFactory, tmp_path: Path
) -> None:
    reg = token_registry
    ref = _push(charts, reg, "tok-c", "23.0.0")
    async with ChartSources(tmp_path / "cache") as sources:
        with pytest.raises(AuthError) as wrong:
            await sources.fetch(ChartRequest("", ref, "^23"),
                                RepoAuth(username=reg.username, password="wrong-pw-123", plain_http=True))
        with pytest.raises(AuthError) as missing:
            await sources.fetch(ChartRequest("", ref, "^23"), RepoAuth(plain_http=True))
    for err in (wrong.value, missing.value):
        assert "did not issue a token" in str(err) and "wrong-pw-123" not in str(err)
