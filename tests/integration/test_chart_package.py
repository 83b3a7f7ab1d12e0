"""``helm package`` of charts/helmops keeps the generated CRDs (byte-identical) and the values schema.

Moved from tests/unit/test_chart_crds.py: it runs the real helm.
"""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from support.charts import helm_env
from support.tools import REPO_ROOT, Tools

pytestmark = pytest.mark.integration

GENERATED = REPO_ROOT / "crds"


def test_packaged_chart_carries_the_crds_and_schema(tools: Tools, tmp_path: Path) -> None:
    """``helm package`` (what a chart repository serves) keeps crds/ and values.schema.json."""
    env = helm_env(tmp_path / "home")
    subprocess.run(
        [str(tools.helm), "package", str(REPO_ROOT / "charts" / "helmops"), "-d", str(tmp_path)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    (tgz,) = tmp_path.glob("helmops-*.tgz")
    with tarfile.open(tgz) as tar:
        members = {m.name: m for m in tar.getmembers()}
        for p in GENERATED.glob("*.yaml"):
            f = tar.extractfile(members[f"helmops/crds/{p.name}"])
            assert f is not None and f.read() == p.read_bytes()
    assert "helmops/values.schema.json" in members
    assert "helmops/templates/NOTES.txt" in members
