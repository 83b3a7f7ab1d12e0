"""Pure pieces of helmops.sources: Secret parsing, reference forms, URLs, index parsing, errors, caches."""

from __future__ import annotations

import asyncio
import hashlib
import io
import ssl
import tarfile
from pathlib import Path

import pytest

from helmops.sources import ChartRequest, RepoAuth, _Http, _Tarball, auth_from_secret, classify
from helmops.sources.auth import same_origin
from helmops.sources.cache import LRU, ChartStore, SingleFlight
from helmops.sources.errors import (
    AuthError,
    ChartNotFound,
    InvalidChart,
    InvalidReference,
    SourceError,
    SourceUnavailable,
    VersionNotFound,
)
from helmops.sources.net import display_url, network_error, status_error, x509_message
from helmops.sources.oci_ref import OciRef, parse_oci_ref
from helmops.sources.repo import chart_meta_from_tgz, chart_url, index_url, parse_index

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"

# ---- auth_from_secret -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "spec_skip", "fallback", "expected"),
    [
        ({}, False, None, RepoAuth()),
        ({"username": b"u", "password": b"p"}, False, None, RepoAuth(username="u", password="p")),
        ({"username": "u", "password": "p"}, False, None, RepoAuth(username="u", password="p")),
        ({"cacerts": PEM.encode()}, False, "other", RepoAuth(ca_pem=PEM + "\n")),
        ({}, False, PEM, RepoAuth(ca_pem=PEM)),
        ({"cacerts": b""}, False, PEM, RepoAuth(ca_pem=PEM)),
        ({}, True, None, RepoAuth(insecure_skip_verify=True)),
        ({"insecureSkipVerify": b"true"}, False, None, RepoAuth()),  # spec.insecureSkipTLSVerify wins
        ({"insecureSkipVerify": b"false"}, True, None, RepoAuth(insecure_skip_verify=True)),
        ({"basicHTTP": b"true"}, False, None, RepoAuth(plain_http=True)),
        ({"basicHTTP": "1"}, False, None, RepoAuth(plain_http=True)),
        ({"basicHTTP": "False"}, False, None, RepoAuth()),
    ],
)
def test_auth_from_secret(
    data: dict[str, bytes | str], spec_skip: bool, fallback: str | None, expected: RepoAuth
) -> None:
    assert auth_from_secret(data, insecure_skip_tls_verify=spec_skip, fallback_ca_pem=fallback) == expected


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"username": b"u"}, "username is set in the helm Secret, but password isn't"),
        ({"password": b"s3cr3t"}, "password is set in the helm Secret, but username isn't"),
        ({"cacerts": b"not a pem"}, '"cacerts" is not a PEM certificate bundle'),
        ({"basicHTTP": b"yes-please"}, '"basicHTTP" must be "true" or "false"'),
        ({"insecureSkipVerify": b"maybe"}, '"insecureSkipVerify" must be "true" or "false"'),
        ({"username": b"\xff", "password": b"p"}, "not UTF-8"),
    ],
)
def test_auth_from_secret_errors(data: dict[str, bytes | str], message: str) -> None:
    with pytest.raises(AuthError) as info:
        auth_from_secret(data, insecure_skip_tls_verify=False, fallback_ca_pem=None)
    assert message in str(info.value)
    assert "s3cr3t" not in str(info.value) and "maybe" not in str(info.value)


def test_repo_auth_never_shows_the_password() -> None:
    a = RepoAuth(username="admin", password="hunter2-secret", ca_pem=PEM)
    for text in (repr(a), str(a), f"{a}", repr([a]), a.identity, a.tls_identity):
        assert "hunter2" not in text
    assert "password=***" in repr(a)
    assert a.identity != RepoAuth(username="admin", password="other").identity
    assert a.tls_identity == RepoAuth(ca_pem=PEM).tls_identity


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("https://h.example/charts/", "https://h.example/other/x.tgz", True),
        ("https://h.example/", "https://h.example:443/x", True),
        ("http://h.example/", "http://h.example:80/x", True),
        ("https://H.Example/", "https://h.example/x", True),
        ("https://h.example/", "http://h.example/x", False),
        ("https://h.example/", "https://cdn.h.example/x", False),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8081/x", False),
    ],
)
def test_same_origin(a: str, b: str, same: bool) -> None:
    assert same_origin(a, b) is same


# ---- reference forms ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("req", "expected"),
    [
        (ChartRequest("https://charts.example/", "hello"), ("http", "https://charts.example/", "hello")),
        (ChartRequest("", "oci://r.example:5000/charts/hello"), ("oci", "r.example:5000", "charts/hello")),
        (ChartRequest("oci://r.example/a/b/hello", ""), ("oci", "r.example", "a/b/hello")),
        (ChartRequest("", "https://x.example/c/hello-1.0.0.TGZ"), ("tarball", "https://x.example/c/hello-1.0.0.TGZ")),
        (ChartRequest("", "https://x.example/c/h.tgz?sig=1"), ("tarball", "https://x.example/c/h.tgz?sig=1")),
    ],
)
def test_classify(req: ChartRequest, expected: tuple[str, ...]) -> None:
    src = classify(req)
    if isinstance(src, _Http):
        assert ("http", src.repo, src.chart) == expected
    elif isinstance(src, OciRef):
        assert ("oci", src.host, src.repository) == expected
    else:
        assert isinstance(src, _Tarball) and ("tarball", src.url) == expected


