"""The helm driver's argv and per-call options, with a fake ``Command.run`` (no helm process)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import semver

from helmops.helm import HelmCommand, HelmDriver, ReleaseSpec, build_argv
from helmops.helm.command import _CALL, CallOptions


class FakeCommand(HelmCommand):
    def __init__(self, **kw: Any) -> None:
        super().__init__(base_env={}, executable="helm", kubeconfig=Path("/k/config"), **kw)
        self.calls: list[tuple[list[str], CallOptions]] = []

    async def run(self, command: list[Any], input: bytes | None = None) -> bytes:
        opts = _CALL.get() or CallOptions()
        self.calls.append((build_argv(self._executable, command, opts, self._cluster_args()), opts))
        return json.dumps({"version": 3, "info": {"status": "deployed"}}).encode()


class FakeClient:
    version = semver.Version(3, 17, 2)


def _driver(tmp_path: Path) -> tuple[HelmDriver, FakeCommand]:
    cmd = FakeCommand()
    return HelmDriver(FakeClient(), cmd, concurrency=2, work_dir=tmp_path), cmd  # type: ignore[arg-type]


def _spec(**kw: Any) -> ReleaseSpec:
    base: dict[str, Any] = dict(
        name="rel",
        namespace="ns1",
        chart_path=Path("/c/hello-0.1.0.tgz"),
        chart_version="0.1.0",
        values={"a": 1},
        labels={"helmops.cattle.io/fingerprint": "abc"},
    )
    base.update(kw)
    return ReleaseSpec(**base)


async def test_upgrade_defaults_follow_fleet(tmp_path: Path) -> None:
    driver, cmd = _driver(tmp_path)
    out = await driver.install_or_upgrade(_spec())
    assert out.revision == 3 and out.status == "deployed"
    argv, opts = cmd.calls[0]
    assert argv[:4] == ["helm", "upgrade", "rel", "/c/hello-0.1.0.tgz"]
    assert "--install" in argv and "--reset-values" in argv and "--create-namespace" in argv
    assert argv[argv.index("--history-max") + 1] == "2"
    assert argv[argv.index("--namespace") + 1] == "ns1"
    assert argv[argv.index("--kubeconfig") + 1] == "/k/config"
    assert argv[argv.index("--labels") + 1] == "helmops.cattle.io/fingerprint=abc"
    assert "--enable-dns" in argv
    assert "--wait" not in argv and "--wait-for-jobs" not in argv and "--atomic" not in argv
    assert "--take-ownership" in argv  # ReleaseSpec default: Fleet's upgrade path
    assert argv[argv.index("--timeout") + 1] == "300s"
    assert "--values" in argv and argv[argv.index("--values") + 1] == "-"
    # a private helm home per call
    assert set(opts.env) >= {"HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"}
    assert opts.env["HELM_CACHE_HOME"].startswith(str(tmp_path))
    assert not driver.holds("ns1", "rel")


async def test_upgrade_flags_from_spec(tmp_path: Path) -> None:
    driver, cmd = _driver(tmp_path)
    await driver.install_or_upgrade(
        _spec(
            atomic=True,
            force=True,
            timeout_seconds=42,
            wait_for_jobs=True,
            history_max=7,
            skip_schema_validation=True,
            enable_dns=False,
            service_account="deployer",
            take_ownership=False,
        )
    )
    argv, opts = cmd.calls[0]
    for flag in ("--atomic", "--force", "--wait", "--wait-for-jobs", "--skip-schema-validation"):
        assert flag in argv, flag
    assert "--enable-dns" not in argv and "--take-ownership" not in argv
    assert argv[argv.index("--timeout") + 1] == "42s"
    assert argv[argv.index("--history-max") + 1] == "7"
    assert argv[argv.index("--kube-as-user") + 1] == "system:serviceaccount:ns1:deployer"
    assert opts.process_timeout == 42 + 60


async def test_wait_without_jobs(tmp_path: Path) -> None:
    driver, cmd = _driver(tmp_path)
    await driver.install_or_upgrade(_spec(timeout_seconds=10))
    argv, _ = cmd.calls[0]
    assert "--wait" in argv and "--wait-for-jobs" not in argv


async def test_uninstall_and_impersonation(tmp_path: Path) -> None:
    driver, cmd = _driver(tmp_path)
    from pyhelm3 import Client

    client = Client.__new__(Client)  # a real Client around the fake Command, without `helm version`
    client._command = cmd
    client.version = semver.Version(3, 17, 2)
    driver.client = client
    await driver.uninstall("rel", "ns1", timeout_seconds=0, service_account="sa", service_account_namespace="team")
    argv, _ = cmd.calls[0]
    assert argv[:3] == ["helm", "uninstall", "rel"] and "--wait" in argv
    assert argv[argv.index("--kube-as-user") + 1] == "system:serviceaccount:team:sa"
    assert "--labels" not in argv


def test_build_argv_local_commands_get_no_cluster_flags() -> None:
    opts = CallOptions(cluster_flags=["--kube-as-user", "x"], apply_flags=["--labels", "a=b"])
    argv = build_argv("helm", ["pull", "c", "--repo", "http://r/"], opts, ["--kubeconfig", "/k"])
    assert argv == ["helm", "pull", "c", "--repo", "http://r/"]
    argv = build_argv("helm", ["rollback", "r", "--history-max", 10], CallOptions(history_max=3), [])
    assert argv == ["helm", "rollback", "r", "--history-max", "3"]


@pytest.mark.parametrize("helm4", [False, True])
async def test_atomic_flag_by_helm_major(tmp_path: Path, helm4: bool) -> None:
    driver, cmd = _driver(tmp_path)
    driver.client.version = semver.Version(4, 0, 0) if helm4 else semver.Version(3, 17, 2)  # type: ignore[misc]
    await driver.install_or_upgrade(_spec(atomic=True))
    argv, _ = cmd.calls[0]
    assert ("--rollback-on-failure" in argv) is helm4 and ("--atomic" in argv) is not helm4


async def test_helm_concurrency_cap_and_holds(tmp_path: Path) -> None:
    import asyncio

    running = peak = 0
    gate = asyncio.Event()

    class Slow(FakeCommand):
        async def run(self, command: list[Any], input: bytes | None = None) -> bytes:
            nonlocal running, peak
            running += 1
            peak = max(peak, running)
            await gate.wait()
            running -= 1
            return await super().run(command, input)

    cmd = Slow()
    driver = HelmDriver(FakeClient(), cmd, concurrency=2, work_dir=tmp_path)  # type: ignore[arg-type]
    # five tenants: only the controller-wide cap of 2 applies (the per-tenant cap is tested below)
    specs = [_spec(name=f"r{i}", tenant=f"team{i}") for i in range(5)]
    tasks = [asyncio.create_task(driver.install_or_upgrade(s)) for s in specs]
    for _ in range(200):
        if running == 2:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # a third call would have started by now if the cap did not hold
    assert running == 2 and driver.active == 2
    assert all(driver.holds("ns1", f"r{i}") for i in range(5))  # queued calls hold their release too
    gate.set()
    await asyncio.gather(*tasks)
    assert peak == 2 and not driver.holds("ns1", "r0")


async def test_one_tenant_never_holds_every_slot(tmp_path: Path) -> None:
    """The driver charges each call to the HelmApp's namespace: one namespace's slow releases leave a slot
    free, and the other namespace's call runs while they wait."""
    import asyncio

    gate = asyncio.Event()
    started: list[str] = []

    class Slow(FakeCommand):
        async def run(self, command: list[Any], input: bytes | None = None) -> bytes:
            started.append(command[1] if len(command) > 1 else "")
            if not str(command[1]).startswith("b-"):
                await gate.wait()
            return await super().run(command, input)

    driver = HelmDriver(FakeClient(), Slow(), concurrency=3, work_dir=tmp_path)  # type: ignore[arg-type]
    assert driver.slots.per_tenant == 2
    hogs = [asyncio.create_task(driver.install_or_upgrade(_spec(name=f"a-{i}", tenant="team-a"))) for i in range(4)]
    for _ in range(100):
        await asyncio.sleep(0)
    assert driver.slots.held("team-a") == 2 and driver.slots.waiting("team-a") == 2
    out = await asyncio.wait_for(driver.install_or_upgrade(_spec(name="b-1", tenant="team-b")), 5)
    assert out.status == "deployed"
    gate.set()
    await asyncio.gather(*hogs)
    assert driver.slots.in_use == 0


def test_release_spec_tenant_defaults_to_the_helmapp_namespace() -> None:
    assert _spec(service_account_namespace="team-a").slot_tenant == "team-a"
    assert _spec(service_account_namespace="team-a", tenant="t").slot_tenant == "t"
    assert _spec().slot_tenant == "ns1"


async def test_secret_values_are_redacted_per_call(tmp_path: Path) -> None:
    driver, cmd = _driver(tmp_path)
    await driver.install_or_upgrade(_spec(redact=("s3cret-pass",)))
    _, opts = cmd.calls[0]
    assert opts.secrets == ("s3cret-pass",)
    assert "s3cret-pass" not in repr(_spec(redact=("s3cret-pass",)))


def test_secret_strings_from_values() -> None:
    from helmops.desired.adapters import secret_strings

    values = {"db": {"password": "hunter22", "port": 5432, "tls": True}, "public": "visible", "list": ["abcd"]}
    # Keys below a Secret-derived subtree are masked too: the API server may quote them back in errors.
    assert secret_strings(values, [("db",), ("list",), ("missing", "x")]) == (
        "5432", "abcd", "hunter22", "password", "port"
    )
