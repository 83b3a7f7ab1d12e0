"""charts/helmops rendered by the real ``helm template`` (and linted by ``helm lint --strict``).

The chart's contract: nothing but CRDs unless ``helmops.enabled``; every workload carries the same scheduling
and security settings; least-privilege RBAC plus a separate, opt-out local cluster-admin binding; the
environment and arguments it gives the container are the ones ``helmops run`` understands.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from helmops.cli.main import build_parser
from helmops.runtime.settings import from_env
from support.charts import helm_env
from support.tools import REPO_ROOT, Tools

pytestmark = pytest.mark.integration

CHART = REPO_ROOT / "charts" / "helmops"
NS = "cattle-fleet-system"
#: kinds whose objects carry a pod spec (the chart must give every one the same scheduling).
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
ENABLED: dict[str, Any] = {"helmops": {"enabled": True}}


@pytest.fixture(scope="module")
def helm(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    env = helm_env(tmp_path_factory.mktemp("helm-home"))
    values_dir = tmp_path_factory.mktemp("values")
    counter = iter(range(1_000_000))

    def run(*args: str, values: dict[str, Any] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(tools.helm), *args]
        if values is not None:
            f = values_dir / f"values-{next(counter)}.yaml"
            f.write_text(yaml.safe_dump(values))
            argv += ["-f", str(f)]
        out = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)
        if check and out.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
        return out

    yield run


def render(helm: Any, values: dict[str, Any] | None = None, release: str = "helmops") -> list[dict[str, Any]]:
    out = helm("template", release, str(CHART), "--namespace", NS, values=values or {})
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def only(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "Pod":
        return dict(doc["spec"])
    if doc["kind"] == "CronJob":
        return dict(doc["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return dict(doc["spec"]["template"]["spec"])


def container(doc: dict[str, Any]) -> dict[str, Any]:
    (c,) = pod_spec(doc)["containers"]
    return dict(c)


def env_of(doc: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container(doc)["env"]}


def merged(*parts: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in parts:
        out.update(p)
    return out


# --- the feature flag -----------------------------------------------------------------------------------


def test_default_values_render_no_workload_rbac_or_serviceaccount(helm: Any) -> None:
    docs = render(helm)
    assert docs == [], f"flag off must render nothing but CRDs/NOTES, got {kinds(docs)}"


def test_default_values_are_the_flag_off() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["helmops"]["enabled"] is False
    assert values["localClusterAdmin"]["enabled"] is True


def test_enabled_renders_deployment_with_flag_env(helm: Any) -> None:
    docs = render(helm, ENABLED)
    assert "StatefulSet" not in kinds(docs)
    assert kinds(docs) == sorted(
        ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "ClusterRoleBinding", "Role", "RoleBinding",
         "Service", "Deployment"]
    )
    dep = only(docs, "Deployment", "helmops")
    assert dep["metadata"]["namespace"] == NS
    assert dep["spec"]["replicas"] == 1
    env = env_of(dep)
    assert env["EXPERIMENTAL_HELM_OPS"] == "true"
    assert env["HELMOPS_RECONCILER_WORKERS"] == "50"
    assert env["HELMOPS_METRICS_BIND_ADDRESS"] == ":8081"
    ns_env = next(e for e in container(dep)["env"] if e["name"] == "NAMESPACE")
    assert ns_env["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    args = container(dep)["args"]
    assert args[0] == "run"
    assert args[args.index("--log-format") + 1] == "json"
    assert args[args.index("--health-port") + 1] == "8080"
    assert args[args.index("--metrics-port") + 1] == "8081"
    assert "--shard-id" not in args
    assert pod_spec(dep)["serviceAccountName"] == only(docs, "ServiceAccount")["metadata"]["name"]


def test_no_servicemonitor_unless_enabled(helm: Any) -> None:
    assert "ServiceMonitor" not in kinds(render(helm, ENABLED))
    docs = render(helm, merged(ENABLED, {"metrics": {"serviceMonitor": {"enabled": True, "labels": {"r": "p"}}}}))
    sm = only(docs, "ServiceMonitor")
    assert sm["spec"]["endpoints"][0]["port"] == "metrics"
    assert sm["metadata"]["labels"]["r"] == "p"
    svc = only(docs, "Service")
    assert all(svc["metadata"]["labels"][k] == v for k, v in sm["spec"]["selector"]["matchLabels"].items())


def test_metrics_service(helm: Any) -> None:
    docs = render(helm, ENABLED)
    svc = only(docs, "Service")
    assert svc["spec"]["ports"] == [{"name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP"}]
    dep = only(docs, "Deployment")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items())
    ports = {p["name"]: p["containerPort"] for p in container(dep)["ports"]}
    assert ports == {"health": 8080, "metrics": 8081}
    assert "Service" not in kinds(render(helm, merged(ENABLED, {"metrics": {"service": {"enabled": False}}})))


# --- what helmops run understands ----------------------------------------------------------------------


def test_rendered_args_parse_with_the_real_cli(helm: Any) -> None:
    dep = only(render(helm, merged(ENABLED, {"watchNamespaces": ["a", "b"]})), "Deployment")
    args = build_parser().parse_args(container(dep)["args"])
    assert args.command == "run"
    assert args.log_format == "json"
    assert args.health_port == 8080
    assert args.metrics_port == 8081
    assert args.namespace == ["a", "b"]


def test_rendered_env_configures_the_controller(helm: Any) -> None:
    values = merged(
        ENABLED,
        {"controller": {"workers": 7, "helmConcurrency": 3, "resyncSeconds": 120, "pendingGraceSeconds": 30,
                        "backoffBaseSeconds": 2, "backoffCapSeconds": 60, "helmTermGraceSeconds": 10},
         "metrics": {"port": 9091}, "health": {"port": 9090}},
    )
    dep = only(render(helm, values), "Deployment")
    env = env_of(dep)
    env["NAMESPACE"] = NS  # from the downward API in a pod
    args = build_parser().parse_args(container(dep)["args"])
    s = from_env(env, health_port=args.health_port, metrics_port=args.metrics_port, log_format=args.log_format)
    assert s.enabled
    assert (s.workers, s.helm_concurrency) == (7, 3)
    assert (s.resync_seconds, s.pending_grace_seconds) == (120, 30)
    assert (s.backoff_base_seconds, s.backoff_cap_seconds, s.helm_term_grace_seconds) == (2, 60, 10)
    assert (s.health_port, s.metrics_port) == (9090, 9091)
    assert s.system_namespace == NS
    assert {p["name"]: p["containerPort"] for p in container(dep)["ports"]} == {"health": 9090, "metrics": 9091}
    assert container(dep)["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_shard_args_parse_with_the_real_cli(helm: Any) -> None:
    docs = render(helm, merged(ENABLED, {"shards": [{"id": "s1"}]}))
    args = container(only(docs, "Deployment", "helmops-shard-s1"))["args"]
    parsed = build_parser().parse_args(args)
    assert parsed.shard_id == "s1"
    assert from_env({}, shard_id=parsed.shard_id).shard_id == "s1"


def test_every_helmops_variable_the_chart_sets_is_read_by_the_controller(helm: Any) -> None:
    source = "\n".join(p.read_text() for p in (REPO_ROOT / "helmops").rglob("*.py") if "testing" not in p.parts)
    election = {"leaseDuration": "1m", "renewDeadline": "40s", "retryPeriod": "3s"}
    env = env_of(only(render(helm, merged(ENABLED, {"replicas": 2, "leaderElection": election})), "Deployment"))
    ours = {k for k in env if k.startswith(("HELMOPS_", "EXPERIMENTAL_", "CATTLE_"))} | {"NAMESPACE", "POD_NAME"}
    unread = sorted(
        k for k in ours if f'"{k}"' not in source and f"'{k}'" not in source and k != "EXPERIMENTAL_HELM_OPS"
    )
    assert "FLAG_ENV" in source and "EXPERIMENTAL_HELM_OPS" in source
    assert not unread, f"the chart sets variables the controller never reads: {unread}"


def test_require_service_account_reaches_the_controller(helm: Any) -> None:
    env = env_of(only(render(helm, ENABLED), "Deployment"))
    assert not from_env(env).require_service_account  # Fleet's behaviour by default
    env = env_of(only(render(helm, merged(ENABLED, {"controller": {"requireServiceAccount": True}})), "Deployment"))
    assert from_env(env).require_service_account


def test_extra_env_passthrough_and_override(helm: Any) -> None:
    values = merged(
        ENABLED,
        {"extraEnv": [
            {"name": "HTTPS_PROXY", "value": "http://proxy:3128"},
            {"name": "HELMOPS_RECONCILER_WORKERS", "value": 5},
            {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ]},
    )
    dep = only(render(helm, values), "Deployment")
    names = [e["name"] for e in container(dep)["env"]]
    assert len(names) == len(set(names)), f"duplicate env names: {names}"
    env = env_of(dep)
    assert env["HTTPS_PROXY"] == "http://proxy:3128"
    assert env["HELMOPS_RECONCILER_WORKERS"] == "5"
    assert env["EXPERIMENTAL_HELM_OPS"] == "true"
    from_secret = next(e for e in container(dep)["env"] if e["name"] == "FROM_SECRET")
    assert from_secret["valueFrom"]["secretKeyRef"] == {"name": "s", "key": "k"}


def test_ca_bundle_defaults(helm: Any) -> None:
    env = env_of(only(render(helm, ENABLED), "Deployment"))
    assert from_env(env).ca_bundle == (
        ("cattle-system", "tls-ca", "cacerts.pem"),
        ("cattle-system", "tls-ca-additional", "ca-additional.pem"),
    )
    assert env["HELMOPS_CA_BUNDLE_NAMESPACE"] == "cattle-system"
    assert (env["HELMOPS_CA_BUNDLE_SECRET"], env["HELMOPS_CA_BUNDLE_KEY"]) == ("tls-ca", "cacerts.pem")
    assert (env["HELMOPS_CA_BUNDLE_ADDITIONAL_SECRET"], env["HELMOPS_CA_BUNDLE_ADDITIONAL_KEY"]) == (
        "tls-ca-additional",
        "ca-additional.pem",
    )
    off = env_of(only(render(helm, merged(ENABLED, {"caBundle": {"enabled": False}})), "Deployment"))
    assert not any(k.startswith("HELMOPS_CA_BUNDLE") for k in off)
    assert from_env(off).ca_bundle == ()
    custom = {"caBundle": {"namespace": "certs", "secretName": "ca", "key": "ca.pem", "additionalSecretName": ""}}
    env = env_of(only(render(helm, merged(ENABLED, custom)), "Deployment"))
    assert from_env(env).ca_bundle == (("certs", "ca", "ca.pem"),)


# --- image ---------------------------------------------------------------------------------------------


def test_image_tag_defaults_to_app_version(helm: Any) -> None:
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    dep = only(render(helm, ENABLED), "Deployment")
    assert container(dep)["image"] == f"helmops/helmops:{app_version}"
    assert container(dep)["imagePullPolicy"] == "IfNotPresent"
    values = merged(
        ENABLED,
        {"image": {"repository": "reg.example/helmops", "tag": "1.2.3", "pullPolicy": "Always"},
         "imagePullSecrets": ["regcred", {"name": "other"}]},
    )
    dep = only(render(helm, values), "Deployment")
    assert container(dep)["image"] == "reg.example/helmops:1.2.3"
    assert container(dep)["imagePullPolicy"] == "Always"
    assert pod_spec(dep)["imagePullSecrets"] == [{"name": "regcred"}, {"name": "other"}]


def test_pod_annotations_labels_resources_replicas(helm: Any) -> None:
    values = merged(
        ENABLED,
        {"podAnnotations": {"a": "1"}, "podLabels": {"team": "x"}, "replicas": 1,
         "resources": {"requests": {"cpu": "1"}, "limits": {"memory": "2Gi"}}},
    )
    dep = only(render(helm, values), "Deployment")
    meta = dep["spec"]["template"]["metadata"]
    assert meta["annotations"] == {"a": "1"}
    assert meta["labels"]["team"] == "x"
    # helm merges maps with the defaults: memory request stays 256Mi
    assert container(dep)["resources"] == {"requests": {"cpu": "1", "memory": "256Mi"}, "limits": {"memory": "2Gi"}}


# --- scheduling and sharding ---------------------------------------------------------------------------


SCHEDULING: dict[str, Any] = {
    "priorityClassName": "system-cluster-critical",
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "role", "operator": "In", "values": ["mgmt"]}]}]}}},
    "tolerations": [{"key": "cattle.io/os", "operator": "Equal", "value": "linux", "effect": "NoSchedule"},
                    {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}],
}


def test_scheduling_propagates_to_every_workload(helm: Any) -> None:
    values = merged(ENABLED, SCHEDULING, {"shards": [{"id": "a"}, {"id": "b", "nodeSelector": {"zone": "z"}}]})
    docs = render(helm, values)
    workloads = [d for d in docs if d["kind"] in WORKLOAD_KINDS]
    assert len(workloads) == 3
    for w in workloads:
        spec = pod_spec(w)
        name = w["metadata"]["name"]
        assert spec["tolerations"] == SCHEDULING["tolerations"], name
        assert spec["affinity"] == SCHEDULING["affinity"], name
        assert spec["priorityClassName"] == "system-cluster-critical", name
        assert spec["nodeSelector"]["kubernetes.io/os"] == "linux", name
    assert pod_spec(only(docs, "Deployment", "helmops-shard-b"))["nodeSelector"] == {
        "kubernetes.io/os": "linux",
        "zone": "z",
    }
    assert "zone" not in pod_spec(only(docs, "Deployment", "helmops-shard-a"))["nodeSelector"]


def test_no_scheduling_fields_by_default(helm: Any) -> None:
    spec = pod_spec(only(render(helm, ENABLED), "Deployment"))
    assert not {"tolerations", "affinity", "nodeSelector", "priorityClassName"} & set(spec)


def test_shards_render_one_deployment_each(helm: Any) -> None:
    docs = render(helm, merged(ENABLED, {"shards": [{"id": "shard-a"}, {"id": "shard-b"}]}))
    deps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deps) == {"helmops", "helmops-shard-shard-a", "helmops-shard-shard-b"}
    for shard in ("shard-a", "shard-b"):
        args = container(deps[f"helmops-shard-{shard}"])["args"]
        assert args[args.index("--shard-id") + 1] == shard
        assert args.count("--shard-id") == 1
    assert "--shard-id" not in container(deps["helmops"])["args"]
    selectors = [tuple(sorted(d["spec"]["selector"]["matchLabels"].items())) for d in deps.values()]
    assert len(set(selectors)) == 3, "each Deployment must select only its own pods"
    for d in deps.values():
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in d["spec"]["selector"]["matchLabels"].items())
    # one ServiceAccount and one set of RBAC for all shards
    assert kinds(docs).count("ServiceAccount") == 1
    assert kinds(docs).count("ClusterRole") == 1


@pytest.mark.parametrize(
    ("shards", "message"),
    [
        ([{"id": "a"}, {"id": "a"}], "listed twice"),
        ([{"id": "default"}], "reserved"),
        ([{"id": "Not_A_Label"}], "pattern"),
        ([{"nodeSelector": {"a": "b"}}], "id"),
    ],
)
def test_bad_shards_are_refused(helm: Any, shards: list[dict[str, Any]], message: str) -> None:
    out = helm("template", "helmops", str(CHART), values=merged(ENABLED, {"shards": shards}), check=False)
    assert out.returncode != 0
    assert message in out.stderr


def test_schema_refuses_typos_and_wrong_types(helm: Any) -> None:
    for values, message in [
        ({"helmops": {"enable": True}}, "enable"),
        ({"helmops": {"enabled": "yes"}}, "enabled"),
        ({"replica": 2}, "replica"),
        ({"logFormat": "xml"}, "logFormat"),
        ({"controller": {"workers": 0}}, "workers"),
        ({"extraEnv": [{"value": "x"}]}, "name"),
    ]:
        out = helm("template", "helmops", str(CHART), values=values, check=False)
        assert out.returncode != 0, values
        assert message in out.stderr, (values, out.stderr)


# --- security ------------------------------------------------------------------------------------------


def test_security_context(helm: Any) -> None:
    docs = render(helm, merged(ENABLED, {"shards": [{"id": "a"}]}))
    for dep in (d for d in docs if d["kind"] in WORKLOAD_KINDS):
        spec = pod_spec(dep)
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True
        assert psc["runAsUser"] == 65532
        assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
        c = container(dep)
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        # writable places on a read-only root: /tmp and helm's homes, each an emptyDir
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "/tmp" in mounts
        assert all("emptyDir" in volumes[name] for name in mounts.values())
        env = env_of(dep)
        for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME", "HOME"):
            assert any(env[var].startswith(p) for p in mounts), f"{var}={env[var]} is not on a writable mount"
        assert spec["containers"][0]["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert spec["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/healthz"
        assert dep["kind"] != "StatefulSet"


def test_empty_dir_size_limits(helm: Any) -> None:
    values = merged(ENABLED, {"tmpVolume": {"sizeLimit": "2Gi"}, "helmHomeVolume": {"sizeLimit": "512Mi"}})
    volumes = {v["name"]: v for v in pod_spec(only(render(helm, values), "Deployment"))["volumes"]}
    assert volumes["tmp"]["emptyDir"] == {"sizeLimit": "2Gi"}
    assert volumes["helm-home"]["emptyDir"] == {"sizeLimit": "512Mi"}


def _rules(docs: list[dict[str, Any]], kind: str, name: str) -> list[dict[str, Any]]:
    return list(only(docs, kind, name)["rules"])


def _allowed(rules: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    verbs: set[str] = set()
    for r in rules:
        if group in r["apiGroups"] and resource in r["resources"]:
            verbs |= set(r["verbs"])
    return verbs


def test_controller_rbac_is_least_privilege(helm: Any) -> None:
    docs = render(helm, ENABLED)
    rules = _rules(docs, "ClusterRole", "helmops")
    for r in rules:
        assert "*" not in r["verbs"] and "*" not in r["resources"] and "*" not in r["apiGroups"], r
        assert not {"delete", "deletecollection", "escalate", "bind", "impersonate"} & set(r["verbs"]), r
    f = "fleet.cattle.io"
    assert _allowed(rules, f, "helmapps") == {"get", "list", "watch", "update", "patch"}
    assert {"update", "patch"} <= _allowed(rules, f, "helmapps/status")
    assert "update" in _allowed(rules, f, "helmapps/finalizers")
    assert _allowed(rules, f, "clusters") == _allowed(rules, f, "clustergroups") == {"get", "list", "watch"}
    assert _allowed(rules, f, "gitreporestrictions") == {"get", "list", "watch"}
    assert _allowed(rules, "", "secrets") == {"get", "list", "watch"}
    assert _allowed(rules, "", "configmaps") == {"get", "list", "watch"}
    assert _allowed(rules, "", "events") == {"create", "patch"}
    assert _allowed(rules, f, "bundles") == set()
    role = only(docs, "Role")
    assert role["metadata"]["namespace"] == NS
    assert _allowed(role["rules"], "coordination.k8s.io", "leases") >= {"get", "create", "update"}
    sa = only(docs, "ServiceAccount")["metadata"]
    subjects = [{"kind": "ServiceAccount", "name": sa["name"], "namespace": NS}]
    assert only(docs, "ClusterRoleBinding", "helmops")["subjects"] == subjects
    assert only(docs, "ClusterRoleBinding", "helmops")["roleRef"]["name"] == "helmops"
    assert only(docs, "RoleBinding")["subjects"] == subjects


def test_local_cluster_admin_binding_is_separate_and_opt_out(helm: Any) -> None:
    docs = render(helm, ENABLED)
    admin = only(docs, "ClusterRoleBinding", "helmops-local-cluster-admin")
    assert admin["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"}
    assert admin["subjects"][0]["name"] == only(docs, "ServiceAccount")["metadata"]["name"]

    docs = render(helm, merged(ENABLED, {"localClusterAdmin": {"enabled": False}}))
    crbs = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    assert [d["metadata"]["name"] for d in crbs] == ["helmops"]
    assert all(d["roleRef"]["name"] != "cluster-admin" for d in crbs)

    docs = render(helm, merged(ENABLED, {"localClusterAdmin": {"clusterRoleName": "helmops-deployer"}}))
    assert only(docs, "ClusterRoleBinding", "helmops-local-cluster-admin")["roleRef"]["name"] == "helmops-deployer"


def test_names_follow_release_and_overrides(helm: Any) -> None:
    docs = render(helm, ENABLED, release="fleet")
    assert only(docs, "Deployment")["metadata"]["name"] == "fleet-helmops"
    docs = render(helm, merged(ENABLED, {"fullnameOverride": "hops", "serviceAccount": {"name": "hops-sa"}}))
    assert only(docs, "Deployment")["metadata"]["name"] == "hops"
    assert only(docs, "ServiceAccount")["metadata"]["name"] == "hops-sa"
    assert pod_spec(only(docs, "Deployment"))["serviceAccountName"] == "hops-sa"
    assert only(docs, "ClusterRoleBinding", "hops")["subjects"][0]["name"] == "hops-sa"


# --- leader election -----------------------------------------------------------------------------------


def test_single_replica_has_no_leader_election_flag(helm: Any) -> None:
    dep = only(render(helm, ENABLED), "Deployment")
    assert "--leader-elect" not in container(dep)["args"]
    assert dep["spec"]["strategy"] == {"type": "Recreate"}


def test_replicas_above_one_elect_a_leader(helm: Any) -> None:
    docs = render(helm, merged(ENABLED, {"replicas": 2, "shards": [{"id": "a"}, {"id": "b", "replicas": 3}]}))
    deps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    elect = {name: "--leader-elect" in container(d)["args"] for name, d in deps.items()}
    assert elect == {"helmops": True, "helmops-shard-a": False, "helmops-shard-b": True}
    for name, d in deps.items():
        args = build_parser().parse_args(container(d)["args"])
        assert args.leader_elect is elect[name]
        assert d["spec"]["strategy"]["type"] == ("RollingUpdate" if elect[name] else "Recreate")
        env = {e["name"]: e for e in container(d)["env"]}
        assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"  # the lease holder identity
    assert deps["helmops"]["spec"]["replicas"] == 2
    assert deps["helmops-shard-b"]["spec"]["replicas"] == 3


def test_leader_election_forced_on_and_lease_times(helm: Any) -> None:
    values = merged(
        ENABLED,
        {"leaderElection": {"enabled": True, "leaseDuration": "60s", "renewDeadline": 40, "retryPeriod": "5s"}},
    )
    dep = only(render(helm, values), "Deployment")
    assert "--leader-elect" in container(dep)["args"]
    env = env_of(dep)
    assert (env["CATTLE_ELECTION_LEASE_DURATION"], env["CATTLE_ELECTION_RENEW_DEADLINE"]) == ("60s", "40")
    times = from_env(env, leader_elect=True).lease_times
    assert (times.lease_duration, times.renew_deadline, times.retry_period) == (60, 40, 5)
    assert not any(k.startswith("CATTLE_ELECTION") for k in env_of(only(render(helm, ENABLED), "Deployment")))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicas": 2, "leaderElection": {"enabled": False}}, "would run several controllers"),
        ({"shards": [{"id": "a", "replicas": 2}], "leaderElection": {"enabled": False}}, "several controllers"),
        ({"leaderElection": {"leaseDuration": "soon"}}, "leaseDuration"),
    ],
)
def test_unsafe_replicas_refused(helm: Any, values: dict[str, Any], message: str) -> None:
    """Several pods of one Deployment without leader election would run helm on the same releases at once."""
    out = helm("template", "helmops", str(CHART), values=merged(ENABLED, values), check=False)
    assert out.returncode != 0
    assert message in out.stderr


def test_impersonation_role_is_opt_in_and_only_serviceaccounts(helm: Any) -> None:
    assert "helmops-impersonate" not in [d["metadata"]["name"] for d in render(helm, ENABLED)]
    values = merged(
        ENABLED, {"serviceAccountImpersonation": {"enabled": True}, "localClusterAdmin": {"enabled": False}}
    )
    docs = render(helm, values)
    assert only(docs, "ClusterRole", "helmops-impersonate")["rules"] == [
        {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]}
    ]
    binding = only(docs, "ClusterRoleBinding", "helmops-impersonate")
    assert binding["roleRef"]["name"] == "helmops-impersonate"
    assert binding["subjects"][0]["name"] == only(docs, "ServiceAccount")["metadata"]["name"]


# --- lint ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {},
        ENABLED,
        merged(ENABLED, SCHEDULING, {"shards": [{"id": "a", "nodeSelector": {"z": "1"}}],
                                     "metrics": {"serviceMonitor": {"enabled": True}},
                                     "localClusterAdmin": {"enabled": False}}),
    ],
    ids=["default", "enabled", "everything"],
)
def test_helm_lint_strict(helm: Any, values: dict[str, Any]) -> None:
    out = helm("lint", "--strict", str(CHART), values=values)
    assert "0 chart(s) failed" in out.stdout


def test_chart_has_no_statefulset_anywhere() -> None:
    for tpl in (CHART / "templates").iterdir():
        assert "StatefulSet" not in tpl.read_text(), tpl


def test_chart_files_exist() -> None:
    for name in ("Chart.yaml", "values.yaml", "values.schema.json", "templates/NOTES.txt", ".helmignore"):
        assert (CHART / name).is_file(), name
    assert Path(CHART / "crds").is_dir()
