"""Kubeconfig Secrets read nothing local: the allow-list sanitizer, the Python client built from its result, the
environment helm gets for a downstream cluster, and the cross-namespace Secret rule (no cluster, no binaries)."""

from __future__ import annotations

import asyncio
import base64
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from helmops.clusters.connections import (
    ClusterUnreachable,
    Connections,
    downstream_helm_env,
    secret_namespace_allowed,
)
from helmops.clusters.kubeconfig import MAX_KUBECONFIG_BYTES, KubeconfigRefused, parse, sanitize
from helmops.kubeio.client import client_configuration
from helmops.runtime.settings import from_env

SECRET = "s3cr3t-canary-value"
CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()
CERT = base64.b64encode(b"client-cert-pem").decode()
KEY = base64.b64encode(b"client-key-pem").decode()


def kc(cluster: dict[str, Any] | None = None, user: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": cluster if cluster is not None else {"server": "https://127.0.0.1:6443"}}
        ],
        "users": [{"name": "u", "user": user if user is not None else {"token": SECRET}}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "ctx",
    }
    doc.update(top)
    return doc


def refused(config: Any, **kw: bool) -> str:
    with pytest.raises(KubeconfigRefused) as info:
        sanitize(config, **kw)
    msg = info.value.message
    # never echoes a value of the kubeconfig
    for value in (SECRET, "/var/run", "127.0.0.1", "/bin/sh", CA, CERT, KEY, "evil", "attacker"):
        assert value not in msg, msg
    return msg


# --- what is kept -----------------------------------------------------------------------------------------
def test_inline_kubeconfig_is_kept_minimal() -> None:
    config = kc(
        {"server": "https://127.0.0.1:6443/", "certificate-authority-data": CA, "tls-server-name": "api",
         "proxy-url": "socks5://127.0.0.1:1080", "extensions": [{"name": "x", "extension": {}}]},
        {"client-certificate-data": CERT, "client-key-data": KEY, "token": SECRET},
    )  # fmt: skip
    config["contexts"][0]["context"]["namespace"] = "dropped"
    config["preferences"] = {"colors": True}
    out = sanitize(config)
    assert out.server == "https://127.0.0.1:6443/" and out.token == SECRET and out.tls_server_name == "api"
    assert out.ca_data and out.ca_data.startswith(b"-----BEGIN") and out.client_cert == b"client-cert-pem"
    assert out.proxy_url == "socks5://127.0.0.1:1080" and not out.insecure and not out.plugin
    doc = yaml.safe_load(out.yaml())
    assert doc == {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "cluster", "cluster": {
                "server": "https://127.0.0.1:6443/", "certificate-authority-data": CA,
                "tls-server-name": "api", "proxy-url": "socks5://127.0.0.1:1080"}},
        ],
        "users": [{"name": "user", "user": {"token": SECRET, "client-certificate-data": CERT, "client-key-data": KEY}}],
        "contexts": [{"name": "context", "context": {"cluster": "cluster", "user": "user"}}],
        "current-context": "context",
        "preferences": {},
    }  # fmt: skip
    assert SECRET not in repr(out)  # the dataclass repr hides credentials


def test_basic_auth_and_anonymous_user() -> None:
    out = sanitize(kc(user={"username": "admin", "password": SECRET}))
    assert (out.username, out.password, out.token) == ("admin", SECRET, None)
    config = kc()
    del config["contexts"][0]["context"]["user"]
    del config["users"]
    out = sanitize(config)
    assert out.token is None and yaml.safe_load(out.yaml())["users"] == [{"name": "user", "user": {}}]


def test_only_the_current_context_is_used_other_entries_are_dropped_unread() -> None:
    config = kc()
    config["clusters"].append({"name": "c2", "cluster": {"server": "https://evil", "certificate-authority": "/etc/x"}})
    config["users"].append({"name": "u2", "user": {"tokenFile": "/var/run/secrets/token", "exec": {"command": "sh"}}})
    config["contexts"].append({"name": "ctx2", "context": {"cluster": "c2", "user": "u2"}})
    text = sanitize(config).yaml()
    assert "/var/run" not in text and "/etc/x" not in text and "evil" not in text and "exec" not in text
    # ... but choosing that context is refused, naming the field
    config["current-context"] = "ctx2"
    assert refused(config).startswith("clusters[1].cluster.certificate-authority is a local file path")


