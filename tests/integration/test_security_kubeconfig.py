"""Kubeconfig Secrets, probed as a hostile tenant would, on the real stack: ``helmops run`` (a subprocess) on
the management control plane, the session's downstream control plane, the real helm.

- A tenant's Cluster whose kubeconfig names a local file (``tokenFile``, ``client-certificate``/``client-key``)
  and a server the tenant runs — a loopback listener here, standing in for the attacker's server — is
  refused with a condition naming the field; the listener never sees the file's content in an
  ``Authorization`` header, and the controller never reads the file (a FIFO for the token: opening it for
  reading is detected; access times for the certificate files). A control case with an inline token shows
  that the listener would have seen a leaked credential.
- A Cluster in tenant A's namespace naming a kubeconfig Secret in tenant B's namespace is refused on every
  HelmApp targeting it and nothing is deployed with B's credentials; with the operator's
  ``--kubeconfig-secret-namespaces`` naming B's namespace, the same Cluster deploys.
"""

from __future__ import annotations

import contextlib
import errno
import http.server
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import controller_helpers as e2e
import pytest
import yaml
from controller_helpers import REPO_ROOT, Cluster, Controller, make_ns, wait_for

pytestmark = pytest.mark.integration

workdir, helm_log = e2e.workdir, e2e.helm_log


# --- the attacker's server and the canary files ------------------------------------------------------------
class Listener:
    """A plain-HTTP server on 127.0.0.1 that records every request's Authorization header and answers 403."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []
        seen = self.seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                seen.append((self.command, self.path, self.headers.get("Authorization") or ""))
                body = b'{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403}'
                self.send_response(403)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)

    def __enter__(self) -> Listener:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def authorizations(self) -> list[str]:
        return [auth for _, _, auth in list(self.seen)]


class CanaryFifo:
    """A named pipe standing in for a local credential file. Whoever opens it for reading is noticed (a
    non-blocking open for writing then succeeds) and handed the canary, so a leak also reaches the listener."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.canary = f"canary-local-file-{secrets.token_hex(8)}"
        self.opened = threading.Event()
        self._stop = threading.Event()
        os.mkfifo(path, 0o600)
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.05):  # bounded by the test's own duration
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # nobody reading: the expected case
                    continue
                raise
            self.opened.set()
            with contextlib.suppress(OSError):
                os.write(fd, self.canary.encode())
            os.close(fd)

    def __enter__(self) -> CanaryFifo:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join(5)


