"""A real Kubernetes control plane for tests: etcd + kube-apiserver, envtest style.

No kubelet, scheduler or controller-manager run, so Pods never start, Deployments never become available
on their own, namespaces deleted stay Terminating and owner references are not garbage-collected. Tests
that need readiness patch object status themselves. Everything else — admission, CRDs with structural
schemas and CEL, RBAC, impersonation, server-side apply, watches — is the real API server.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import pki, proc
from .tools import Tools


@dataclass
class ControlPlane:
    """One etcd + one kube-apiserver on free loopback ports, with an admin kubeconfig."""

    tools: Tools
    name: str = "management"
    workdir: Path | None = None
    tie_to_parent: bool = True
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    etcd_port: int = 0
    api_port: int = 0
    #: kept so a restarted etcd comes back with the peer URL its data directory recorded
    etcd_peer_port: int = 0
    _etcd: subprocess.Popen[bytes] | None = None
    _api: subprocess.Popen[bytes] | None = None
    _owns_workdir: bool = False

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def dir(self) -> Path:
        assert self.workdir is not None
        return self.workdir

    @property
    def kubeconfig(self) -> Path:
        return self.dir / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.dir / "pki" / "ca.crt"

    def start(self) -> ControlPlane:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix=f"helmops-{self.name}-"))
            self._owns_workdir = True
        d = self.dir
        d.mkdir(parents=True, exist_ok=True)
        if not self.etcd_port:
            self.etcd_port = proc.free_port()
        if not self.api_port:
            self.api_port = proc.free_port()
        self._start_etcd()
        self._start_apiserver()
        self._write_kubeconfig()
        return self

    def _start_etcd(self) -> None:
        if not self.etcd_peer_port:
            self.etcd_peer_port = proc.free_port()
        d, peer = self.dir, self.etcd_peer_port
        url = f"http://127.0.0.1:{self.etcd_port}"
        log = d / "etcd.log"
        self._etcd = proc.start(
            [self.tools.etcd, "--name", "default", "--data-dir", d / "etcd",
             "--listen-client-urls", url, "--advertise-client-urls", url,
             "--listen-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-cluster", f"default=http://127.0.0.1:{peer}",
             "--unsafe-no-fsync", "--quota-backend-bytes", str(4 * 1024**3), "--log-level", "warn"],
            log, tie_to_parent=self.tie_to_parent,
        )
        proc.wait_until(lambda: _http_ok(f"{url}/health"), what=f"etcd ({self.name})", timeout=60,
                        proc=self._etcd, log_path=log)

    def _start_apiserver(self) -> None:
        d = self.dir
        pkidir = d / "pki"
        cert = pki.make_serving_cert(self.tools.openssl, pkidir)
        sa_key, sa_pub = pki.make_rsa_keypair(self.tools.openssl, pkidir, "sa")
        tokens = pkidir / "tokens.csv"
        tokens.write_text(f'{self.token},admin,admin,"system:masters"\n')
        log = d / "kube-apiserver.log"
        self._api = proc.start(
            [self.tools.kube_apiserver,
             "--etcd-servers", f"http://127.0.0.1:{self.etcd_port}",
             "--etcd-prefix", f"/{self.name}",
             "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
             "--secure-port", str(self.api_port),
             "--cert-dir", pkidir, "--tls-cert-file", cert.cert_file, "--tls-private-key-file", cert.key_file,
             "--client-ca-file", cert.ca_file,
             "--token-auth-file", tokens,
             "--service-account-issuer", "https://kubernetes.default.svc",
             "--service-account-key-file", sa_pub, "--service-account-signing-key-file", sa_key,
             "--service-cluster-ip-range", "10.0.0.0/24",
             "--authorization-mode", "RBAC",
             "--allow-privileged=true",
             "--disable-admission-plugins", "ServiceAccount",
             "--endpoint-reconciler-type", "none",
             "--v", "1"],
            log, tie_to_parent=self.tie_to_parent,
        )
        proc.wait_until(self._ready, what=f"kube-apiserver ({self.name})", timeout=120, proc=self._api,
                        log_path=log, interval=0.3)

    def _ready(self) -> bool:
        req = urllib.request.Request(f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.token}"})
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
            return bool(resp.status == 200)

    def _write_kubeconfig(self) -> None:
        ca = base64.b64encode(self.ca_file.read_bytes()).decode()
        cfg = {
            "apiVersion": "v1", "kind": "Config", "current-context": self.name,
            "clusters": [{"name": self.name, "cluster": {"server": self.server, "certificate-authority-data": ca}}],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": self.name, "context": {"cluster": self.name, "user": "admin"}}],
        }
        self.kubeconfig.write_text(yaml.safe_dump(cfg))
        self.kubeconfig.chmod(0o600)

    def kubeconfig_dict(self) -> dict[str, object]:
        loaded: dict[str, object] = yaml.safe_load(self.kubeconfig.read_text())
        return loaded

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this control plane."""
        return subprocess.run(
            [str(self.tools.kubectl), "--kubeconfig", str(self.kubeconfig), *args],
            input=input, capture_output=True, text=True, check=check, timeout=timeout,
        )

    def kubectl_json(self, *args: str) -> dict[str, object]:
        out: dict[str, object] = json.loads(self.kubectl(*args, "-o", "json").stdout)
        return out

    def stop_apiserver(self) -> None:
        """Stop only kube-apiserver (fault tests); :meth:`restart_apiserver` brings it back on the same port."""
        proc.stop(self._api)
        self._api = None

    def restart_apiserver(self) -> None:
        self._start_apiserver()

    def stop_etcd(self) -> None:
        """Stop only etcd (fault tests): kube-apiserver stays up and answers with errors until
        :meth:`restart_etcd` brings etcd back on the same port and data directory."""
        proc.stop(self._etcd)
        self._etcd = None

    def restart_etcd(self) -> None:
        self._start_etcd()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in (self._etcd, self._api) if p is not None and p.poll() is None]

    def stop(self) -> None:
        proc.stop(self._api)
        proc.stop(self._etcd)
        self._api = self._etcd = None
        if self._owns_workdir and self.workdir is not None and not os.environ.get("HELMOPS_KEEP_TEST_DIRS"):
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=3) as resp:
        return bool(resp.status == 200)
