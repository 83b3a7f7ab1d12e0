"""``make demo``: helmops end to end on the embedded default, in one command.

Starts a local control plane (unless ``KUBECONFIG`` names a cluster you chose), an OCI registry and an HTTP
chart repository; installs the CRDs; runs ``helmops run --enable-helmops`` against the cluster; publishes
the example chart to both sources; applies ``examples/*.yaml``; and shows the HelmApps turning Ready in a
live table. It then keeps running until Ctrl-C and cleans up everything it started.

On a terminal the table is redrawn on every change; off a terminal (a CI log, ``make demo > file``) each change
is printed once, as one line per HelmApp that changed, and every run ends with a one-screen summary of what
happened. ``--with-promotion`` also applies ``examples/promotion/`` (dev → staging → prod, docs/promotion.md).

Not part of the helmops package: ``hack/demo`` runs it as ``demo`` with ``hack/`` and ``tests/`` (for the local
stack in ``tests/support``) on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from support import proc
from support.chartrepo import ChartRepo
from support.charts import helm_env
from support.controlplane import ControlPlane
from support.registry import Registry
from support.tools import REPO_ROOT, Tools, ensure_all

EXAMPLES = REPO_ROOT / "examples"


def _say(msg: str) -> None:
    print(f"demo: {msg}", flush=True)


@dataclass
class History:
    """What the demo saw, for the closing summary: per HelmApp its first sighting, state changes and
    first Ready time."""

    started: float = field(default_factory=time.monotonic)
    seen: dict[str, float] = field(default_factory=dict)
    ready_at: dict[str, float] = field(default_factory=dict)
    changes: dict[str, int] = field(default_factory=dict)
    last: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def observe(self, rows: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
        """Records the table's rows; returns those that changed since the last look."""
        now = time.monotonic()
        changed = []
        for row in rows:
            name = row[0]
            self.seen.setdefault(name, now)
            if row[3] == "True":
                self.ready_at.setdefault(name, now)
            if self.last.get(name) != row:
                self.changes[name] = self.changes.get(name, 0) + 1
                self.last[name] = row
                changed.append(row)
        return changed

    def summary(self, log: Path) -> str:
        lines = [f"demo summary after {time.monotonic() - self.started:.0f}s:"]
        for name in sorted(self.last):
            row = self.last[name]
            ready = self.ready_at.get(name)
            took = f"Ready after {ready - self.seen[name]:.0f}s" if ready is not None else "never Ready"
            lines.append(f"  {name:<34} {row[2] or '-':<10} {took:<18} {self.changes[name]} change(s)  {row[4][:40]}")
        ready_now = sum(1 for r in self.last.values() if r[3] == "True")
        lines.append(f"  {ready_now}/{len(self.last)} HelmApps Ready at the end; helmops log: {log}")
        if log.exists():
            text = log.read_text(errors="replace")
            counts = {w: text.count(f" {w} ") for w in ("WARNING", "ERROR")}
            helm = text.count("helmops.helm: helm:")
            promoted = text.count("by helmops soak promotion:")
            held = text.count(" held: ")
            if promoted or held:
                lines.append(f"  safe promotion: {promoted} automatic promotion(s), {held} held action(s)")
            lines.append(
                f"  helmops log: {counts['WARNING']} warning(s), {counts['ERROR']} error(s), {helm} helm command(s)"
            )
        return "\n".join(lines[:24])


