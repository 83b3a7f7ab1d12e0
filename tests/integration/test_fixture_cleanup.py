"""No etcd, kube-apiserver, registry or chart-repo process outlives the thing that started it.

Runs the fixtures in a child Python process, so the test can watch what happens when that owner stops
cleanly, raises, or is killed outright (the pytest-crash case).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import proc

pytestmark = pytest.mark.integration

OWNER = r"""
import json, sys, time
from support.tools import ensure_all
from support.controlplane import ControlPlane
from support.registry import Registry
from support.chartrepo import ChartRepo
mode = sys.argv[1]
t = ensure_all()
things = [ControlPlane(t, name="cleanup").start(), Registry(t, tls=True).start(), ChartRepo(t).start()]
print(json.dumps([p for x in things for p in x.pids]), flush=True)
if mode == "stop":
    for x in things: x.stop()
elif mode == "raise":
    raise SystemExit("owner failed")
else:
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False


def _run_owner(mode: str, tmp_path: Path) -> list[int]:
    script = tmp_path / "owner.py"
    script.write_text(OWNER)
    owner = subprocess.Popen(
        [sys.executable, str(script), mode], stdout=subprocess.PIPE, text=True, env=proc.module_env(os.environ)
    )
    assert owner.stdout is not None
    pids: list[int] = json.loads(owner.stdout.readline())
    assert len(pids) == 5 and all(_alive(p) for p in pids)  # etcd, apiserver, registry + sibling, repo
    if mode == "kill":
        os.kill(owner.pid, signal.SIGKILL)
    owner.wait(timeout=120)
    return pids


@pytest.mark.parametrize("mode", ["stop", "raise", "kill"])
def test_no_process_outlives_its_owner(mode: str, tmp_path: Path, tools: object) -> None:
    pids = _run_owner(mode, tmp_path)
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [p for p in pids if _alive(p)] == []
