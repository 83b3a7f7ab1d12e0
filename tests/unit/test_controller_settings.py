"""Feature flag, settings, CLI parsing, the work queue, namespace protection, event filtering."""

from __future__ import annotations

import asyncio

import pytest

from helmops.api.parse import fallback_release_name as derived_release_name
from helmops.api.spec import HelmAppSpec
from helmops.cli.main import build_parser
from helmops.controller.reconciler import namespace_deletable
from helmops.desired.release import helm_options
from helmops.runtime.app import _trigger
from helmops.runtime.queue import WorkQueue
from helmops.runtime.settings import from_env, parse_bind_address, parse_bool


@pytest.mark.parametrize("v", ["1", "t", "T", "TRUE", "true", "True"])
def test_flag_true(v: str) -> None:
    assert parse_bool(v) and from_env({"EXPERIMENTAL_HELM_OPS": v}).enabled


@pytest.mark.parametrize("v", [None, "", "0", "false", "yes", "on", "tRuE", " true", "2"])
def test_flag_false(v: str | None) -> None:
    env = {} if v is None else {"EXPERIMENTAL_HELM_OPS": v}
    assert not from_env(env).enabled


def test_flag_cli_overrides() -> None:
    assert from_env({}, enable_flag=True).enabled


def test_settings_from_env() -> None:
    s = from_env(
        {
            "HELMOPS_RECONCILER_WORKERS": "7",
            "HELMOPS_HELM_CONCURRENCY": "3",
            "HELMOPS_HELM": "/x/helm",
            "HELMOPS_METRICS_BIND_ADDRESS": "127.0.0.1:9999",
            "KUBECONFIG": "/a:/b",
        },
    )
    assert (s.workers, s.helm_concurrency, s.helm) == (7, 3, "/x/helm")
    assert (s.metrics_host, s.metrics_port) == ("127.0.0.1", 9999)
    assert str(s.kubeconfig) == "/a"
    assert from_env({"HELMOPS_RECONCILER_WORKERS": "0"}).workers == 8  # unset or 0: the default
    assert from_env({}, kubeconfig="/k").kubeconfig is not None
    assert parse_bind_address(":8081", 1) == ("0.0.0.0", 8081)


def test_cli_run_flags() -> None:
    args = build_parser().parse_args(
        [
            "run",
            "--kubeconfig",
            "/k",
            "-n",
            "a",
            "--namespace",
            "b",
            "--enable-helmops",
            "--log-format",
            "json",
            "--health-port",
            "1",
            "--metrics-port",
            "2",
        ]
    )
    assert args.command == "run" and args.namespace == ["a", "b"] and args.enable_helmops
    assert (args.log_format, args.health_port, args.metrics_port) == ("json", 1, 2)
    assert not build_parser().parse_args(["run"]).enable_helmops


@pytest.mark.parametrize(
    ("ns", "ok"),
    [
        ("app", True),
        ("default", False),
        ("kube-system", False),
        ("kube-public", False),
        ("cattle-fleet-system", False),
        ("fleet-local", False),
        ("fleet-default", False),
        ("cattle-fleet-clusters-system", False),
        ("helmops-system", False),
        ("", False),
    ],
)
def test_namespace_deletable(ns: str, ok: bool) -> None:
    assert namespace_deletable(ns, own="helmops-system") is ok


def test_release_name_and_options() -> None:
    assert derived_release_name("hello") == "hello"
    weird = derived_release_name("Hello_World")
    assert weird.startswith("hello-world-") and len(weird) <= 53
    assert len(derived_release_name("x" * 80)) <= 53
    opts = helm_options(HelmAppSpec.model_validate({"helm": {"maxHistory": 0, "timeoutSeconds": -5}}))
    assert opts["maxHistory"] == 2 and opts["timeoutSeconds"] == 0


