"""Readiness right after helm applied a revision: the manifest helm printed stands in for the release record,
and objects of kinds without status need no GET (helmops.clusters.live)."""

from __future__ import annotations

from typing import Any

from helmops.clusters.live import STATUSLESS, LiveResources

MANIFEST = """
---
# Source: demo/templates/cm.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: reader
"""


class NoCore:
    """A release record that must not be read."""

    async def read_namespaced_secret(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the release record was read back")


async def test_just_applied_statusless_objects_are_ready_without_any_read() -> None:
    live = LiveResources()
    refs = live.remember("local", "team", "demo", 3, MANIFEST)
    assert [(r.kind, r.namespace, r.name) for r in refs] == [
        ("ConfigMap", "team", "settings"),
        ("ClusterRole", "", "reader"),
    ]
    # api=None: any GET (or discovery) would fail the test
    states = await live.states(None, NoCore(), "local", "team", "demo", 3, just_applied=True)
    assert [(s.kind, s.state) for s in states] == [("ConfigMap", "Ready"), ("ClusterRole", "Ready")]


def test_statusless_kinds_are_those_readiness_calls_ready_once_they_exist() -> None:
    from helmops.status.readiness import READY, readiness

    for api_version, kind in STATUSLESS:
        assert readiness({"apiVersion": api_version, "kind": kind, "metadata": {"name": "x"}})[0] == READY
    assert ("apps/v1", "Deployment") not in STATUSLESS
