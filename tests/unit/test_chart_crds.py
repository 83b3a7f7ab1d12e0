"""The chart ships the generated CRDs in ``crds/`` unchanged: byte-identical copies of the repository's ``crds/``.

Helm installs ``crds/`` only when a CRD is absent and never upgrades or deletes it, so an existing Fleet CRD
is left alone; after ``hack/gen-crds`` changes them, copy them again: ``cp crds/*.yaml charts/helmops/crds/``.
"""

from __future__ import annotations

import pytest
import yaml

from support.tools import REPO_ROOT

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