@pytest.mark.parametrize(
    ("req", "message"),
    [
        (ChartRequest("oci://r.example/hello", "hello"), "OCI repository with a non-empty chart field"),
        (ChartRequest("https://x.example/", "https://x.example/a.tgz"), "tarball chart with a non-empty repo field"),
        (ChartRequest("https://x.example/", ""), "non-OCI repository with an empty chart field"),
        (ChartRequest("", "hello"), "non-tarball chart with an empty repo field"),
        (ChartRequest("ftp://x.example/", "hello"), "is not an http(s):// or oci:// URL"),
        (ChartRequest("https://x.example/", "oci://r.example/hello"), "an oci:// chart needs an empty repo field"),
    ],
)
def test_classify_errors(req: ChartRequest, message: str) -> None:
    with pytest.raises(InvalidReference, match=message.replace("(", r"\(").replace(")", r"\)")):
        classify(req)


D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("oci://r.example/charts/hello", OciRef("r.example", "charts/hello")),
        ("oci://127.0.0.1:5000/hello", OciRef("127.0.0.1:5000", "hello")),
        ("oci://localhost/charts/hello", OciRef("localhost", "charts/hello")),  # oras alone misreads this
        ("oci://r.example/my.org/hello:1.2.3", OciRef("r.example", "my.org/hello", tag="1.2.3")),
        (f"oci://r.example:5000/hello@{D}", OciRef("r.example:5000", "hello", digest=D)),
        ("oci://r.example/charts/hello/", OciRef("r.example", "charts/hello")),
    ],
)
def test_parse_oci_ref(text: str, expected: OciRef) -> None:
    assert parse_oci_ref(text) == expected


@pytest.mark.parametrize(
    "text", ["oci://r.example", "oci:///hello", "oci://r.example/a//b", "oci://r.example/Hello",
             "oci://r.example/hello@sha256:xyz", "oci://r.example/hello:", "https://r.example/hello"],
)
def test_parse_oci_ref_rejects(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse_oci_ref(text)


# ---- URLs and index parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("repo", "expected"),
    [
        ("https://h.example/charts", "https://h.example/charts/index.yaml"),
        ("https://h.example/charts/", "https://h.example/charts/index.yaml"),
        ("https://h.example", "https://h.example/index.yaml"),
        ("https://h.example/c?sig=abc", "https://h.example/c/index.yaml?sig=abc"),
    ],
)
def test_index_url(repo: str, expected: str) -> None:
    assert index_url(repo) == expected


@pytest.mark.parametrize(
    ("repo", "ref", "expected"),
    [
        ("https://h.example/charts", "hello-1.0.0.tgz", "https://h.example/charts/hello-1.0.0.tgz"),
        ("https://h.example/charts/", "sub/hello.tgz", "https://h.example/charts/sub/hello.tgz"),
        ("https://h.example/charts/", "/abs/hello.tgz", "https://h.example/abs/hello.tgz"),
        ("https://h.example/charts/", "https://cdn.example/x.tgz", "https://cdn.example/x.tgz"),
        ("https://h.example/c?sig=1", "hello.tgz", "https://h.example/c/hello.tgz?sig=1"),
    ],
)
def test_chart_url(repo: str, ref: str, expected: str) -> None:
    assert chart_url(repo, ref) == expected


def test_parse_index_keeps_versions_as_text_and_normalises_digests() -> None:
    body = b"""
apiVersion: v1
entries:
  hello:
    - version: 1.10
      urls: [hello-1.10.tgz]
      digest: sha256:ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789
    - version: 1.2.3
      urls: []
    - name: broken
  other: null
"""
    charts = parse_index(body, "x")
    assert [v.version for v in charts["hello"]] == ["1.10", "1.2.3"]
    assert charts["hello"][0].digest == "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
    assert charts["hello"][1].urls == () and charts["hello"][1].digest is None
    assert "other" not in charts


@pytest.mark.parametrize("body", [b"entries: [1, 2", b"- a\n- b\n", b"entries: 3\n"])
def test_parse_index_rejects_garbage(body: bytes) -> None:
    with pytest.raises(SourceError, match="is not a valid chart repository index"):
        parse_index(body, "https://h.example/index.yaml")


def _tgz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_chart_meta_from_tgz() -> None:
    data = _tgz({
        "hello/charts/sub/Chart.yaml": b"name: sub\nversion: 9.9.9\n",
        "hello/Chart.yaml": b"apiVersion: v2\nname: hello\nversion: 1.10\n",
    })
    assert chart_meta_from_tgz(data, "u") == ("hello", "1.10")
    with pytest.raises(InvalidChart, match=r"no Chart\.yaml"):
        chart_meta_from_tgz(_tgz({"hello/values.yaml": b"a: 1\n"}), "u")
    with pytest.raises(InvalidChart, match="not a helm chart archive"):
        chart_meta_from_tgz(b"<html>not found</html>", "u")


