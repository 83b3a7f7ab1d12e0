"""`make demo` works: the example HelmApps turn Ready against a throwaway local stack, then it cleans up."""

from __future__ import annotations

import os
import subprocess

import pytest

from support.tools import REPO_ROOT, Tools

pytestmark = pytest.mark.integration


def test_demo_turns_every_example_ready(tools: Tools) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "EXPERIMENTAL_HELM_OPS")}
    out = subprocess.run(
        [str(REPO_ROOT / "hack" / "demo"), "--exit-when-ready", "--timeout", "240"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert out.stdout.count("all HelmApps are Ready") == 1
    # off a terminal: each change once (no line repeated), and a closing summary
    changes = [ln for ln in out.stdout.splitlines() if ln[:2].isdigit() and " ready=" in ln]
    assert changes and len(changes) == len({ln.split(" ", 1)[1] for ln in changes})
    assert "demo summary after" in out.stdout and "3/3 HelmApps Ready at the end" in out.stdout
    for name in ("hello-http", "hello-oci", "hello-templated"):
        assert f"fleet-local/{name}" in out.stdout
