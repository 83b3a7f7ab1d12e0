"""``helmops render --clusters-from`` shows the target set narrowed by targetRestrictions (the controller's
code path, helmops.desired.targets.resolve_targets)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from helmops.cli.main import main

APP = """\
    apiVersion: fleet.cattle.io/v1alpha1
    kind: HelmApp
    metadata: {name: web, namespace: fleet-default}
    spec:
      helm: {repo: https://charts.invalid/, chart: hello, version: 0.1.0, values: {replicas: 1}}
      targets:
      - {name: all, clusterGroup: all, helm: {values: {replicas: 2}}}
      - {name: one, clusterGroup: one, helm: {values: {replicas: 1}}}
      RESTRICTIONS
    """
INVENTORY = (
    "".join(
        f"---\nkind: Cluster\napiVersion: fleet.cattle.io/v1alpha1\n"
        f"metadata: {{name: {n}, namespace: fleet-default, labels: {{name: {n}}}}}\n"
        f"---\nkind: ClusterGroup\napiVersion: fleet.cattle.io/v1alpha1\n"
        f"metadata: {{name: {n}, namespace: fleet-default}}\n"
        f"spec: {{selector: {{matchLabels: {{name: {n}}}}}}}\n"
        for n in ("one", "two", "three")
    )
    + "---\nkind: ClusterGroup\napiVersion: fleet.cattle.io/v1alpha1\n"
    + "metadata: {name: all, namespace: fleet-default}\nspec: {selector: {}}\n"
)


@pytest.mark.parametrize(
    ("restrictions", "expected"),
    [
        ("targetRestrictions: [{clusterGroup: one}]", {"fleet-default/one": ("all", 2)}),
        ("", {f"fleet-default/{n}": ("all", 2) for n in ("one", "two", "three")}),
    ],
)
def test_render_clusters_from_shows_the_restricted_target_set(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, restrictions: str, expected: dict[str, tuple[str, int]]
) -> None:
    app = tmp_path / "app.yaml"
    app.write_text(textwrap.dedent(APP).replace("RESTRICTIONS", restrictions))
    inventory = tmp_path / "clusters.yaml"
    inventory.write_text(INVENTORY)
    code = main(["render", "-f", str(app), "--values-only", "--clusters-from", str(inventory), "-o", "yaml"])
    out, err = capsys.readouterr()
    assert code == 0, err
    got = {e["cluster"]: (e["target"], e["values"]["replicas"]) for e in yaml.safe_load(out)["clusters"]}
    assert got == expected
