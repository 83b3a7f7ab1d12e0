"""What the driver does around helm to keep it cheap: one kube cache per cluster connection that outlives
each call (while the per-call helm homes do not), and the operator's opt-in to skip helm's client-side
OpenAPI validation, off unless asked for. A fake ``Command.run``; no helm process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import semver

from helmops.helm import HelmCommand, HelmDriver, ReleaseSpec, build_argv
from helmops.helm.command import _CALL, CallOptions
from helmops.helm.driver import DISABLE_OPENAPI_VALIDATION_ENV, apply_flags, openapi_validation_disabled


class FakeCommand(HelmCommand):
    def __init__(self) -> None:
        super().__init__(base_env={}, executable="helm", kubeconfig=Path("/k/config"))
        self.calls: list[tuple[list[str], CallOptions]] = []

    async def run(self, command: list[Any], input: bytes | None = None) -> bytes:
        opts = _CALL.get() or CallOptions()
        self.calls.append((build_argv(self._executable, command, opts, self._cluster_args()), opts))
        return json.dumps({"version": 1, "info": {"status": "deployed"}}).encode()


class FakeClient:
    version = semver.Version(3, 17, 2)


def spec(name: str = "rel") -> ReleaseSpec:
    return ReleaseSpec(
        name=name, namespace="ns", chart_path=Path("/c/hello.tgz"), chart_version="1.0.0", values={"a": 1}
    )


async def test_kube_cache_is_stable_per_connection_and_homes_are_per_call(tmp_path: Path) -> None:
    cmd = FakeCommand()
    driver = HelmDriver(FakeClient(), cmd, concurrency=2, work_dir=tmp_path)
    await driver.install_or_upgrade(spec("a"))
    await driver.rollback("a", "ns", 1, force=False, timeout_seconds=0, service_account=None, history_max=2)
    envs = [opts.env for _argv, opts in cmd.calls]
    assert {e["KUBECACHEDIR"] for e in envs} == {str(tmp_path / "kube-cache")} == {str(driver.kube_cache_dir)}
    assert envs[0]["HELM_CACHE_HOME"] != envs[1]["HELM_CACHE_HOME"]  # credentials never outlive a call
    other = HelmDriver(FakeClient(), FakeCommand(), concurrency=1, work_dir=tmp_path / "x")
    assert other.kube_cache_dir != driver.kube_cache_dir  # one per cluster connection


@pytest.mark.parametrize(
    ("value", "expected"), [("", False), ("false", False), ("0", False), ("true", True), ("1", True), ("Yes", True)]
)
def test_openapi_validation_opt_in_parsing(value: str, expected: bool) -> None:
    assert openapi_validation_disabled({DISABLE_OPENAPI_VALIDATION_ENV: value}) is expected
    assert openapi_validation_disabled({}) is False


async def test_openapi_validation_is_kept_unless_the_operator_opts_out(tmp_path: Path) -> None:
    assert "--disable-openapi-validation" not in apply_flags(spec())
    for optout in (False, True):
        cmd = FakeCommand()
        driver = HelmDriver(
            FakeClient(),
            cmd,
            concurrency=1,
            work_dir=tmp_path,
            disable_openapi_validation=optout,
        )
        await driver.install_or_upgrade(spec())
        await driver.rollback("rel", "ns", 1, force=False, timeout_seconds=0, service_account=None, history_max=2)
        install, rollback = (argv for argv, _ in cmd.calls)
        assert ("--disable-openapi-validation" in install) is optout
        assert "--disable-openapi-validation" not in rollback  # not a flag of rollback