class CanaryFile:
    """A regular file standing in for a local certificate or key. A read is noticed through its access time,
    set well before its modification time so that even a ``relatime`` mount records the next read (a
    ``stat``, as in an existence check, is not a read)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.canary = f"canary-local-file-{secrets.token_hex(8)}"
        path.write_text(f"-----BEGIN PRIVATE KEY-----\n{self.canary}\n-----END PRIVATE KEY-----\n")
        path.chmod(0o600)
        st = path.stat()
        os.utime(path, (st.st_mtime - 3600, st.st_mtime))
        self.atime = path.stat().st_atime

    def read(self) -> bool:
        return self.path.stat().st_atime != self.atime


def reads_are_observable(directory: Path) -> None:
    """Guards the access-time probe: on a mount that never updates access times it would prove nothing."""
    probe = CanaryFile(directory / "probe")
    probe.path.read_bytes()
    assert probe.read(), f"reads do not update access times under {directory}: the probe cannot work here"


# --- fixtures ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mgmt(management_cluster: Any) -> Cluster:
    c = Cluster(management_cluster)
    for f in sorted((REPO_ROOT / "crds").glob("*.yaml")):
        c.kubectl("apply", "-f", str(f))
    for crd in ("helmapps", "clusters", "clustergroups"):
        c.kubectl("wait", "--for=condition=Established", f"crd/{crd}.fleet.cattle.io", "--timeout=60s")
    return c


@pytest.fixture(scope="module")
def published(charts: Any, chart_repo: Any) -> None:
    chart_repo.publish(charts.package("hello", "0.1.0"))


@pytest.fixture(scope="module")
def controller(
    mgmt: Cluster, management_cluster: Any, helm_log: tuple[Path, e2e.HelmLog], workdir: Path, published: None
) -> Iterator[Controller]:
    """The operator's default: no exec, no insecure, kubeconfig Secrets only from a Cluster's own namespace."""
    ctl = Controller(management_cluster, helm_log[0], workdir, namespaces=("kcsec-*",)).start()
    yield ctl
    assert ctl.stop() == 0, ctl.text()[-4000:]


@pytest.fixture
def listener() -> Iterator[Listener]:
    with Listener() as lst:
        yield lst


def kubeconfig(server: str, user: dict[str, Any], cluster: dict[str, Any] | None = None) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": server, **(cluster or {})}}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "c",
        }
    )


def fleet_cluster(c: Cluster, ns: str, name: str, kubeconfig_text: str, *, secret_ns: str | None = None) -> None:
    """A tenant's Fleet Cluster and its kubeconfig Secret (in ``secret_ns``, default the Cluster's own)."""
    c.apply(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"kc-{name}", "namespace": secret_ns or ns},
            "stringData": {"value": kubeconfig_text},
        }
    )
    spec: dict[str, Any] = {"kubeConfigSecret": f"kc-{name}"}
    if secret_ns:
        spec["kubeConfigSecretNamespace"] = secret_ns
    c.apply(
        {
            "apiVersion": "fleet.cattle.io/v1alpha1",
            "kind": "Cluster",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }
    )


def deploy_to(c: Cluster, name: str, ns: str, cluster: str, chart_repo: Any, target: str) -> None:
    obj = e2e.helmapp(name, ns, repo=chart_repo.url, chart="hello", version="0.1.0", target=target)
    obj["spec"]["targets"] = [{"clusterName": cluster}]
    c.apply(obj)


def reported(
    c: Cluster, name: str, ns: str, needle: str, timeout: float = 90, abort: Callable[[], str | None] = lambda: None
) -> str:
    """The first condition or Event message of HelmApp ``ns/name`` containing ``needle``; fails at once when
    ``abort`` names something that must not happen (a leak) while waiting."""

    def find() -> str | None:
        if (why := abort()) is not None:
            raise AssertionError(why)
        obj = c.helmapp(name, ns) or {}
        texts = [str(x.get("message") or "") for x in (obj.get("status") or {}).get("conditions") or []]
        texts += [str(e.get("message") or "") for e in c.events(name, ns)]
        return next((t for t in texts if needle in t), None)

    return str(wait_for(f"{ns}/{name} reports {needle!r}", find, timeout))


def leaked(*fifos: CanaryFifo) -> str | None:
    opened = [f.path.name for f in fifos if f.opened.is_set()]
    return f"the controller (or helm) opened the local file(s) {opened}" if opened else None


def assert_no_leak(ctl: Controller, listener: Listener, *canaries: str) -> None:
    for canary in canaries:
        assert not any(canary in auth for auth in listener.authorizations()), "the canary reached the listener"
        assert canary not in ctl.text(), "the canary is in the controller's log"


# --- tests ---------------------------------------------------------------------------------------------------
def test_control_an_inline_token_does_reach_the_listener(
    mgmt: Cluster, controller: Controller, chart_repo: Any, listener: Listener
) -> None:
    """The probe works: a credential the controller does use shows up at the listener (so the tests below,
    where nothing shows up, are not vacuous). An inline token is the tenant's own, so this is allowed."""
    ns = make_ns(mgmt, "kcsec-ctl")
    token = f"inline-{secrets.token_hex(8)}"
    fleet_cluster(mgmt, ns, "attacker", kubeconfig(listener.url, {"token": token}))
    deploy_to(mgmt, "app", ns, "attacker", chart_repo, f"{ns}-t")
    wait_for("the listener sees the inline token", lambda: f"Bearer {token}" in listener.authorizations(), 90)


def test_token_file_is_refused_never_read_never_sent(
    mgmt: Cluster, controller: Controller, chart_repo: Any, listener: Listener, tmp_path: Path
) -> None:
    ns = make_ns(mgmt, "kcsec-tok")
    with CanaryFifo(tmp_path / "token") as token:
        fleet_cluster(mgmt, ns, "attacker", kubeconfig(listener.url, {"tokenFile": str(token.path)}))
        deploy_to(mgmt, "app", ns, "attacker", chart_repo, f"{ns}-t")
        msg = reported(mgmt, "app", ns, "users[0].user.tokenFile is a local file path", abort=lambda: leaked(token))
        assert f"cluster attacker in namespace {ns}" in msg, msg
        assert str(token.path) not in msg  # the value is never echoed
        time.sleep(5)  # several retries (backoff 1-5 s)
        assert leaked(token) is None
    assert listener.seen == [], "the tenant's server was contacted"
    assert_no_leak(controller, listener, token.canary)


