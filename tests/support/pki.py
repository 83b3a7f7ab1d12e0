"""Throwaway certificate authorities for the local stack, made with the openssl CLI.

The control planes, the TLS registry and the TLS chart repo each get a CA and a serving certificate valid
for 127.0.0.1 and localhost, so every TLS check in the tests is a real verification against a real CA.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServingCert:
    ca_file: Path
    cert_file: Path
    key_file: Path

    @property
    def ca_pem(self) -> str:
        return self.ca_file.read_text()


def _openssl(openssl: Path, *args: str) -> None:
    subprocess.run([str(openssl), *args], check=True, capture_output=True)


def make_ca(openssl: Path, directory: Path, name: str = "ca") -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    key, crt = directory / f"{name}.key", directory / f"{name}.crt"
    if not crt.exists():
        _openssl(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(crt),
                 "-days", "3650", "-subj", f"/CN=helmops-test-{name}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature")
    return crt, key


def make_serving_cert(openssl: Path, directory: Path, name: str = "server") -> ServingCert:
    """A CA plus a serving certificate for 127.0.0.1/localhost signed by it."""
    ca_crt, ca_key = make_ca(openssl, directory)
    key, csr, crt = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.crt"
    if not crt.exists():
        ext = directory / f"{name}.ext"
        ext.write_text(
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth,clientAuth\n"
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        )
        _openssl(openssl, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
                 "-subj", "/CN=127.0.0.1")
        _openssl(openssl, "x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
                 "-CAcreateserial", "-out", str(crt), "-days", "3650", "-extfile", str(ext))
    return ServingCert(ca_crt, crt, key)


def make_rsa_keypair(openssl: Path, directory: Path, name: str) -> tuple[Path, Path]:
    """An RSA key pair (private, public) — the control plane's service-account signing key."""
    priv, pub = directory / f"{name}.key", directory / f"{name}.pub"
    if not pub.exists():
        _openssl(openssl, "genrsa", "-out", str(priv), "2048")
        _openssl(openssl, "rsa", "-in", str(priv), "-pubout", "-out", str(pub))
    return priv, pub
