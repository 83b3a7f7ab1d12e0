"""``hack/devenv up|env|down|status``: the local stack in the background, for people and benchmarks.

``up`` starts a small supervisor process that owns a management and a downstream control plane, a
plain-HTTP OCI registry and an HTTP chart repo; every component dies with the supervisor, and ``down``
stops it. State lives under ``$HELMOPS_CACHE_DIR/devenv``. ``up`` is idempotent: a healthy stack is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import proc
from .chartrepo import ChartRepo
from .controlplane import ControlPlane
from .registry import Registry
from .tools import cache_dir, ensure_all

ENV_NAMES = (
    "HELMOPS_MGMT_KUBECONFIG",
    "HELMOPS_DOWNSTREAM_KUBECONFIG",
    "HELM",
    "KUBECTL",
    "HELMOPS_OCI_REGISTRY",
    "HELMOPS_CHART_REPO_URL",
    "HELMOPS_CHART_REPO_DIR",
)


def state_dir() -> Path:
    return Path(os.environ.get("HELMOPS_DEVENV_DIR") or cache_dir() / "devenv")


def _state_file() -> Path:
    return state_dir() / "state.json"


def read_state() -> dict[str, str] | None:
    try:
        state: dict[str, str] = json.loads(_state_file().read_text())
    except (OSError, ValueError):
        return None
    return state if _alive(int(state.get("pid", "0"))) else None


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def up(timeout: float = 180) -> dict[str, str]:
    state = read_state()
    if state:
        print(f"devenv: already up (supervisor pid {state['pid']})", file=sys.stderr)
        return state
    ensure_all()  # provision in the foreground so its progress is visible
    d = state_dir()
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    with open(d / "supervisor.log", "ab") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "support.devenv", "serve"], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, env=proc.module_env(os.environ),
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_state()
        if state:
            print("devenv: up", file=sys.stderr)
            return state
        if supervisor.poll() is not None:
            tail = (d / "supervisor.log").read_text(errors="replace").splitlines()[-15:]
            raise SystemExit("devenv: the supervisor exited:\n" + "\n".join(tail))
        time.sleep(0.5)
    raise SystemExit(f"devenv: the stack did not come up in {timeout:.0f}s; see {d / 'supervisor.log'}")


def serve() -> None:
    """The supervisor: start everything, publish state, wait for SIGTERM, stop everything."""
    d = state_dir()
    tools = ensure_all()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    mgmt = ControlPlane(tools, name="management", workdir=d / "management")
    down = ControlPlane(tools, name="downstream", workdir=d / "downstream")
    registry = Registry(tools, workdir=d / "registry")
    repo = ChartRepo(tools, workdir=d / "chartrepo")
    parts: list[ControlPlane | Registry | ChartRepo] = [mgmt, down, registry, repo]
    try:
        for part in parts:
            part.start()
        state = {
            "pid": str(os.getpid()),
            "HELMOPS_MGMT_KUBECONFIG": str(mgmt.kubeconfig),
            "HELMOPS_DOWNSTREAM_KUBECONFIG": str(down.kubeconfig),
            "HELM": str(tools.helm),
            "KUBECTL": str(tools.kubectl),
            "HELMOPS_OCI_REGISTRY": registry.host,
            "HELMOPS_CHART_REPO_URL": repo.url,
            "HELMOPS_CHART_REPO_DIR": str(repo.dir),
        }
        tmp = _state_file().with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.rename(_state_file())
        print(f"devenv: serving {json.dumps(state)}", flush=True)
        stop.wait()
    finally:
        for part in reversed(parts):
            part.stop()
        _state_file().unlink(missing_ok=True)


def down() -> None:
    state = read_state()
    if not state:
        print("devenv: not running", file=sys.stderr)
        return
    pid = int(state["pid"])
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)
    print("devenv: down", file=sys.stderr)


def env_lines(state: dict[str, str]) -> list[str]:
    return [f"export {name}={state[name]}" for name in ENV_NAMES]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="hack/devenv", description="the local helmops stack in the background")
    p.add_argument("command", choices=["up", "env", "down", "status", "serve"])
    a = p.parse_args(argv)
    if a.command == "up":
        print("\n".join(env_lines(up())))
    elif a.command == "env":
        running = read_state()
        if not running:
            print("devenv: not running; run 'hack/devenv up' first", file=sys.stderr)
            return 1
        print("\n".join(env_lines(running)))
    elif a.command == "down":
        down()
    elif a.command == "status":
        current = read_state()
        print(json.dumps(current, indent=2) if current else "not running")
        return 0 if current else 1
    else:
        serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