class Demo:
    def __init__(self, tools: Tools, workdir: Path, kubeconfig: Path | None) -> None:
        self.tools = tools
        self.workdir = workdir
        self.kubeconfig = kubeconfig
        self.cluster: ControlPlane | None = None
        self.registry = Registry(tools, workdir=workdir / "registry")
        self.repo = ChartRepo(tools, workdir=workdir / "chartrepo")
        self.controller: subprocess.Popen[bytes] | None = None
        self.env = helm_env(workdir / "helm")
        self.history = History()
        self.promotion = False
        self.tty = sys.stdout.isatty()

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.kubeconfig is not None
        return subprocess.run(
            [str(self.tools.kubectl), "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            check=check,
            env=self.env,
        )

    def start(self) -> None:
        if self.kubeconfig is None:
            _say("starting a local control plane (etcd + kube-apiserver)")
            self.cluster = ControlPlane(self.tools, name="demo", workdir=self.workdir / "cluster").start()
            self.kubeconfig = self.cluster.kubeconfig
        else:
            _say(f"using the cluster in KUBECONFIG={self.kubeconfig} (unset KUBECONFIG for a throwaway local one)")
        _say("starting an OCI registry (docker-registry) and an HTTP chart repository")
        self.registry.start()
        self.repo.start()
        _say("installing the CRDs")
        for crd in sorted((REPO_ROOT / "crds").glob("*.yaml")):
            self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
        self.kubectl("wait", "--for=condition=Established", "crd/helmapps.fleet.cattle.io", "--timeout=60s")
        self.publish_chart()
        self.start_controller()
        self.apply_examples(self.promotion)

    def publish_chart(self) -> None:
        out = self.workdir / "packages"
        out.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [str(self.tools.helm), "package", str(EXAMPLES / "charts" / "hello-web"), "-d", str(out)],
            check=True,
            capture_output=True,
            env=self.env,
        )
        tgz = next(out.glob("hello-web-*.tgz"))
        self.repo.publish(tgz)
        if self.promotion:  # a second version to promote (docs/promotion.md)
            subprocess.run(
                [str(self.tools.helm), "package", str(EXAMPLES / "charts" / "hello-web"), "--version", "1.1.0",
                 "-d", str(out / "next")],
                check=True, capture_output=True, env=self.env,
            )  # fmt: skip
            self.repo.publish(next((out / "next").glob("hello-web-*.tgz")))
        subprocess.run(
            [str(self.tools.helm), "push", str(tgz), f"oci://{self.registry.host}/charts", "--plain-http"],
            check=True,
            capture_output=True,
            env=self.env,
        )
        _say(f"published {tgz.name} to {self.repo.url} and oci://{self.registry.host}/charts")

    def start_controller(self) -> None:
        log = self.workdir / "helmops.log"
        env = {**os.environ, "HELMOPS_HELM": str(self.tools.helm), "HELMOPS_CACHE_DIR": str(self.workdir / "cache")}
        env.pop("EXPERIMENTAL_HELM_OPS", None)
        helmops = Path(sys.executable).parent / "helmops"
        argv = [
            str(helmops) if helmops.exists() else sys.executable,
            *([] if helmops.exists() else ["-m", "helmops.cli.main"]),
            "run",
            "--enable-helmops",
            "--kubeconfig",
            str(self.kubeconfig),
            "--health-port",
            str(proc.free_port()),
            "--metrics-port",
            str(proc.free_port()),
        ]
        self.controller = proc.start(argv, log, env=env)
        _say(f"running helmops (pid {self.controller.pid}, flag on); its log: {log}")

    def apply_examples(self, promotion: bool = False) -> None:
        self.kubectl("create", "namespace", "fleet-local", check=False)
        paths = sorted(EXAMPLES.glob("helmapp-*.yaml"))
        if promotion:
            paths += sorted((EXAMPLES / "promotion").glob("*.yaml"))
        for path in paths:
            text = (
                path.read_text()
                .replace("__CHART_REPO_URL__", self.repo.url)
                .replace("__OCI_REGISTRY__", self.registry.host)
            )
            self.kubectl("apply", "-f", "-", input=text)
            _say(f"applied {path.relative_to(REPO_ROOT)}")

    def rows(self) -> list[tuple[str, ...]]:
        out = self.kubectl("get", "helmapps", "-A", "-o", "json", check=False)
        items = json.loads(out.stdout).get("items", []) if out.returncode == 0 else []
        rows: list[tuple[str, ...]] = []
        for item in items:
            meta, spec, status = item["metadata"], item.get("spec", {}), item.get("status", {})
            helm = spec.get("helm", {})
            cond = {c.get("type"): c for c in status.get("conditions", [])}
            is_ready = cond.get("Ready", {}).get("status") == "True"
            message = cond.get("Ready", {}).get("message") or cond.get("Accepted", {}).get("message") or ""
            rows.append(
                (
                    f"{meta['namespace']}/{meta['name']}",
                    helm.get("chart") or helm.get("repo", ""),
                    status.get("version", ""),
                    "True" if is_ready else "False",
                    (status.get("display", {}).get("state") or "") + (f" {message}" if message else ""),
                )
            )
        return rows

    @staticmethod
    def render(rows: list[tuple[str, ...]]) -> str:
        rows = [("NAMESPACE/NAME", "CHART", "VERSION", "READY", "STATUS"), *rows]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        return "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=False)) + "  " + r[4][:100] for r in rows
        )

    def show(self, rows: list[tuple[str, ...]]) -> None:
        """Each change once: the whole table on a terminal, the changed rows otherwise."""
        changed = self.history.observe(rows)
        if not changed:
            return
        stamp = time.strftime("%H:%M:%S")
        if self.tty:
            print(f"\n{stamp}\n{self.render(rows)}", flush=True)
        else:
            for r in changed:
                print(f"{stamp} {r[0]}: {r[2] or '-'} ready={r[3]} {r[4][:100]}".rstrip(), flush=True)

    def watch(self, timeout: float, exit_when_ready: bool) -> bool:
        deadline = time.monotonic() + timeout
        all_ready = said_ready = False
        while True:
            if self.controller is not None and self.controller.poll() is not None:
                _say(f"helmops exited with code {self.controller.returncode}; see {self.workdir / 'helmops.log'}")
                return False
            rows = self.rows()
            self.show(rows)
            all_ready = bool(rows) and all(r[3] == "True" for r in rows)
            if all_ready and exit_when_ready:
                _say("all HelmApps are Ready")
                return True
            if all_ready and not said_ready:  # said once per time they all turn Ready
                _say("all HelmApps are Ready — helmops keeps them so; edit examples or press Ctrl-C to stop")
                deadline = float("inf")
            said_ready = all_ready
            if time.monotonic() > deadline:
                _say(f"not all HelmApps were Ready after {timeout:.0f}s; helmops log: {self.workdir / 'helmops.log'}")
                return all_ready
            time.sleep(1.5)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            if self.kubeconfig is not None:
                self.history.observe(self.rows())
        if self.history.last:
            print(self.history.summary(self.workdir / "helmops.log"), flush=True)
        _say("cleaning up")
        if self.controller is not None:
            proc.stop(self.controller, timeout=20)
        self.repo.stop()
        self.registry.stop()
        if self.cluster is not None:
            self.cluster.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make demo", description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--exit-when-ready", action="store_true", help="stop (exit 0) once every HelmApp is Ready")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for Ready before giving up")
    p.add_argument("--with-promotion", action="store_true", help="also apply examples/promotion (docs/promotion.md)")
    a = p.parse_args(argv)
    tools = ensure_all()
    # A KUBECONFIG the user exported is a cluster they chose; otherwise the demo brings its own.
    kubeconfig = Path(os.environ["KUBECONFIG"]) if os.environ.get("KUBECONFIG") else None
    with tempfile.TemporaryDirectory(prefix="helmops-demo-") as tmp:
        demo = Demo(tools, Path(tmp), kubeconfig)
        demo.promotion = a.with_promotion
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        ok = False
        try:
            demo.start()
            ok = demo.watch(a.timeout, a.exit_when_ready)
            if not a.exit_when_ready and ok:
                while demo.controller is not None and demo.controller.poll() is None:
                    time.sleep(1)
        except KeyboardInterrupt:
            ok = True
        except subprocess.CalledProcessError as exc:
            _say(f"failed: {' '.join(map(str, exc.cmd))}\n{exc.stderr}")
        finally:
            if not ok and demo.controller is not None:
                with contextlib.suppress(OSError):
                    print((demo.workdir / "helmops.log").read_text()[-4000:], file=sys.stderr)
            demo.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
