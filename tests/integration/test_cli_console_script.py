"""The installed ``helmops`` console script as a CI gate: exit codes 0 (valid), 1 (invalid), 2 (usage).

Moved from tests/unit/test_cli_offline.py: it executes the console script.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

MANIFESTS = Path(__file__).resolve().parents[1] / "manifests"


def test_console_script_is_a_ci_gate(tmp_path: Path) -> None:
    import subprocess
    import sys

    bin_dir = Path(sys.executable).parent
    script = bin_dir / "helmops"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "helmops.cli.main"]
    ok = subprocess.run([*argv, "validate", "-f", str(MANIFESTS / "valid" / "01-http-repo.yaml")],
                        capture_output=True, text=True, check=False)  # fmt: skip
    bad = subprocess.run([*argv, "validate", "-f", str(MANIFESTS / "invalid" / "01-release-name-uppercase.yaml")],
                         capture_output=True, text=True, check=False)  # fmt: skip
    usage = subprocess.run([*argv, "validate"], capture_output=True, text=True, check=False)
    assert (ok.returncode, bad.returncode, usage.returncode) == (0, 1, 2)
    assert "spec.helm.releaseName" in bad.stdout
