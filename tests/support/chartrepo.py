"""An HTTP chart repository on loopback: ``helm repo index`` output served by a small static server.

The server runs as its own process (``python -m support.chartrepo``) so tests and benchmarks see
real network behaviour, and it logs one line per request so tests can count index fetches. Variants: basic
auth (credentials passed through the environment, never argv) and TLS with a throwaway CA. It honours
``If-None-Match``/``If-Modified-Since`` the way a real static host does.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
import shutil
import ssl
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from . import proc
from .server import LoopbackServer


@dataclass
class ChartRepo(LoopbackServer):
    PREFIX = "helmops-chartrepo-"

    @property
    def dir(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "charts"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/"

    @property
    def _log(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "requests.log"

    def start(self) -> ChartRepo:
        workdir = self._prepare()
        self.dir.mkdir(parents=True, exist_ok=True)
        argv: list[str | os.PathLike[str]] = [sys.executable, "-m", "support.chartrepo",
                                              "--dir", self.dir, "--port", str(self.port), "--log", self._log]
        env = proc.module_env(os.environ)
        if self.tls:
            cert = self._serving_cert()
            argv += ["--tls-cert", cert.cert_file, "--tls-key", cert.key_file]
        if self.auth:
            self.password = self.password or base64.b16encode(os.urandom(8)).decode().lower()
            env["CHARTREPO_BASIC_AUTH"] = f"{self.username}:{self.password}"
        if not (self.dir / "index.yaml").exists():
            self.reindex()
        server = proc.start(argv, workdir / "server.log", env=env, tie_to_parent=self.tie_to_parent)
        self._procs.append(server)
        proc.wait_until(self._ready, what="chart repo", timeout=30, proc=server, log_path=workdir / "server.log")
        self.reset_requests()
        return self

    def _ready(self) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.ca_file)) if self.tls else None
        try:
            with urllib.request.urlopen(f"{self.url}index.yaml", context=ctx, timeout=3) as r:
                return bool(r.status == 200)
        except urllib.error.HTTPError as e:
            return e.code == 401

    def reindex(self) -> None:
        """``helm repo index`` the directory: chart URLs in the index stay relative, as many repos publish."""
        subprocess.run([str(self.tools.helm), "repo", "index", str(self.dir)], check=True,
                       capture_output=True)

    def publish(self, tgz: Path) -> None:
        shutil.copy2(tgz, self.dir / tgz.name)
        self.reindex()

    def requests(self) -> list[str]:
        if not self._log.exists():
            return []
        return [line for line in self._log.read_text().splitlines() if line]

    def reset_requests(self) -> None:
        self._log.write_text("")



# ---- the server process -------------------------------------------------------------------------------


def _serve(directory: Path, port: int, log: Path, cert: str | None, key: str | None) -> None:
    expected = os.environ.get("CHARTREPO_BASIC_AUTH", "")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        server_version = "helmops-chartrepo"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _record(self, status: int) -> None:
            with lock, open(log, "a") as f:
                f.write(f"{self.command} {self.path} {status}\n")

        def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self._record(status)

        def do_HEAD(self) -> None:
            self.do_GET()

        def do_GET(self) -> None:
            if expected:
                got = self.headers.get("Authorization", "")
                want = "Basic " + base64.b64encode(expected.encode()).decode()
                if not hmac.compare_digest(got, want):
                    self._reply(401, b"unauthorized\n", {"WWW-Authenticate": 'Basic realm="charts"'})
                    return
            name = self.path.split("?", 1)[0].lstrip("/")
            target = (directory / name).resolve()
            if not name or directory.resolve() not in target.parents or not target.is_file():
                self._reply(404, b"not found\n")
                return
            body = target.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            mtime = target.stat().st_mtime
            headers = {"ETag": etag, "Last-Modified": formatdate(mtime, usegmt=True),
                       "Content-Type": "application/x-yaml" if name.endswith(".yaml") else "application/gzip"}
            if self.headers.get("If-None-Match") == etag:
                self._reply(304, b"", headers)
                return
            ims = self.headers.get("If-Modified-Since")
            if ims and not self.headers.get("If-None-Match"):
                try:
                    if int(mtime) <= parsedate_to_datetime(ims).timestamp():
                        self._reply(304, b"", headers)
                        return
                except (TypeError, ValueError):
                    pass
            self._reply(200, body, headers)

    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    if cert and key:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    httpd.serve_forever()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="serve a helm chart repository directory on loopback")
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--log", type=Path, required=True)
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    a = p.parse_args(argv)
    _serve(a.dir, a.port, a.log, a.tls_cert, a.tls_key)


if __name__ == "__main__":
    main()
