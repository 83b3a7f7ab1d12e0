"""Security defaults against real components: TLS verification is on unless a HelmApp explicitly turns it
off, and ``serviceAccount`` impersonation is enforced by the API server's real RBAC.

Secrets in logs/status/Events are checked after the bad-input corpus
(``test_badinput_corpus.py::test_security_canaries_never_leak``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import controller_helpers as e2e
import pytest
from controller_helpers import (
    Cluster,
    Controller,
    HelmLog,
    helmapp,
    make_ns,
    wait_for,
    wait_ready,
)

pytestmark = pytest.mark.integration

# the e2e module's module-scoped fixtures, shared by name
cluster, workdir, helm_log, published = e2e.cluster, e2e.workdir, e2e.helm_log, e2e.published


@pytest.fixture(scope="module")
def controller(
    cluster: Cluster, management_cluster: Any, helm_log: tuple[Path, HelmLog], workdir: Path
) -> Iterator[Controller]:
    ctl = Controller(management_cluster, helm_log[0], workdir, namespaces=("sec-*",)).start()
    yield ctl
    assert ctl.stop() == 0


def _false(c: Cluster, name: str, ns: str, ctype: str) -> str | None:
    cond = c.condition(name, ns, ctype)
    return str(cond["message"]) if cond.get("status") == "False" and cond.get("message") else None


def test_tls_repo_without_ca_fails_verification_until_skip_is_explicit(
    cluster: Cluster, controller: Controller, chart_repo_tls: Any, published: dict[str, Path]
) -> None:
    ns = make_ns(cluster, "sec")
    chart_repo_tls.publish(published["hello-0.1.0"])
    cluster.apply(helmapp("tls", ns, repo=chart_repo_tls.url, chart="hello", version="0.1.0"))
    message = wait_for("x509 failure", lambda: _false(cluster, "tls", ns, "Accepted"))
    assert "x509" in message and "certificate" in message, message
    assert cluster.release_secrets("tls", f"{ns}-target") == []
    # the one explicit opt-out
    app = helmapp("tls", ns, repo=chart_repo_tls.url, chart="hello", version="0.1.0")
    app["spec"]["insecureSkipTLSVerify"] = True
    cluster.apply(app)
    wait_ready(cluster, "tls", ns)


def test_tls_registry_without_ca_fails_verification(
    cluster: Cluster, controller: Controller, charts: Any, oci_registry_tls: Any, published: dict[str, Path]
) -> None:
    ns = make_ns(cluster, "sec")
    ref = charts.push_oci(published["hello-0.1.0"], oci_registry_tls)  # the TLS host, not the push sibling
    cluster.apply(helmapp("tlsoci", ns, repo="", chart=f"{ref}/hello", version="0.1.0"))
    message = wait_for("x509 failure", lambda: _false(cluster, "tlsoci", ns, "Accepted"))
    assert "x509" in message or "certificate verify failed" in message, message
    # trusting the registry's CA through the helm Secret fixes it, verification still on
    cluster.kubectl("create", "secret", "generic", "regca", "-n", ns, f"--from-file=cacerts={oci_registry_tls.ca_file}")
    app = helmapp("tlsoci", ns, repo="", chart=f"{ref}/hello", version="0.1.0")
    app["spec"]["helmSecretName"] = "regca"
    cluster.apply(app)
    wait_ready(cluster, "tlsoci", ns)


def test_service_account_is_confined_by_real_rbac(
    cluster: Cluster, controller: Controller, chart_repo: Any, published: dict[str, Path]
) -> None:
    """An SA that may deploy to one namespace only: a release there works, one elsewhere is forbidden, and
    a powerful SA of another namespace cannot be borrowed by name."""
    ns = make_ns(cluster, "sec")
    allowed, denied = f"{ns}-allowed", f"{ns}-denied"
    for n in (allowed, denied):
        cluster.ensure_namespace(n)
    cluster.kubectl("create", "serviceaccount", "deployer", "-n", ns)
    # everything, but only in `allowed` (the aggregated `admin` ClusterRole is empty without a
    # controller-manager, so the Role spells it out)
    cluster.apply(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "deployer", "namespace": allowed},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
        }
    )
    cluster.kubectl(
        "create", "rolebinding", "deployer", "-n", allowed, "--role=deployer", f"--serviceaccount={ns}:deployer"
    )
    # known caveat (docs/install.md): helm's --create-namespace needs `create namespaces` at cluster scope
    cluster.kubectl("create", "clusterrole", f"{ns}-create-ns", "--verb=create", "--resource=namespaces")
    cluster.kubectl(
        "create", "clusterrolebinding", f"{ns}-create-ns", f"--clusterrole={ns}-create-ns",
        f"--serviceaccount={ns}:deployer",
    )  # fmt: skip
    # a cluster-admin SA that lives in another namespace
    elsewhere = make_ns(cluster, "powerful")
    cluster.kubectl("create", "serviceaccount", "root", "-n", elsewhere)
    cluster.kubectl(
        "create", "clusterrolebinding", f"{elsewhere}-root", "--clusterrole=cluster-admin",
        f"--serviceaccount={elsewhere}:root",
    )  # fmt: skip

    def app(name: str, target: str, sa: str) -> dict[str, Any]:
        a = helmapp(name, ns, repo=chart_repo.url, chart="hello", version="0.1.0", target=target)
        a["spec"]["serviceAccount"] = sa
        return a

    cluster.apply(app("inside", allowed, "deployer"))
    cluster.apply(app("outside", denied, "deployer"))
    cluster.apply(app("borrowed", denied, "root"))
    wait_ready(cluster, "inside", ns)
    assert cluster.release_status("inside", allowed) == "deployed"
    for name, sa in (("outside", "deployer"), ("borrowed", "root")):
        message = wait_for(f"{name} forbidden", lambda name=name: _false(cluster, name, ns, "Ready"))
        assert "forbidden" in message and f"system:serviceaccount:{ns}:{sa}" in message, message
        assert cluster.release_secrets(name, denied) == []
        assert cluster.configmap(f"{name}-hello", denied) is None
