"""Package the test charts under ``tests/charts/`` at any version with the real ``helm package``."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from .registry import Registry
from .tools import REPO_ROOT, Tools

CHARTS_SRC = REPO_ROOT / "tests" / "charts"


class ChartFactory:
    def __init__(self, tools: Tools, out_dir: Path | None = None, env: dict[str, str] | None = None) -> None:
        self.tools = tools
        self.out_dir = out_dir or Path(tempfile.mkdtemp(prefix="helmops-charts-"))
        self.env = env if env is not None else helm_env(self.out_dir / ".helm")

    def package(self, name: str, version: str, app_version: str | None = None) -> Path:
        """A ``.tgz`` of ``tests/charts/<name>`` with its version set to ``version``."""
        dest = self.out_dir / version / f"{name}-{version}.tgz"
        if dest.exists() and app_version is None:
            return dest
        work = Path(tempfile.mkdtemp(prefix="chart-src-", dir=self.out_dir))
        shutil.copytree(CHARTS_SRC / name, work / name)
        chart_yaml = work / name / "Chart.yaml"
        text = re.sub(r"(?m)^version:.*$", f"version: {version}", chart_yaml.read_text())
        if app_version is not None:
            text = re.sub(r"(?m)^appVersion:.*$", f'appVersion: "{app_version}"', text)
        chart_yaml.write_text(text)
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.helm("package", str(work / name), "-d", str(dest.parent))
        shutil.rmtree(work, ignore_errors=True)
        return dest

    def push_oci(self, tgz: Path, registry: Registry, repo_path: str = "charts") -> str:
        """``helm push`` to a fixture registry (plain, auth or TLS); returns the ``oci://`` repo reference."""
        host = registry.host
        push_host = registry.push_host  # helm speaks plain HTTP to loopback; see registry.py
        if registry.auth:
            self.helm("registry", "login", push_host, "--username", registry.username, "--password-stdin",
                      "--insecure", input=registry.password)
        self.helm("push", str(tgz), f"oci://{push_host}/{repo_path}", "--plain-http")
        return f"oci://{host}/{repo_path}"

    def helm(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.tools.helm), *args], env=self.env, input=input, capture_output=True, text=True,
            check=True,
        )


def helm_env(home: Path) -> dict[str, str]:
    """An environment whose helm caches, config and registry credentials are private to ``home``."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
    env.update({
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        "HELM_REGISTRY_CONFIG": str(home / "config" / "registry.json"),
        "HELM_REPOSITORY_CONFIG": str(home / "config" / "repositories.yaml"),
        "HELM_REPOSITORY_CACHE": str(home / "cache" / "repository"),
    })
    return env
