"""Every chart-source limit, probed the way a hostile repository or registry would.

Loopback servers on 127.0.0.1 play the attacker; nothing here execs a binary.  Each test checks that the
limit trips *while* the input arrives (small peak memory, seconds not minutes) and that the error names it.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import socket
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from gzip_bombs import gzip_repeated

from helmops.sources import ChartRequest, ChartSources
from helmops.sources.archive import check_chart_archive
from helmops.sources.auth import RepoAuth
from helmops.sources.bounded import BoundedBuffer
from helmops.sources.cache import ChartStore
from helmops.sources.errors import InvalidChart, LimitExceeded, SourceUnavailable
from helmops.sources.limits import MIB, SourceLimits
from helmops.sources.net import HttpClient
from helmops.sources.oci import OciRegistries
from helmops.sources.oci_ref import parse_oci_ref
from helmops.sources.repo import HttpRepos, parse_index

CHART_YAML = b"apiVersion: v2\nname: hello\nversion: 1.0.0\n"


def tgz(files: dict[str, bytes], *, extra: list[tarfile.TarInfo] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra or []:
            tar.addfile(info)
    return buf.getvalue()


def zero_bomb(size: int, name: str = "hello/templates/bomb.yaml") -> bytes:
    """A .tgz holding one file of ``size`` zero bytes, built without ever holding ``size`` bytes."""
    header = tarfile.TarInfo("hello/Chart.yaml")
    header.size = len(CHART_YAML)
    info = tarfile.TarInfo(name)
    info.size = size
    head = header.tobuf() + CHART_YAML + b"\0" * (512 - len(CHART_YAML)) + info.tobuf()
    return gzip_repeated((head, 1), (b"\0" * MIB, size // MIB), (b"\0" * 1024, 1))


def gzip_of_zeros(size: int) -> bytes:
    return gzip_repeated((b"\0" * MIB, size // MIB))


# "billion laughs" where the reader keeps data: each version's urls repeat the previous version's ten times.
LAUGHS = b'apiVersion: v1\nentries:\n  bomb:\n  - version: 1.0.0\n    urls: &a0 ["' + b"x" * 64 + b'"]\n' + b"".join(
    b"  - version: 1.0.%d\n    urls: &a%d [" % (i, i) + b", ".join([b"*a%d" % (i - 1)] * 10) + b"]\n"
    for i in range(1, 10)
)


# ---- settings ----------------------------------------------------------------------------------------


def test_limits_from_env_reads_mib_seconds_and_counts_and_ignores_garbage() -> None:
    lim = SourceLimits.from_env({
        "HELMOPS_SOURCE_READ_TIMEOUT": "2.5",
        "HELMOPS_SOURCE_MAX_INDEX_MIB": "8",
        "HELMOPS_SOURCE_MAX_TAGS": "500",
        "HELMOPS_SOURCE_CONNECT_TIMEOUT": "-1",
        "HELMOPS_SOURCE_TIMEOUT": "soon",
    })
    assert lim.read_timeout == 2.5 and lim.max_index_bytes == 8 * MIB and lim.max_tags == 500
    assert lim.connect_timeout == SourceLimits().connect_timeout and lim.total_timeout == 60.0


def test_controller_settings_export_source_timeouts() -> None:
    from helmops.runtime.settings import export_source_timeouts, from_env

    settings = from_env({"HELMOPS_SOURCE_READ_TIMEOUT": "3s", "HELMOPS_SOURCE_CONNECT_TIMEOUT": "2"})
    assert (settings.source_read_timeout, settings.source_connect_timeout, settings.source_timeout) == (3, 2, 60)
    env: dict[str, str] = {}
    export_source_timeouts(settings, env)
    lim = SourceLimits.from_env(env)
    assert (lim.read_timeout, lim.connect_timeout, lim.total_timeout) == (3, 2, 60)


# ---- index.yaml --------------------------------------------------------------------------------------


def test_index_alias_bomb_is_refused_by_the_expansion_budget() -> None:
    assert len(LAUGHS) < 2000
    t0 = time.monotonic()
    with pytest.raises(LimitExceeded, match="too large once YAML aliases are expanded"):
        parse_index(LAUGHS, "chart repository index http://evil/index.yaml", max_nodes=1_000_000)
    assert time.monotonic() - t0 < 5


def test_index_aliases_within_budget_still_work() -> None:
    body = b"entries:\n  hello:\n  - version: 1.0.0\n    urls: &u [hello.tgz]\n  - version: 1.0.1\n    urls: *u\n"
    charts = parse_index(body, "x")
    assert [(v.version, v.urls) for v in charts["hello"]] == [("1.0.0", ("hello.tgz",)), ("1.0.1", ("hello.tgz",))]


def test_index_nesting_is_capped() -> None:
    body = b"entries:\n  hello:\n  - version: 1.0.0\n    urls: " + b"[" * 500 + b"]" * 500 + b"\n"
    with pytest.raises(LimitExceeded, match="nested deeper than 64"):
        parse_index(body, "x")


def test_bounded_buffer_stops_a_gzip_bomb_at_the_limit() -> None:
    bomb = gzip_of_zeros(64 * MIB)
    assert len(bomb) < 128 * 1024
    buf = BoundedBuffer("gzip", cap=MIB, wire_cap=MIB, what="chart repository index http://evil/index.yaml")
    peak = 0
    with pytest.raises(LimitExceeded, match=r"index http://evil/index.yaml exceeds the 1 MiB limit once decompressed"):
        for i in range(0, len(bomb), 4096):
            buf.feed(bomb[i:i + 4096])
            peak = max(peak, buf.size)
    assert peak <= MIB  # never held more than the limit
    assert buf.size == 0  # and the refused body is not kept alive by the exception


def test_bounded_buffer_caps_bytes_on_the_wire() -> None:
    buf = BoundedBuffer(None, cap=10, wire_cap=10, what="x")
    buf.feed(b"0123456789")
    with pytest.raises(LimitExceeded):
        buf.feed(b"a")


# ---- chart archives ----------------------------------------------------------------------------------


def test_a_plain_chart_passes_and_its_meta_is_read() -> None:
    info = check_chart_archive(tgz({"hello/Chart.yaml": CHART_YAML, "hello/values.yaml": b"a: 1\n"}), "u")
    assert (info.name, info.version, info.files) == ("hello", "1.0.0", 2)


def test_gzip_bomb_archive_stops_at_the_uncompressed_cap() -> None:
    bomb = zero_bomb(64 * MIB)
    lim = SourceLimits(max_chart_uncompressed=8 * MIB, max_chart_file=128 * MIB, max_chart_ratio=100_000)
    with pytest.raises(LimitExceeded, match=r"chart archive http://evil/b.tgz exceeds 8 MiB uncompressed"):
        check_chart_archive(bomb, "http://evil/b.tgz", lim)


def test_gzip_bomb_archive_trips_the_ratio_guard() -> None:
    bomb = zero_bomb(64 * MIB)
    lim = SourceLimits(max_chart_file=128 * MIB)
    with pytest.raises(LimitExceeded, match="expands more than 200x"):
        check_chart_archive(bomb, "http://evil/b.tgz", lim)


def test_single_file_cap_is_checked_from_the_header() -> None:
    with pytest.raises(LimitExceeded, match="per-file limit"):
        check_chart_archive(zero_bomb(2 * MIB), "u", SourceLimits(max_chart_file=MIB))


def test_member_count_cap() -> None:
    files = {f"hello/templates/f{i}.yaml": b"" for i in range(50)}
    with pytest.raises(LimitExceeded, match="more than 20 entries"):
        check_chart_archive(tgz(files), "u", SourceLimits(max_chart_files=20))


def test_compressed_size_cap() -> None:
    noise = tgz({"hello/Chart.yaml": CHART_YAML, "hello/x": os.urandom(8192)})
    with pytest.raises(LimitExceeded, match=r"chart archive u exceeds the 0.00\d+ MiB limit"):
        check_chart_archive(noise, "u", SourceLimits(max_chart_bytes=4096))


@pytest.mark.parametrize(("name", "kind", "match"), [
    ("/etc/passwd", tarfile.REGTYPE, "absolute path"),
    ("hello/../../x", tarfile.REGTYPE, r"'\.\.' path"),
    ("hello/link", tarfile.SYMTYPE, "a link"),
    ("hello/hard", tarfile.LNKTYPE, "a link"),
    ("hello/dev", tarfile.CHRTYPE, "device"),
    ("hello/fifo", tarfile.FIFOTYPE, "device"),
])
def test_dangerous_entries_are_refused(name: str, kind: bytes, match: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = "/etc/shadow" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
    with pytest.raises(InvalidChart, match=match):
        check_chart_archive(tgz({"hello/Chart.yaml": CHART_YAML}, extra=[info]), "u")


def test_not_gzip_is_not_a_chart() -> None:
    with pytest.raises(InvalidChart, match="not a helm chart archive"):
        check_chart_archive(b"<html>nope</html>", "u")


def test_store_admits_only_checked_archives(tmp_path: Path) -> None:
    store = ChartStore(tmp_path, SourceLimits(max_chart_file=128 * MIB))
    with pytest.raises(LimitExceeded):
        store.put(zero_bomb(32 * MIB), "http://evil/b.tgz")
    assert list(store.root.iterdir()) == []
    # A file already on disk (earlier process, or planted) is not trusted until checked in this process.
    good = tgz({"hello/Chart.yaml": CHART_YAML})
    hex_digest, path = store.put(good)
    fresh = ChartStore(tmp_path)
    assert path.is_file() and not fresh.has(hex_digest)
    fresh.put(good)
    assert fresh.has(hex_digest) and fresh.info(hex_digest) is not None


# ---- loopback attacker servers -----------------------------------------------------------------------


class Attacker(BaseHTTPRequestHandler):
    """Serves whatever ``routes`` says: (status, headers, body) or ``"hang"`` (accept, never answer)."""

    routes: dict[str, Any] = {}
    hang = threading.Event()

    def log_message(self, *_: Any) -> None:
        pass

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        route = self.routes.get(path) or next(
            (v for k, v in self.routes.items() if k.endswith("*") and path.startswith(k[:-1])), None)
        if route == "hang":
            self.hang.wait(30)
            return
        if route is None:
            route = (404, {}, b"")
        status, headers, body = route
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


@pytest.fixture
def attacker() -> Iterator[tuple[str, dict[str, Any]]]:
    routes: dict[str, Any] = {}
    handler = type("H", (Attacker,), {"routes": routes, "hang": threading.Event()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.handle_error = lambda *_: None  # type: ignore[method-assign]  # clients hang up on bombs by design
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", routes
    finally:
        handler.hang.set()
        server.shutdown()
        server.server_close()


FAST = SourceLimits(connect_timeout=1.0, read_timeout=1.0, total_timeout=10.0)


def test_hanging_repository_fails_within_the_read_timeout(attacker: tuple[str, dict[str, Any]]) -> None:
    host, routes = attacker
    routes["/index.yaml"] = "hang"

    async def go() -> None:
        http = HttpClient(FAST)
        repos = HttpRepos(http, ChartStore(Path(tmp)), Counter(), index_ttl=0.0)
        t0 = time.monotonic()
        with pytest.raises(SourceUnavailable, match=r"no data for 1s \(read timeout\)"):
            await repos.index(f"http://{host}/", RepoAuth())
        assert time.monotonic() - t0 < 5
        await http.close()

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(go())


def test_hanging_repository_with_a_cached_chart_is_served_from_cache(
    attacker: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    host, routes = attacker
    chart = tgz({"hello/Chart.yaml": CHART_YAML})
    routes["/index.yaml"] = (200, {}, b"entries:\n  hello:\n  - version: 1.0.0\n    urls: [hello-1.0.0.tgz]\n")
    routes["/hello-1.0.0.tgz"] = (200, {}, chart)

    async def go() -> None:
        sources = ChartSources(tmp_path, index_ttl=0.0, limits=FAST)
        req = ChartRequest(f"http://{host}/", "hello", "1.0.0")
        first = await sources.fetch(req)
        routes["/index.yaml"] = "hang"
        routes["/hello-1.0.0.tgz"] = "hang"
        t0 = time.monotonic()
        again = await sources.fetch(req)
        assert again.path == first.path and time.monotonic() - t0 < 5
        assert sources.stats["index_stale"] == 1
        await sources.aclose()

    asyncio.run(go())


def test_index_gzip_bomb_and_oversized_index_are_refused(attacker: tuple[str, dict[str, Any]], tmp_path: Path) -> None:
    host, routes = attacker
    routes["/bomb/index.yaml"] = (200, {"Content-Encoding": "gzip"}, gzip_of_zeros(256 * MIB))
    routes["/big/index.yaml"] = (200, {}, b"#" * (2 * MIB))
    routes["/laughs/index.yaml"] = (200, {}, LAUGHS)
    lim = SourceLimits(max_index_bytes=MIB, max_index_nodes=100_000)

    async def go() -> None:
        sources = ChartSources(tmp_path, limits=lim)
        with pytest.raises(LimitExceeded, match="exceeds the 1 MiB limit once decompressed"):
            await sources.fetch(ChartRequest(f"http://{host}/bomb", "hello"))
        with pytest.raises(LimitExceeded, match=r"index http://127.0.0.1:\d+/big/index.yaml exceeds the 1 MiB limit"):
            await sources.fetch(ChartRequest(f"http://{host}/big", "hello"))
        with pytest.raises(LimitExceeded, match="once YAML aliases are expanded"):
            await sources.fetch(ChartRequest(f"http://{host}/laughs", "bomb"))
        await sources.aclose()

    asyncio.run(go())


def test_bomb_chart_from_a_repository_and_a_tarball_url_never_reaches_the_store(
    attacker: tuple[str, dict[str, Any]], tmp_path: Path
) -> None:
    host, routes = attacker
    bomb = zero_bomb(64 * MIB)
    routes["/index.yaml"] = (200, {}, b"entries:\n  hello:\n  - version: 1.0.0\n    urls: [b.tgz]\n")
    routes["/b.tgz"] = (200, {}, bomb)

    async def go() -> None:
        sources = ChartSources(tmp_path, limits=SourceLimits(max_chart_uncompressed=16 * MIB))
        with pytest.raises(LimitExceeded, match=r"chart archive http://127.0.0.1:\d+/b.tgz"):
            await sources.fetch(ChartRequest(f"http://{host}/", "hello", "1.0.0"))
        with pytest.raises(LimitExceeded, match=r"chart archive http://127.0.0.1:\d+/b.tgz"):
            await sources.fetch(ChartRequest("", f"http://{host}/b.tgz"))
        assert list(sources.store.root.iterdir()) == []
        await sources.aclose()

    asyncio.run(go())


# ---- OCI ---------------------------------------------------------------------------------------------


def _oci(tmp_path: Path, lim: SourceLimits) -> OciRegistries:
    return OciRegistries(ChartStore(tmp_path, lim), Counter(), ttl=0.0, timeout=lim, ca_dir=tmp_path / "ca")


def test_oci_huge_tag_list_is_refused(attacker: tuple[str, dict[str, Any]], tmp_path: Path) -> None:
    host, routes = attacker
    routes["/v2/"] = (200, {}, b"{}")
    tags = json.dumps({"name": "charts/x", "tags": [f"1.0.{i}" for i in range(200_000)]}).encode()
    routes["/v2/charts/x/tags/list"] = (200, {"Content-Type": "application/json"}, tags)
    routes["/v2/charts/y/tags/list"] = (200, {"Content-Encoding": "gzip"}, gzip_of_zeros(64 * MIB))
    lim = SourceLimits(max_tag_list_bytes=MIB)
    oci = _oci(tmp_path, lim)
    auth = RepoAuth(plain_http=True)

    async def go() -> None:
        with pytest.raises(LimitExceeded, match=r"tag list of oci://127.0.0.1:\d+/charts/x exceeds the 1 MiB limit"):
            await oci.tags(parse_oci_ref(f"oci://{host}/charts/x"), auth)
        with pytest.raises(LimitExceeded, match="once decompressed"):
            await oci.tags(parse_oci_ref(f"oci://{host}/charts/y"), auth)
        many = _oci(tmp_path, SourceLimits(max_tags=1000))
        with pytest.raises(LimitExceeded, match="more than 1000 tags"):
            await many.tags(parse_oci_ref(f"oci://{host}/charts/x"), auth)

    asyncio.run(go())


def test_oci_huge_manifest_and_hanging_registry(attacker: tuple[str, dict[str, Any]], tmp_path: Path) -> None:
    host, routes = attacker
    digest = "sha256:" + "a" * 64
    routes["/v2/"] = (200, {}, b"{}")
    routes[f"/v2/charts/x/manifests/{digest}"] = (200, {}, b" " * (5 * MIB))
    routes[f"/v2/charts/z/manifests/{digest}"] = (200, {"Content-Encoding": "gzip"}, gzip_of_zeros(64 * MIB))
    routes["/v2/charts/h/*"] = "hang"
    oci = _oci(tmp_path, SourceLimits(read_timeout=1.0))
    auth = RepoAuth(plain_http=True)

    async def go() -> None:
        with pytest.raises(LimitExceeded, match=r"manifest oci://127.0.0.1:\d+/charts/x@sha256:a+ exceeds the 4 MiB"):
            await oci.manifest(parse_oci_ref(f"oci://{host}/charts/x"), digest, auth)
        with pytest.raises(LimitExceeded, match="once decompressed"):
            await oci.manifest(parse_oci_ref(f"oci://{host}/charts/z"), digest, auth)
        t0 = time.monotonic()
        with pytest.raises(SourceUnavailable, match="read timeout"):
            await oci.tags(parse_oci_ref(f"oci://{host}/charts/h"), auth)
        assert time.monotonic() - t0 < 5

    asyncio.run(go())


def test_oci_chart_layer_caps(attacker: tuple[str, dict[str, Any]], tmp_path: Path) -> None:
    import hashlib

    host, routes = attacker
    bomb = zero_bomb(64 * MIB)
    layer = "sha256:" + hashlib.sha256(bomb).hexdigest()
    manifest = json.dumps({
        "schemaVersion": 2,
        "config": {"digest": "sha256:" + "0" * 64},
        "annotations": {"org.opencontainers.image.version": "1.0.0"},
        "layers": [{"mediaType": "application/vnd.cncf.helm.chart.content.v1.tar+gzip", "digest": layer}],
    }).encode()
    mdigest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    routes["/v2/"] = (200, {}, b"{}")
    routes[f"/v2/charts/x/manifests/{mdigest}"] = (200, {}, manifest)
    routes[f"/v2/charts/x/blobs/{layer}"] = (200, {}, bomb)
    auth = RepoAuth(plain_http=True)
    ref = parse_oci_ref(f"oci://{host}/charts/x")

    async def go() -> None:
        small = _oci(tmp_path / "a", SourceLimits(max_chart_bytes=len(bomb) // 2))
        with pytest.raises(LimitExceeded, match=r"chart archive oci://127.0.0.1:\d+/charts/x@sha256:\w+ exceeds"):
            await small.pull(ref, mdigest, auth)
        unpacked = _oci(tmp_path / "b", SourceLimits(max_chart_uncompressed=16 * MIB, max_chart_file=128 * MIB,
                                                     max_chart_ratio=100_000))
        with pytest.raises(LimitExceeded, match="exceeds 16 MiB uncompressed"):
            await unpacked.pull(ref, mdigest, auth)
        assert list(unpacked.store.root.iterdir()) == [] and list(unpacked.store.tmp.iterdir()) == []

    asyncio.run(go())


def test_connect_timeout_is_separate(tmp_path: Path) -> None:
    """A listener whose backlog is full never completes the handshake: the connect timeout answers."""
    lim = SourceLimits(connect_timeout=0.5, read_timeout=5.0, total_timeout=20.0)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    fillers = []
    port = srv.getsockname()[1]
    for _ in range(4):  # fill the accept queue
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)

    async def go() -> None:
        http = HttpClient(lim)
        t0 = time.monotonic()
        with pytest.raises(SourceUnavailable, match=r"connect timeout after 0.5s"):
            await http.get(f"http://127.0.0.1:{port}/index.yaml", RepoAuth(), credentials_for="x", max_bytes=10)
        assert time.monotonic() - t0 < 4.5
        await http.close()

    try:
        asyncio.run(go())
    finally:
        for s in fillers:
            s.close()
        srv.close()


def test_gzip_helper_is_really_a_bomb() -> None:
    assert len(gzip.decompress(gzip_of_zeros(2 * MIB))) == 2 * MIB


def test_index_values_kept_are_capped() -> None:
    """Within the byte limit, an index of tiny values would keep millions of Python objects: refused."""
    body = b"entries:\n  hello:\n  - version: 1.0.0\n    urls: [" + b"a," * 200_000 + b"a]\n"
    with pytest.raises(LimitExceeded, match="more than 100000 values"):
        parse_index(body, "x", max_values=100_000)
    assert parse_index(body, "x")["hello"][0].urls[:1] == ("a",)


@pytest.mark.parametrize("size", [0, 1, MIB, MIB + 7, 3 * MIB])
def test_bounded_buffer_decodes_exactly_within_the_limit(size: int) -> None:
    body = os.urandom(size // 2) + b"x" * (size - size // 2)
    packed = gzip.compress(body)
    buf = BoundedBuffer("gzip", cap=4 * MIB, wire_cap=4 * MIB, what="x")
    for i in range(0, len(packed), 777):
        buf.feed(packed[i:i + 777])
    assert buf.finish() == body
