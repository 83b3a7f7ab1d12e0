"""The chart ships the generated CRDs in ``crds/`` unchanged: byte-identical copies of the repository's ``crds/``.

Helm installs ``crds/`` only when a CRD is absent and never upgrades or deletes it, so an existing Fleet CRD
is left alone; after ``hack/gen-crds`` changes them, copy them again: ``cp crds/*.yaml charts/helmops/crds/``.
"""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from support.charts import helm_env
from support.tools import REPO_ROOT, Tools

GENERATED = REPO_ROOT / "crds"
CHART_CRDS = REPO_ROOT / "charts" / "helmops" / "crds"
HINT = "copy them again: cp crds/*.yaml charts/helmops/crds/"


def test_same_file_names() -> None:
    generated = sorted(p.name for p in GENERATED.glob("*.yaml"))
    assert generated, "crds/ is empty: run hack/gen-crds"
    assert sorted(p.name for p in CHART_CRDS.glob("*.yaml")) == generated, HINT
    assert not [p.name for p in CHART_CRDS.iterdir() if p.suffix != ".yaml"]


@pytest.mark.parametrize("name", sorted(p.name for p in GENERATED.glob("*.yaml")))
def test_chart_crd_is_byte_identical(name: str) -> None:
    assert (CHART_CRDS / name).read_bytes() == (GENERATED / name).read_bytes(), f"{name} differs; {HINT}"


def test_chart_carries_helmapp_cluster_and_clustergroup() -> None:
    names = set()
    for path in CHART_CRDS.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                assert doc["kind"] == "CustomResourceDefinition", path
                assert doc["spec"]["group"] == "fleet.cattle.io"
                names.add(doc["spec"]["names"]["kind"])
    assert names == {"HelmApp", "Cluster", "ClusterGroup"}


def test_packaged_chart_carries_the_crds_and_schema(tools: Tools, tmp_path: Path) -> None:
    """``helm package`` (what a chart repository serves) keeps crds/ and values.schema.json."""
    env = helm_env(tmp_path / "home")
    subprocess.run([str(tools.helm), "package", str(REPO_ROOT / "charts" / "helmops"), "-d", str(tmp_path)],
                   env=env, check=True, capture_output=True, text=True, timeout=120)
    (tgz,) = tmp_path.glob("helmops-*.tgz")
    with tarfile.open(tgz) as tar:
        members = {m.name: m for m in tar.getmembers()}
        for p in GENERATED.glob("*.yaml"):
            f = tar.extractfile(members[f"helmops/crds/{p.name}"])
            assert f is not None and f.read() == p.read_bytes()
    assert "helmops/values.schema.json" in members
    assert "helmops/templates/NOTES.txt" in members