def test_single_context_without_current_context_is_unambiguous() -> None:
    config = kc()
    del config["current-context"]
    assert sanitize(config).token == SECRET
    config["current-context"] = ""
    assert sanitize(config).token == SECRET


def test_insecure_and_exec_under_the_operator_opt_in() -> None:
    insecure = kc({"server": "https://127.0.0.1:6443", "insecure-skip-tls-verify": True})
    assert "insecure-skip-tls-verify" in refused(insecure)
    assert sanitize(insecure, allow_insecure=True).insecure
    assert not sanitize(kc({"server": "https://x", "insecure-skip-tls-verify": False})).insecure
    plugin = kc(user={"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "/bin/sh"}})
    assert "exec credential plugin" in refused(plugin)
    out = sanitize(plugin, allow_exec=True)
    assert out.plugin and yaml.safe_load(out.yaml())["users"][0]["user"]["exec"]["command"] == "/bin/sh"
    provider = kc(user={"auth-provider": {"name": "oidc", "config": {}}})
    assert "auth-provider plugin" in refused(provider)
    assert sanitize(provider, allow_exec=True).plugin
    # the opt-in is for plugins only: file paths stay refused
    assert "local file path" in refused(kc(user={"tokenFile": "/var/run/x"}), allow_exec=True, allow_insecure=True)


# --- what is refused --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("cluster", "user", "field"),
    [
        (None, {"tokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token"}, "users[0].user.tokenFile"),
        (None, {"TokenFile": "/var/run/secrets/token"}, "users[0].user.TokenFile"),  # Go matches case-insensitively
        (None, {"tokenfile": "/var/run/secrets/token", "token": SECRET}, "users[0].user.tokenfile"),
        (None, {"client-certificate": "/var/run/c.crt", "client-key-data": KEY}, "users[0].user.client-certificate"),
        (None, {"client-key": "/var/run/c.key", "client-certificate-data": CERT}, "users[0].user.client-key"),
        ({"server": "https://x", "certificate-authority": "/var/run/ca.crt"}, None,
         "clusters[0].cluster.certificate-authority"),
        ({"server": "https://x", "Certificate-Authority": "/var/run/ca.crt"}, None,
         "clusters[0].cluster.Certificate-Authority"),
    ],
)  # fmt: skip
def test_local_file_fields_are_refused_by_name(cluster: Any, user: Any, field: str) -> None:
    msg = refused(kc(cluster, user))
    assert msg == f"{field} is a local file path; kubeconfig Secrets must carry credentials inline"


@pytest.mark.parametrize(
    ("cluster", "user", "expect"),
    [
        (None, {"exec": {"command": "/bin/sh"}}, "users[0].user.exec is an exec credential plugin"),
        (None, {"auth-provider": {"name": "gcp"}}, "users[0].user.auth-provider is an auth-provider plugin"),
        (None, {"Exec": {"command": "/bin/sh"}}, "users[0].user.Exec is an exec credential plugin"),
        (None, {"as": "system:admin", "token": SECRET}, "users[0].user.as is not a field"),
        (None, {"as-groups": ["system:masters"]}, "users[0].user.as-groups is not a field"),
        (None, {"Token": SECRET}, "users[0].user.Token is not spelled"),
        (None, {"evil\nkey": "attacker"}, "users[0].user.(a field with an unusual name) is not a field"),
        (None, {"token": 12345}, "users[0].user.token is not a string"),
        (None, {"token": "a\nb"}, "users[0].user.token contains control characters"),
        (None, {"token": "tökén"}, "users[0].user.token contains characters other than printable ASCII"),
        (None, {"token": SECRET, "username": "a", "password": "b"}, "sets both token and username/password"),
        (None, {"username": "a"}, "users[0].user.password is missing"),
        (None, {"client-certificate-data": CERT}, "users[0].user.client-key-data is missing"),
        (None, {"client-certificate-data": "%%%", "client-key-data": KEY}, "certificate-data is not valid base64"),
        ({"server": "https://x", "certificate-authority-data": "not base64!"}, None, "is not valid base64"),
        ({}, None, "clusters[0].cluster.server is missing"),
        ({"server": ""}, None, "clusters[0].cluster.server is missing"),
        ({"server": "file:///var/run/secrets/token"}, None, "server must be an absolute http/https URL"),
        ({"server": "unix:///var/run/docker.sock"}, None, "server must be an absolute http/https URL"),
        ({"server": "127.0.0.1:6443"}, None, "server must be an absolute http/https URL"),
        ({"server": "https://x:notaport"}, None, "server is not a valid URL"),
        ({"server": ["https://x"]}, None, "server is not a string"),
        ({"server": "https://x", "proxy-url": "file:///etc/passwd"}, None, "proxy-url must be an absolute"),
        ({"server": "https://x", "proxy-url": "socks4://127.0.0.1:1"}, None, "proxy-url must be an absolute"),
        ({"server": "https://x", "insecure-skip-tls-verify": "true"}, None, "is not a boolean"),
        ({"server": "https://x", "tls-server-name": 5}, None, "tls-server-name is not a string"),
        ({"server": "https://x", "gcp-config": "/var/run/x"}, None, "clusters[0].cluster.gcp-config is not a field"),
    ],
)
def test_other_unsafe_or_unusable_fields_are_refused_by_name(cluster: Any, user: Any, expect: str) -> None:
    assert expect in refused(kc(cluster, user))


@pytest.mark.parametrize(
    ("mutate", "expect"),
    [
        (lambda c: c.update({"users": [{"name": "u", "user": None}]}), "users[0].user is not a map"),
        (lambda c: c.update({"users": None}), "contexts[0].context.user names a user that is not in users"),
        (lambda c: c.update({"users": ["just a string"]}), "users[0] is not a map"),
        (lambda c: c.update({"users": {"u": {"token": "x"}}}), "users is not a list"),
        (lambda c: c.update({"clusters": [["https://x"]]}), "clusters[0] is not a map"),
        (lambda c: c.update({"clusters": []}), "contexts[0].context.cluster names a cluster that is not in clusters"),
        (lambda c: c["clusters"].append({"name": "c", "cluster": {"server": "https://evil"}}), "repeats the name"),
        (lambda c: c["users"].append({"name": "u", "user": {"tokenFile": "/var/run/x"}}), "users[1].name repeats"),
        (lambda c: c["contexts"].append({"name": "ctx", "context": {"cluster": "c"}}), "contexts[1].name repeats"),
        (lambda c: c["users"].append({"user": {"token": "x"}}), "users[1].name is missing"),
        (lambda c: c.update({"current-context": "missing"}), "current-context names a context that is not in"),
        (lambda c: c.update({"current-context": ["ctx"]}), "current-context is not a string"),
        (lambda c: (c.pop("current-context"), c["contexts"].append({"name": "b", "context": {"cluster": "c"}})),
         "current-context is not set and the kubeconfig has 2 contexts"),
        (lambda c: c.update({"contexts": [], "current-context": None}), "the kubeconfig has no contexts"),
        (lambda c: c.update({"contexts": None}), "current-context names a context that is not in contexts"),
        (lambda c: c["contexts"][0].update({"context": None}), "contexts[0].context is not a map"),
        (lambda c: c["contexts"][0]["context"].pop("cluster"), "contexts[0].context.cluster is missing"),
        (lambda c: c["contexts"][0]["context"].update({"user": 7}), "contexts[0].context.user is not a string"),
        (lambda c: c["contexts"][0]["context"].update({"as": "admin"}), "contexts[0].context.as is not a field"),
    ],
)  # fmt: skip
def test_odd_shapes_are_refused(mutate: Any, expect: str) -> None:
    config = kc()
    mutate(config)
    assert expect in refused(config)


@pytest.mark.parametrize("doc", ["just a string", ["a", "list"], None, 42])
def test_not_a_map(doc: Any) -> None:
    assert refused(doc) == "the kubeconfig is not a YAML map"


def test_parse_is_bounded_and_never_quotes_the_document() -> None:
    with pytest.raises(KubeconfigRefused, match="larger than"):
        parse(b"a: b\n" * (MAX_KUBECONFIG_BYTES // 4))
    with pytest.raises(KubeconfigRefused, match="not UTF-8"):
        parse(b"\xff\xfe")
    with pytest.raises(KubeconfigRefused) as info:
        parse(f"token: {SECRET}\n  bad: [".encode())
    assert SECRET not in info.value.message
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{n}: &{n} [{', '.join(['*' + p] * 10)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
    with pytest.raises(KubeconfigRefused, match="too large"):
        parse(laughs.encode())
    assert parse(b"{a: [b, c]}\n") == {"a": ["b", "c"]}


# --- the Python client and helm's environment --------------------------------------------------------------
def test_python_client_is_configured_from_the_sanitized_values_only(tmp_path: Path) -> None:
    out = sanitize(kc({"server": "https://127.0.0.1:6443/", "certificate-authority-data": CA, "tls-server-name": "api"},
                      {"client-certificate-data": CERT, "client-key-data": KEY, "token": SECRET}))  # fmt: skip
    cfg = asyncio.run(client_configuration(out, tmp_path))
    assert cfg.host == "https://127.0.0.1:6443" and cfg.verify_ssl and cfg.tls_server_name == "api"
    assert cfg.ca_cert_data.startswith("-----BEGIN") and cfg.ssl_ca_cert is None
    assert cfg.api_key == {"BearerToken": f"Bearer {SECRET}"}
    assert Path(cfg.cert_file).parent == tmp_path and Path(cfg.cert_file).read_bytes() == b"client-cert-pem"
    assert Path(cfg.key_file).stat().st_mode & 0o777 == 0o600
    basic = asyncio.run(client_configuration(sanitize(kc(user={"username": "a", "password": "b"})), tmp_path))
    assert basic.api_key == {"BearerToken": "Basic " + base64.b64encode(b"a:b").decode()}
    anon = copy.deepcopy(kc())
    del anon["contexts"][0]["context"]["user"]
    assert asyncio.run(client_configuration(sanitize(anon), tmp_path)).api_key == {}


def test_helm_for_a_downstream_cluster_gets_no_way_back_to_the_controllers_identity() -> None:
    env = {
        "PATH": "/usr/bin",
        "HOME": "/home/x",
        "KUBECONFIG": "/home/x/.kube/config",
        "KUBERNETES_SERVICE_HOST": "10.0.0.1",
        "KUBERNETES_SERVICE_PORT": "443",
        "KUBERNETES_SERVICE_PORT_HTTPS": "443",
        "HELM_KUBETOKEN": "t",
        "HELM_KUBEAPISERVER": "https://x",
        "HELM_KUBECAFILE": "/var/run/ca",
        "HELM_KUBEASUSER": "admin",
        "HELM_DRIVER": "secret",
    }
    assert downstream_helm_env(env) == {"PATH": "/usr/bin", "HOME": "/home/x", "HELM_DRIVER": "secret"}


# --- kubeconfig Secrets from other namespaces ---------------------------------------------------------------
def test_secret_namespace_rule() -> None:
    assert secret_namespace_allowed("a", "a", ())
    assert not secret_namespace_allowed("a", "b", ())
    assert not secret_namespace_allowed("a", "b", ("c",))
    assert secret_namespace_allowed("a", "b", ("c", "b"))
    assert secret_namespace_allowed("a", "b", ("*",))


def test_settings_flag_and_env() -> None:
    assert from_env({}).kubeconfig_secret_namespaces == ()
    s = from_env({"HELMOPS_KUBECONFIG_SECRET_NAMESPACES": " b, c ,,"}, kubeconfig_secret_namespaces=["a,b"])
    assert s.kubeconfig_secret_namespaces == ("a", "b", "c")


class _Core:
    def __init__(self) -> None:
        self.reads: list[tuple[str, str]] = []

    async def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        self.reads.append((namespace, name))
        raise AssertionError("the Secret must not be read")


def _connections(allowed: tuple[str, ...]) -> tuple[Connections, _Core]:
    conns = Connections(object(), object(), secret_namespaces=allowed)  # type: ignore[arg-type]
    core = _Core()
    conns._local_core = core
    return conns, core


def test_cross_namespace_secret_is_refused_unread() -> None:
    conns, core = _connections(())
    cluster = {"metadata": {"name": "c1", "namespace": "tenant-a"},
               "spec": {"kubeConfigSecret": "kc", "kubeConfigSecretNamespace": "tenant-b"}}  # fmt: skip
    with pytest.raises(ClusterUnreachable) as info:
        asyncio.run(conns.get(cluster))
    assert core.reads == []
    msg = info.value.message
    assert msg.startswith("cluster c1 in namespace tenant-a: kubeConfigSecretNamespace tenant-b is not")
    assert "--kubeconfig-secret-namespaces" in msg and "was not read" in msg
    # another namespace listed by the operator: still refused for tenant-b
    conns, core = _connections(("tenant-c",))
    with pytest.raises(ClusterUnreachable):
        asyncio.run(conns.get(cluster))
    assert core.reads == []
    # allowed: the Secret is read (here the fake refuses, which proves the read was attempted)
    conns, core = _connections(("tenant-b",))
    with pytest.raises(AssertionError):
        asyncio.run(conns.get(cluster))
    assert core.reads == [("tenant-b", "kc")]


class _SecretCore:
    def __init__(self, kubeconfig_text: str) -> None:
        from types import SimpleNamespace

        value = base64.b64encode(kubeconfig_text.encode()).decode()
        self.secret = SimpleNamespace(data={"value": value}, metadata=SimpleNamespace(resource_version="1"))

    async def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        return self.secret


class _FakeDriver:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.slots: Any = object()

    def share_slots(self, slots: Any) -> None:
        self.slots = slots

    async def close(self) -> None:
        pass


def test_connection_hands_helm_only_the_sanitized_kubeconfig_and_a_clean_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The plumbing of Connections.get: helm's --kubeconfig is the sanitized document (0600), helm's
    environment names no cluster of the controller's, the Python client targets the Secret's server."""
    from helmops.clusters import connections

    made: list[_FakeDriver] = []

    async def create(**kwargs: Any) -> _FakeDriver:
        made.append(_FakeDriver(**kwargs))
        return made[-1]

    monkeypatch.setattr(connections.HelmDriver, "create", create)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    monkeypatch.setenv("HELM_KUBETOKEN", "controller-token")
    monkeypatch.setenv("KUBECONFIG", "/home/controller/.kube/config")
    config = kc({"server": "https://127.0.0.1:6443", "tls-server-name": "api"})
    config["users"].append({"name": "other", "user": {"tokenFile": "/var/run/secrets/token"}})
    cluster = {"metadata": {"name": "c1", "namespace": "t"}, "spec": {"kubeConfigSecret": "kc"}}

    async def scenario() -> None:
        conns = Connections(object(), _FakeDriver())  # type: ignore[arg-type]
        conns._local_core = _SecretCore(yaml.safe_dump(config))
        conn = await conns.get(cluster)
        try:
            [driver] = made
            path = Path(driver.kwargs["kubeconfig"])
            mode, dir_mode, text = await asyncio.to_thread(_inspect, path)
            assert mode == 0o600 and dir_mode == 0o700
            assert yaml.safe_load(text) == yaml.safe_load(sanitize(config).yaml()) and "/var/run" not in text
            env = driver.kwargs["base_env"]
            assert not {"KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "HELM_KUBETOKEN", "KUBECONFIG"} & set(env)
            cfg = conn.api.configuration
            assert cfg.host == "https://127.0.0.1:6443" and cfg.api_key == {"BearerToken": f"Bearer {SECRET}"}
            assert conn.driver.slots is conns._local_driver.slots
        finally:
            await conns.close()
        assert not await asyncio.to_thread(path.exists)

    asyncio.run(scenario())


def _inspect(path: Path) -> tuple[int, int, str]:
    return path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777, path.read_text()
