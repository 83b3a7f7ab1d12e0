"""Debian's docker-registry (distribution v2) as a real OCI registry: plain, basic-auth or TLS.

helm 3.17 talks plain HTTP to every loopback registry (containerd's "localhost is insecure" rule), so it
cannot push to the TLS variant on 127.0.0.1. The TLS variant therefore runs a plain-HTTP sibling on the
same storage (``push_host``) that takes pushes, while every read through ``host`` is verified TLS.
"""

from __future__ import annotations

import secrets
import ssl
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import proc
from .server import LoopbackServer


@dataclass
class Registry(LoopbackServer):
    push_port: int = 0
    PREFIX = "helmops-registry-"

    @property
    def push_host(self) -> str:
        """Where helm pushes: the registry itself, or for TLS its plain-HTTP sibling on the same storage."""
        return f"127.0.0.1:{self.push_port}" if self.tls else self.host

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "registry.log"

    def start(self) -> Registry:
        d = self._prepare()
        http: dict[str, object] = {"addr": self.host, "secret": secrets.token_hex(8)}
        config: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(d / "data")}, "delete": {"enabled": True}},
            "http": http,
        }
        if self.tls:
            cert = self._serving_cert()
            http["tls"] = {"certificate": str(cert.cert_file), "key": str(cert.key_file)}
        if self.auth:
            self.password = self.password or secrets.token_hex(12)
            htpasswd = d / "htpasswd"
            out = subprocess.run(
                [str(self.tools.htpasswd), "-Bbn", self.username, self.password],
                capture_output=True, text=True, check=True,
            )
            htpasswd.write_text(out.stdout)
            config["auth"] = {"htpasswd": {"realm": "basic-realm", "path": str(htpasswd)}}
        cfg = d / "config.yml"
        cfg.write_text(yaml.safe_dump(config))
        main = proc.start([self.tools.docker_registry, "serve", cfg], self.log_path, tie_to_parent=self.tie_to_parent)
        self._procs.append(main)
        proc.wait_until(self._ready, what="docker-registry", timeout=30, proc=main, log_path=self.log_path)
        if self.tls:
            self.push_port = self.push_port or proc.free_port()
            sibling = {**config, "http": {"addr": self.push_host, "secret": http["secret"]}}
            sibling.pop("auth", None)
            (d / "push.yml").write_text(yaml.safe_dump(sibling))
            sib = proc.start([self.tools.docker_registry, "serve", d / "push.yml"], d / "push.log",
                             tie_to_parent=self.tie_to_parent)
            self._procs.append(sib)
            proc.wait_until(lambda: _plain_ok(self.push_host), what="docker-registry (push sibling)", timeout=30,
                            proc=sib, log_path=d / "push.log")
        return self

    def _ready(self) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.ca_file)) if self.tls else None
        try:
            with urllib.request.urlopen(f"{self.url}/v2/", context=ctx, timeout=3) as r:
                return bool(r.status == 200)
        except urllib.error.HTTPError as e:
            return e.code == 401

    def requests(self) -> list[str]:
        """Access-log lines ("GET /v2/... 200") seen by the registry so far, to count requests in tests."""
        lines = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if '"GET ' in line or '"HEAD ' in line or '"PUT ' in line or '"POST ' in line:
                parts = line.split('"')
                if len(parts) > 2:
                    req = parts[1].split()
                    status = parts[2].split()[0] if parts[2].split() else ""
                    if len(req) >= 2:
                        lines.append(f"{req[0]} {req[1]} {status}")
        return lines



def _plain_ok(host: str) -> bool:
    with urllib.request.urlopen(f"http://{host}/v2/", timeout=3) as r:
        return bool(r.status == 200)
