"""The chart fetcher serves downloads and polling alike; every user-facing error shares one base."""

from __future__ import annotations

import asyncio
import base64
from pathlib import Path

import pytest

from helmops.api.parse import parse_helmapp
from helmops.clusters.connections import ClusterUnreachable
from helmops.clusters.kubeconfig import KubeconfigRefused
from helmops.desired.adapters import SourcesFetcher
from helmops.desired.release import DesiredError
from helmops.errors import HelmopsError
from helmops.polling.poller import ChartVersions, PollError, SourcesResolver
from helmops.sources import AuthError, ChartRequest, RepoAuth, ResolvedChart, SourceError, SourceUnavailable
from helmops.values.errors import TemplateError, ValuesError

APP = parse_helmapp(
    {
        "metadata": {"namespace": "team", "name": "app"},
        "spec": {
            "helmSecretName": "creds",
            "helm": {"repo": "https://charts.example", "chart": "web", "version": "1.x"},
        },
    }
)


class FakeKube:
    def __init__(self, secrets: dict[tuple[str, str], dict[str, str]]) -> None:
        self.secrets = secrets

    async def read_secret(self, namespace: str, name: str) -> dict[str, str] | None:
        return self.secrets.get((namespace, name))


class FakeSources:
    def __init__(self, error: SourceError | None = None) -> None:
        self.error = error
        self.calls: list[tuple[str, ChartRequest, RepoAuth, float | None]] = []

    async def resolve_version(
        self, req: ChartRequest, auth: RepoAuth | None = None, *, max_age: float | None = None
    ) -> tuple[str, str | None]:
        assert auth is not None
        self.calls.append(("resolve", req, auth, max_age))
        if self.error:
            raise self.error
        return "1.2.3", None

    async def fetch(self, req: ChartRequest, auth: RepoAuth | None = None) -> ResolvedChart:
        assert auth is not None
        self.calls.append(("fetch", req, auth, None))
        if self.error:
            raise self.error
        return ResolvedChart("http", "web", "1.2.3", "sha256:ab", Path("/c/web-1.2.3.tgz"), "https://charts.example")


def creds() -> dict[tuple[str, str], dict[str, str]]:
    enc = {k: base64.b64encode(v.encode()).decode() for k, v in {"username": "u", "password": "p"}.items()}
    return {("team", "creds"): enc}


def fetcher(sources: FakeSources, secrets: dict[tuple[str, str], dict[str, str]]) -> SourcesFetcher:
    return SourcesFetcher(FakeKube(secrets), sources)  # type: ignore[arg-type]


def test_polling_and_downloads_ask_with_the_same_request_and_credentials() -> None:
    sources = FakeSources()
    f = fetcher(sources, creds())
    assert SourcesResolver.available(f) and isinstance(f, ChartVersions)
    assert asyncio.run(SourcesResolver(f).resolve(APP, max_age=7.5)) == "1.2.3"
    chart = asyncio.run(f.fetch(APP))
    assert (chart.name, chart.version, chart.digest) == ("web", "1.2.3", "sha256:ab")
    (_, req1, auth1, age), (_, req2, auth2, _) = sources.calls
    assert req1 == req2 == ChartRequest("https://charts.example", "web", "1.x") and auth1 == auth2 and age == 7.5


def test_a_missing_helm_secret_fails_both_with_the_same_text() -> None:
    f = fetcher(FakeSources(), {})
    with pytest.raises(DesiredError) as fetch_err:
        asyncio.run(f.fetch(APP))
    with pytest.raises(PollError) as poll_err:
        asyncio.run(SourcesResolver(f).resolve(APP, max_age=1.0))
    assert str(fetch_err.value) == str(poll_err.value) == 'helm secret "creds" not found in namespace team'
    assert fetch_err.value.retryable


@pytest.mark.parametrize("error", [SourceUnavailable("repo down (HTTP 503)"), AuthError("wrong credentials")])
def test_source_errors_keep_their_text_and_retryability(error: SourceError) -> None:
    f = fetcher(FakeSources(error), creds())
    with pytest.raises(DesiredError) as fetch_err:
        asyncio.run(f.fetch(APP))
    with pytest.raises(PollError) as poll_err:
        asyncio.run(SourcesResolver(f).resolve(APP, max_age=1.0))
    assert str(fetch_err.value) == str(poll_err.value) == str(error)
    assert fetch_err.value.retryable is poll_err.value.retryable is error.retryable


def test_a_fetcher_without_version_resolution_is_not_polled() -> None:
    assert not SourcesResolver.available(object())


def test_every_user_facing_error_shares_the_base_and_keeps_its_defaults() -> None:
    cases: list[tuple[HelmopsError, bool]] = [
        (SourceError("x"), False),
        (SourceUnavailable("x"), True),
        (SourceUnavailable("x", retryable=False), False),
        (ValuesError("x"), False),
        (ValuesError("x", retryable=True), True),
        (TemplateError("x", line=1), False),
        (DesiredError("x"), False),
        (DesiredError("x", retryable=True), True),
        (PollError("x"), False),
        (ClusterUnreachable("x"), True),
        (KubeconfigRefused("x"), False),
    ]
    for exc, retryable in cases:
        assert isinstance(exc, HelmopsError) and exc.retryable is retryable, type(exc)
        assert str(exc) == exc.message == "x" and exc.args == ("x",)
    assert isinstance(KubeconfigRefused("x"), ValueError)
