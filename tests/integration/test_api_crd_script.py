"""``hack/gen-crds`` and the generator it runs: writes the CRDs, and ``--check`` fails on a stale copy.

Moved from tests/unit/test_api_crd.py: it executes the repository's script.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helmops.api.crd import CRD_NAMES

pytestmark = pytest.mark.integration

REPO = Path(__file__).parents[2]


def test_generator_cli_writes_and_checks(tmp_path: Path) -> None:
    import os
    import subprocess

    from helmops.api.crd import main

    assert main([str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{name}.yaml" for name in CRD_NAMES)
    assert main(["--check", str(tmp_path)]) == 0
    (tmp_path / "clusters.fleet.cattle.io.yaml").write_text("edited\n")
    assert main(["--check", str(tmp_path)]) == 1
    script = REPO / "hack" / "gen-crds"
    assert os.access(script, os.X_OK)
    out = subprocess.run([str(script), "--check"], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