def test_status_only_changes_do_not_trigger() -> None:
    a = {"metadata": {"generation": 1, "labels": {"x": "1"}}, "status": {"a": 1}}
    b = {"metadata": {"generation": 1, "labels": {"x": "1"}}, "status": {"a": 2}}
    assert _trigger(a) == _trigger(b)
    assert _trigger(a) != _trigger({"metadata": {"generation": 2, "labels": {"x": "1"}}})
    assert _trigger(a) != _trigger({"metadata": {"generation": 1, "labels": {"x": "1"}, "deletionTimestamp": "t"}})
    # our own finalizer is added by a reconcile that goes on with the patched object: not a change;
    # another controller's finalizer edit is
    fin = {"metadata": {"generation": 1, "labels": {"x": "1"}, "finalizers": ["fleet.cattle.io/helmapp-finalizer"]}}
    assert _trigger(a) == _trigger(fin)
    other = {"metadata": {"generation": 1, "labels": {"x": "1"}, "finalizers": ["example.com/keep"]}}
    assert _trigger(a) != _trigger(other)


async def test_queue_dedup_dirty_and_delay() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.add("a")
    assert len(q) == 1
    key = await q.get()
    q.add("a")  # while processing: re-run after done
    assert len(q) == 0
    q.done(key)
    assert len(q) == 1
    assert await q.get() == "a"
    q.done("a")
    q.add_after("b", 0.05)
    q.add_after("b", 10)  # the earlier time wins
    got = await asyncio.wait_for(q.get(), 2)
    assert got == "b"
    q.close()


def test_json_log_lines() -> None:
    import json
    import logging

    from helmops.runtime.logs import JsonFormatter

    rec = logging.makeLogRecord(
        {"name": "helmops.x", "levelname": "INFO", "msg": "hello %s", "args": ("w",), "release": "r1"}
    )
    doc = json.loads(JsonFormatter().format(rec))
    assert doc["msg"] == "hello w" and doc["level"] == "info" and doc["logger"] == "helmops.x"
    assert doc["release"] == "r1" and "ts" in doc


def test_sharding_rule_and_flag() -> None:
    from helmops.controller.reconciler import in_shard

    unlabelled = {"metadata": {}}
    s1 = {"metadata": {"labels": {"fleet.cattle.io/shard-ref": "s1"}}}
    assert in_shard(unlabelled, None) and not in_shard(s1, None)
    assert in_shard(s1, "s1") and not in_shard(s1, "s2") and not in_shard(unlabelled, "s1")
    args = build_parser().parse_args(["run", "--shard-id", "s1"])
    assert from_env({}, shard_id=args.shard_id).shard_id == "s1"
    assert from_env({}).shard_id is None


def test_ca_bundle_refs() -> None:
    assert from_env({}).ca_bundle == ()
    s = from_env({"HELMOPS_CA_BUNDLE_NAMESPACE": "cattle-system", "HELMOPS_CA_BUNDLE_ADDITIONAL_SECRET": "more"})
    assert s.ca_bundle == (("cattle-system", "tls-ca", "cacerts.pem"), ("cattle-system", "more", "ca-additional.pem"))


def test_leader_election_settings() -> None:
    from helmops.runtime.leader import LeaseTimes, lease_name, lease_times

    assert lease_times({}) == LeaseTimes(45, 30, 2)
    t = lease_times(
        {
            "CATTLE_ELECTION_LEASE_DURATION": "1m",
            "CATTLE_ELECTION_RENEW_DEADLINE": "40",
            "CATTLE_ELECTION_RETRY_PERIOD": "bogus",
        }
    )
    assert (t.lease_duration, t.renew_deadline, t.retry_period) == (60, 40, 2)
    assert lease_name(None) == "helmops-leader-election"
    assert lease_name("s1") == "helmops-leader-election-shard-s1"
    assert build_parser().parse_args(["run", "--leader-elect"]).leader_elect
    assert from_env({}, leader_elect=True).leader_elect and not from_env({}).leader_elect
