"""`helmops diff` reaches downstream clusters through tenant-written kubeconfig Secrets on the operator's own
machine: it must sanitize them exactly as the controller does (no local files, no exec, no foreign namespace)."""

from __future__ import annotations

import argparse
import base64
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from helmops.cli import diff


def _kubeconfig(user: dict[str, Any]) -> str:
    return json.dumps(
        {
            "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )


def _plan(name: str, namespace: str, secret: str, secret_ns: str | None = None) -> Any:
    cluster = SimpleNamespace(
        metadata=SimpleNamespace(name=name, namespace=namespace),
        spec=SimpleNamespace(kube_config_secret=secret, kube_config_secret_namespace=secret_ns),
    )
    return SimpleNamespace(cluster=name, cluster_object=cluster, describe=lambda: f"cluster {name}")


class _Core:
    secrets: dict[tuple[str, str], str] = {}
    reads: list[tuple[str, str]] = []

    def __init__(self, api: Any) -> None:
        pass

    def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        _Core.reads.append((namespace, name))
        value = base64.b64encode(_Core.secrets[(namespace, name)].encode()).decode()
        return SimpleNamespace(data={"value": value})


@pytest.fixture
def core(monkeypatch: pytest.MonkeyPatch) -> type[_Core]:
    import kubernetes.client

    _Core.secrets, _Core.reads = {}, []
    monkeypatch.setattr(kubernetes.client, "CoreV1Api", _Core)
    return _Core


def test_diff_refuses_local_file_kubeconfigs_and_writes_only_the_sanitized_one(core: type[_Core]) -> None:
    core.secrets[("t", "file")] = _kubeconfig({"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"})
    core.secrets[("t", "exec")] = _kubeconfig({"exec": {"command": "/bin/sh", "apiVersion": "v1"}})
    core.secrets[("t", "ok")] = _kubeconfig({"token": "inline-token"})
    plans = [_plan("a", "t", "file"), _plan("b", "t", "exec"), _plan("c", "t", "ok")]
    args = argparse.Namespace(kubeconfig=None, context=None, kubeconfig_secret_namespaces=[])
    with diff.connections(plans, args, api=None) as out:
        assert isinstance(out["a"], str) and "tokenFile" in out["a"] and "refused" in out["a"]
        assert isinstance(out["b"], str) and "exec" in out["b"]
        conn = out["c"]
        assert isinstance(conn, diff.Connection) and conn.kubeconfig
        written = yaml.safe_load(Path(conn.kubeconfig).read_text())
        assert written["users"][0]["user"] == {"token": "inline-token"}


def test_diff_refuses_a_kubeconfig_secret_of_another_namespace_unless_allowed(core: type[_Core]) -> None:
    core.secrets[("victim", "kc")] = _kubeconfig({"token": "victims-token"})
    plans = [_plan("a", "tenant", "kc", "victim")]
    args = argparse.Namespace(kubeconfig=None, context=None, kubeconfig_secret_namespaces=[])
    with diff.connections(plans, args, api=None) as out:
        assert isinstance(out["a"], str) and "another namespace" in out["a"]
    assert core.reads == []  # refused before reading
    args.kubeconfig_secret_namespaces = ["other,victim"]
    with diff.connections(plans, args, api=None) as out:
        assert isinstance(out["a"], diff.Connection)
