"""The benchmark's helm wrapper logs each call's argv and then execs the real helm.

Moved from tests/unit/test_bench_harness.py: it executes the wrapper script.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import report
from bench.stack import write_helm_wrapper

pytestmark = pytest.mark.integration


def test_helm_wrapper_logs_argv_then_execs(tmp_path: Path) -> None:
    import subprocess

    fake = tmp_path / "fake-helm"
    fake.write_text('#!/bin/sh\necho "real $*"\n')
    fake.chmod(0o755)
    log = tmp_path / "calls.log"
    wrapper = write_helm_wrapper(tmp_path / "helm", fake, log)
    out = subprocess.run([str(wrapper), "upgrade", "rel", "--install"], capture_output=True, text=True, check=True)
    assert out.stdout == "real upgrade rel --install\n"
    assert report.helm_calls(log.read_text()) == {"upgrade": 1}