def test_client_certificate_paths_are_refused_never_read(
    mgmt: Cluster, controller: Controller, chart_repo: Any, listener: Listener, tmp_path: Path
) -> None:
    """With the controller's own certificate and key, a tenant naming the real API server would act as the
    controller; here the files are canaries and a read of either fails the test."""
    reads_are_observable(tmp_path)
    ns = make_ns(mgmt, "kcsec-crt")
    crt, key = CanaryFile(tmp_path / "tls.crt"), CanaryFile(tmp_path / "tls.key")
    user = {"client-certificate": str(crt.path), "client-key": str(key.path)}
    fleet_cluster(mgmt, ns, "attacker", kubeconfig(listener.url.replace("http:", "https:"), user))
    # a path relative to the kubeconfig's own directory (client-go resolves it there), next to inline data
    rel = {"client-certificate-data": "", "client-key": "../../tls.key", "token": "x"}
    fleet_cluster(mgmt, ns, "relative", kubeconfig(listener.url, rel))
    deploy_to(mgmt, "app", ns, "attacker", chart_repo, f"{ns}-t")
    deploy_to(mgmt, "rel", ns, "relative", chart_repo, f"{ns}-t2")

    def read() -> str | None:
        files = [f.path.name for f in (crt, key) if f.read()]
        return f"the controller (or helm) read the local file(s) {files}" if files else None

    reported(mgmt, "app", ns, "users[0].user.client-certificate is a local file path", abort=read)
    reported(mgmt, "rel", ns, "users[0].user.client-key is a local file path", abort=read)
    time.sleep(5)
    assert read() is None
    assert_no_leak(controller, listener, crt.canary, key.canary)


def test_cross_namespace_kubeconfig_secret_is_refused_unread(
    mgmt: Cluster,
    controller: Controller,
    chart_repo: Any,
    downstream_cluster: Any,
) -> None:
    """Tenant A names tenant B's kubeconfig Secret (B's credentials to the downstream cluster): refused on
    every HelmApp targeting that Cluster, the Secret is never read, nothing lands on the downstream cluster."""
    down = Cluster(downstream_cluster)
    tenant_a, tenant_b = make_ns(mgmt, "kcsec-a"), make_ns(mgmt, "kcsec-b")
    fleet_cluster(mgmt, tenant_a, "borrowed", yaml.safe_dump(downstream_cluster.kubeconfig_dict()), secret_ns=tenant_b)
    target = f"{tenant_a}-t"
    for name in ("one", "two"):
        deploy_to(mgmt, name, tenant_a, "borrowed", chart_repo, target)

    def deployed() -> str | None:
        found = [n for n in ("one", "two") if down.release_secrets(n, target)]
        return f"deployed with the other tenant's credentials: {found}" if found else None

    for name in ("one", "two"):
        msg = reported(
            mgmt, name, tenant_a, f"kubeConfigSecretNamespace {tenant_b} is not the Cluster's namespace", abort=deployed
        )
        assert f"cluster borrowed in namespace {tenant_a}" in msg, msg
    time.sleep(5)
    assert deployed() is None
    assert down.cp.kubectl("get", "namespace", target, check=False).returncode != 0
    assert f"kubeconfig Secret {tenant_b}/" not in controller.text()  # no connection was built from it


def test_cross_namespace_kubeconfig_secret_with_the_operator_flag(
    mgmt: Cluster,
    management_cluster: Any,
    helm_log: tuple[Path, e2e.HelmLog],
    workdir: Path,
    published: None,
    chart_repo: Any,
    downstream_cluster: Any,
) -> None:
    """The operator lists B's namespace (``--kubeconfig-secret-namespaces``): the same Cluster deploys."""
    down = Cluster(downstream_cluster)
    shared = make_ns(mgmt, "kcok-creds")
    tenant = make_ns(mgmt, "kcok-a")
    ctl = Controller(management_cluster, helm_log[0], workdir, namespaces=("kcok-*",))
    ctl.start_args = ["--kubeconfig-secret-namespaces", f"unrelated,{shared}"]
    ctl.start()
    try:
        fleet_cluster(mgmt, tenant, "borrowed", yaml.safe_dump(downstream_cluster.kubeconfig_dict()), secret_ns=shared)
        target = f"{tenant}-t"
        deploy_to(mgmt, "app", tenant, "borrowed", chart_repo, target)
        e2e.wait_ready(mgmt, "app", tenant, 150)
        assert down.release_status("app", target) == "deployed"
        assert f"connection built from kubeconfig Secret {shared}/kc-borrowed" in ctl.text()
    finally:
        assert ctl.stop() == 0, ctl.text()[-4000:]
