"""The chart cache on a really full filesystem: a 1 MiB tmpfs, filled to the last byte after the controller
started on it. A HelmApp that needs a new chart is refused with a retryable condition naming the cache (no
crash, no partial file left, the controller keeps serving), and deploys by itself once there is room again.

Needs a tmpfs mount, so root with CAP_SYS_ADMIN (this machine and its CI runner have both). Outside CI a
machine without them skips; in CI (``CI=true``) the test fails instead, as every missing prerequisite does.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import controller_helpers as e2e
import pytest

from support.chartrepo import ChartRepo
from support.charts import ChartFactory
from support.tools import Tools

pytestmark = pytest.mark.integration

MOUNT_SIZE = "1m"


@pytest.fixture(scope="module")
def mgmt(management_cluster: Any) -> e2e.Cluster:
    c = e2e.Cluster(management_cluster)
    for crd in sorted((Path(__file__).resolve().parents[2] / "crds").glob("helmapps*.yaml")):
        c.kubectl("apply", "-f", str(crd))
    return c


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={MOUNT_SIZE},mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        reason = f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(directory: Path) -> Path:
    """A file taking every free byte of ``directory``'s filesystem."""
    filler = directory / "filler"
    block = b"\0" * 65536
    with open(filler, "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(block)
        size = 4096
        while size:
            try:
                f.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                size //= 2
    return filler


def test_a_full_chart_cache_refuses_cleanly_and_recovers(
    mgmt: e2e.Cluster, management_cluster: Any, chart_repo: ChartRepo, charts: ChartFactory, tools: Tools,
    tiny_fs: Path, tmp_path: Path,
) -> None:  # fmt: skip
    chart_repo.publish(charts.package("hello", "181.0.0"))
    ns = e2e.make_ns(mgmt, "cfull")
    ctl = e2e.Controller(
        management_cluster, tools.helm, tmp_path, namespaces=("cfull-*",), HELMOPS_CHART_CACHE_DIR=str(tiny_fs)
    ).start()
    try:
        e2e.wait_for("cache directories made", lambda: (tiny_fs / "charts" / "sha256").is_dir(), 60)
        filler = fill(tiny_fs)
        mgmt.apply(e2e.helmapp("full", ns, repo=chart_repo.url, chart="hello", version="181.0.0"))

        def refused() -> str:
            cond = mgmt.condition("full", ns, "Accepted")
            return str(cond.get("message") or "") if cond.get("status") == "False" else ""

        msg = e2e.wait_for("refused for want of room", refused, 90)
        assert "chart cache directory" in msg and "no room" in msg, msg
        assert "NotAccepted" in mgmt.event_reasons("full", ns)
        assert ctl.proc is not None and ctl.proc.poll() is None, ctl.text()[-3000:]
        assert "Traceback" not in ctl.text()
        assert not list((tiny_fs / "charts" / "sha256").iterdir())  # nothing half-written became an entry
        assert not list((tiny_fs / "charts" / "tmp").iterdir())  # and no partial file is left behind
        assert mgmt.release_secrets("full", f"{ns}-target") == []

        filler.unlink()  # room again: the retry deploys without anyone touching the HelmApp
        e2e.wait_ready(mgmt, "full", ns, timeout=120)
        assert (mgmt.configmap("full-hello", f"{ns}-target") or {}).get("chartVersion") == "181.0.0"
        assert len(list((tiny_fs / "charts" / "sha256").iterdir())) == 1
    finally:
        assert ctl.stop() == 0