# ---- errors -------------------------------------------------------------------------------------------


def test_display_url_hides_userinfo_and_query() -> None:
    assert display_url("https://user:pw@h.example:8443/c/index.yaml?sig=secret") == "https://h.example:8443/c/index.yaml?…"
    assert display_url("http://h.example/") == "http://h.example/"


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [(401, AuthError, False), (403, AuthError, False), (404, ChartNotFound, False), (429, SourceUnavailable, True),
     (500, SourceUnavailable, True), (503, SourceUnavailable, True), (400, SourceError, False)],
)
def test_status_error(status: int, kind: type[SourceError], retryable: bool) -> None:
    err = status_error(status, "Reason", "https://u:p@h.example/index.yaml", has_credentials=True)
    assert type(err) is kind and err.retryable is retryable
    assert str(err) == f"failed to fetch https://h.example/index.yaml: {status} Reason"


def test_status_error_hints_missing_credentials() -> None:
    assert "no credentials configured" in str(status_error(401, "Unauthorized", "https://h/", has_credentials=False))


def test_x509_wording() -> None:
    e = ssl.SSLCertVerificationError(1, "certificate verify failed")
    e.verify_code = 20
    assert x509_message(e) == "x509: certificate signed by unknown authority"
    wrapped = RuntimeError("outer")
    wrapped.__cause__ = e
    assert "x509: certificate signed by unknown authority" in str(network_error(wrapped, "https://h/", 5))


def test_network_error_wording() -> None:
    assert "timeout after 7s" in str(network_error(TimeoutError(), "https://h/x", 7))
    assert str(network_error(OSError("[Errno -2] Name or service not known"), "https://nope.example/i", 5)) == (
        "failed to fetch https://nope.example/i: dial tcp: lookup nope.example: no such host"
    )
    assert network_error(ConnectionRefusedError(), "http://h/", 5).retryable


def test_version_not_found_message() -> None:
    e = VersionNotFound("hello", "^9", "https://h/", ["8.1.0", "8.0.0"])
    assert str(e) == 'no chart version found for hello matching "^9" in https://h/ (nearest versions: 8.1.0, 8.0.0)'


# ---- caches -------------------------------------------------------------------------------------------


def test_lru_bounds() -> None:
    lru: LRU[str, int] = LRU(max_entries=3, max_bytes=100)
    for i, k in enumerate("abc"):
        lru.put(k, i, 10)
    lru.get("a")
    lru.put("d", 3, 10)  # evicts b, the least recently used
    assert lru.get("b") is None and lru.get("a") == 0
    lru.put("e", 4, 95)  # too many bytes: evict until it fits (keeping the newest)
    assert len(lru) == 1 and lru.get("e") == 4 and lru.total_bytes == 95


async def test_single_flight_shares_one_call_and_survives_a_cancelled_waiter() -> None:
    flight: SingleFlight[str, int] = SingleFlight()
    calls = 0
    gate = asyncio.Event()

    async def work() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return 42

    waiters = [asyncio.ensure_future(flight.do("k", work)) for _ in range(10)]
    await asyncio.sleep(0)
    waiters[0].cancel()
    gate.set()
    results = await asyncio.gather(*waiters[1:])
    assert calls == 1
    assert {r[0] for r in results} == {42}
    assert waiters[0].cancelled() and all(shared for _, shared in results)  # the creator left; work went on
    assert len(flight) == 0


async def test_single_flight_propagates_errors_to_all() -> None:
    flight: SingleFlight[str, int] = SingleFlight()

    async def boom() -> int:
        await asyncio.sleep(0)
        raise SourceUnavailable("down")

    results = await asyncio.gather(*(flight.do("k", boom) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, SourceUnavailable) for r in results)
    assert len(flight) == 0


def test_chart_store_is_content_addressed(tmp_path: Path) -> None:
    store = ChartStore(tmp_path)
    chart = _tgz({"hello/Chart.yaml": b"name: hello\nversion: 1.0.0\n"})
    hex1, path = store.put(chart)
    assert hex1 == hashlib.sha256(chart).hexdigest()
    assert path == tmp_path / "charts" / "sha256" / f"{hex1}.tgz" and path.read_bytes() == chart
    assert store.put(chart) == (hex1, path) and store.has(hex1)
    assert list(store.tmp.iterdir()) == []


def test_parse_index_falls_back_to_a_full_load_for_aliases() -> None:
    body = b"""
apiVersion: v1
entries:
  hello:
    - version: 1.0.0
      urls: &u [hello.tgz]
    - version: 1.0.1
      urls: *u
"""
    charts = parse_index(body, "x")
    assert [(v.version, v.urls) for v in charts["hello"]] == [("1.0.0", ("hello.tgz",)), ("1.0.1", ("hello.tgz",))]


def test_parse_index_reads_json_indexes() -> None:
    body = b'{"apiVersion": "v1", "entries": {"hello": [{"version": "2.0.0", "urls": ["h.tgz"], "x": {"y": [1]}}]}}'
    assert parse_index(body, "x")["hello"][0].version == "2.0.0"
