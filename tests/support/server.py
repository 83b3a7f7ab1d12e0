"""What every loopback server of the test stack shares: a work dir, a port, optional TLS and basic auth,
its processes, and a stop that leaves nothing behind."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from . import pki, proc
from .tools import Tools


@dataclass
class LoopbackServer:
    tools: Tools
    auth: bool = False
    tls: bool = False
    workdir: Path | None = None
    port: int = 0
    tie_to_parent: bool = True
    username: str = "helmops"
    password: str = ""
    ca_file: Path | None = None
    _procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _owns_workdir: bool = False

    #: prefix of the temporary work dir when none is given
    PREFIX = "helmops-server-"

    @property
    def ca_pem(self) -> str:
        return self.ca_file.read_text() if self.ca_file else ""

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p.poll() is None]

    def _prepare(self) -> Path:
        """Create the work dir and pick the port; returns the work dir."""
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix=self.PREFIX))
            self._owns_workdir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = proc.free_port()
        return self.workdir

    def _serving_cert(self) -> pki.ServingCert:
        assert self.workdir is not None
        cert = pki.make_serving_cert(self.tools.openssl, self.workdir / "pki")
        self.ca_file = cert.ca_file
        return cert

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        for p in self._procs:
            proc.stop(p)
        self._procs.clear()
        if self._owns_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
