"""``HelmCommand.run`` against a fake helm script: exec (no shell), process groups, timeout, redaction.

Moved from tests/unit: every test here starts a process (the pure redaction and error-class tests stayed in
tests/unit/test_helm_redact.py).
"""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest
from pyhelm3 import errors as helm_errors

from helmops.helm import HelmCommand, call_options
from helmops.helm.command import CallOptions, HelmTimeoutError

pytestmark = pytest.mark.integration


def _script(tmp_path: Path, body: str) -> str:
    p = tmp_path / "fake-helm"
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return str(p)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie counts as dead
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


async def test_env_and_stdin_per_call(tmp_path: Path) -> None:
    exe = _script(tmp_path, 'echo "$HELM_CACHE_HOME $*"; cat\n')
    cmd = HelmCommand(base_env={"PATH": os.environ["PATH"]}, executable=exe)
    with call_options(CallOptions(env={"HELM_CACHE_HOME": "/private"})):
        out = await cmd.run(["status", "rel"], b"INPUT")
    assert out.decode() == "/private status rel\nINPUT"


async def test_failure_stderr_is_redacted_and_classified(tmp_path: Path) -> None:
    exe = _script(tmp_path, 'echo "Error: release: not found (password=hunter22 s3cr3t-token)" >&2; exit 1\n')
    cmd = HelmCommand(base_env={}, executable=exe)
    with call_options(CallOptions(secrets=["s3cr3t-token"])), pytest.raises(helm_errors.ReleaseNotFoundError) as ei:
        await cmd.run(["status", "rel"])
    text = str(ei.value)
    assert "hunter22" not in text and "s3cr3t-token" not in text and "release: not found" in text


async def test_cancel_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # helm stand-in ignores SIGTERM and has a child: only a group SIGKILL ends both
    exe = _script(tmp_path, f"trap '' TERM\nsleep 300 &\necho $! > {pidfile}\nwait\n")
    cmd = HelmCommand(base_env={}, executable=exe)
    with call_options(CallOptions(term_grace=0.5)):
        task = asyncio.create_task(cmd.run(["upgrade", "x"]))
        for _ in range(100):
            if pidfile.exists() and pidfile.read_text().strip():
                break
            await asyncio.sleep(0.05)
        child = int(pidfile.read_text())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    for _ in range(50):
        if not _alive(child):
            break
        await asyncio.sleep(0.05)
    assert not _alive(child)


async def test_sigterm_first_lets_helm_finish(tmp_path: Path) -> None:
    marker = tmp_path / "terminated"
    exe = _script(tmp_path, f"trap 'echo done > {marker}; exit 1' TERM\nsleep 300 &\nwait\n")
    cmd = HelmCommand(base_env={}, executable=exe)
    with call_options(CallOptions(term_grace=5)):
        task = asyncio.create_task(cmd.run(["upgrade", "x"]))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert marker.read_text().strip() == "done"


async def test_process_timeout(tmp_path: Path) -> None:
    exe = _script(tmp_path, "sleep 300\n")
    cmd = HelmCommand(base_env={}, executable=exe)
    with call_options(CallOptions(process_timeout=0.3, term_grace=0.3)), pytest.raises(HelmTimeoutError):
        await cmd.run(["upgrade", "x"])


async def test_helm_data_segment_is_capped_and_oom_is_named(tmp_path: Path) -> None:
    """A tenant-written release record can make helm allocate gigabytes: every helm child gets RLIMIT_DATA,
    and Go's out-of-memory dump becomes a message that names the limit."""
    from helmops.helm.command import helm_memory_limit

    assert helm_memory_limit({}) == 2048 * 1024 * 1024
    assert helm_memory_limit({"HELMOPS_HELM_MAX_MEMORY_MIB": "0"}) is None
    assert helm_memory_limit({"HELMOPS_HELM_MAX_MEMORY_MIB": "junk"}) == 2048 * 1024 * 1024
    exe = _script(tmp_path, 'sleep 0.3; grep "Max data size" /proc/$$/limits\n')
    cmd = HelmCommand(base_env={"PATH": os.environ["PATH"], "HELMOPS_HELM_MAX_MEMORY_MIB": "300"}, executable=exe)
    out = (await cmd.run(["status", "rel"])).decode().split()
    assert out[3:5] == [str(300 * 1024 * 1024)] * 2  # soft and hard limit
    exe = _script(tmp_path, 'echo "fatal error: out of memory allocating heap arena metadata" >&2; exit 2\n')
    cmd = HelmCommand(base_env={"HELMOPS_HELM_MAX_MEMORY_MIB": "300"}, executable=exe)
    with pytest.raises(helm_errors.Error) as ei:
        await cmd.run(["status", "rel"])
    assert "memory limit (300 MiB" in str(ei.value) and "heap arena" not in str(ei.value)
