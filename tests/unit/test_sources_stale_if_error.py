"""Stale-if-error: while a repository is unreachable, what is already cached keeps reconciles going."""

from __future__ import annotations

import asyncio
import io
import tarfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from helmops.sources.auth import RepoAuth
from helmops.sources.cache import ChartStore
from helmops.sources.errors import AuthError, SourceUnavailable
from helmops.sources.net import HttpResponse
from helmops.sources.repo import HttpRepos

INDEX = b"""apiVersion: v1
entries:
  hello:
  - name: hello
    version: 0.1.0
    urls: [hello-0.1.0.tgz]
"""


class FlakyHttp:
    """Answers from a script: an ``HttpResponse`` or an exception per call."""

    def __init__(self, *answers: HttpResponse | BaseException) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def get(self, url: str, auth: RepoAuth, **_: Any) -> HttpResponse:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


def tgz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def ok(body: bytes, headers: Mapping[str, str] | None = None) -> HttpResponse:
    return HttpResponse(200, "OK", "http://r/", dict(headers or {}), body)


def repos(http: FlakyHttp, tmp_path: Path) -> tuple[HttpRepos, Counter[str]]:
    stats: Counter[str] = Counter()
    return HttpRepos(http, ChartStore(tmp_path), stats, index_ttl=0.0), stats  # type: ignore[arg-type]


def test_index_is_served_stale_while_the_repository_is_down(tmp_path: Path) -> None:
    down = SourceUnavailable("failed to fetch http://r/index.yaml: connection refused")
    http = FlakyHttp(ok(INDEX), down, HttpResponse(503, "Service Unavailable", "http://r/", {}, b""))
    r, stats = repos(http, tmp_path)

    async def go() -> None:
        first = await r.index("http://r/", RepoAuth())
        assert await r.index("http://r/", RepoAuth()) is first  # connection refused
        assert await r.index("http://r/", RepoAuth()) is first  # 503
        assert http.calls == 3 and stats["index_stale"] == 2

    asyncio.run(go())


def test_no_stale_index_without_a_cached_copy_or_for_non_retryable_errors(tmp_path: Path) -> None:
    http = FlakyHttp(SourceUnavailable("down"), ok(INDEX), AuthError("401"))
    r, _ = repos(http, tmp_path)

    async def go() -> None:
        with pytest.raises(SourceUnavailable):
            await r.index("http://r/", RepoAuth())
        await r.index("http://r/", RepoAuth())
        with pytest.raises(AuthError):  # a changed answer (now 401) is not an outage: report it
            await r.index("http://r/", RepoAuth())

    asyncio.run(go())


def test_tarball_already_downloaded_is_used_while_its_host_is_down(tmp_path: Path) -> None:
    http = FlakyHttp(ok(tgz({"x/Chart.yaml": b"name: x\nversion: 1.0.0\n"}), {"ETag": '"x"'}),
                     SourceUnavailable("down"))
    r, stats = repos(http, tmp_path)

    async def go() -> None:
        url = "http://h/x-1.0.0.tgz"
        first = await r.download(url, RepoAuth(), credentials_for=url, revalidate_after=0.0)
        assert await r.download(url, RepoAuth(), credentials_for=url, revalidate_after=0.0) == first
        assert stats["download_stale"] == 1

    asyncio.run(go())
