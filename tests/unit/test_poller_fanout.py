"""Polling fan-out: one poll that sees a new version in an index wakes every HelmApp reading that index."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from helmops.api.keys import Key
from helmops.api.objects import HelmApp
from helmops.api.parse import lenient_helmapp
from helmops.polling import poller as polling
from helmops.polling.poller import FANOUT_MIN_GAP, Poller
from helmops.polling.schedule import index_key

REPO = "http://repo.example/charts/"


def app(
    name: str,
    *,
    repo: str = REPO,
    chart: str = "hello",
    version: str = "^1.0.0",
    secret: str = "",
    deployed: str = "1.0.0",
    ns: str = "ns",
) -> dict[str, Any]:
    spec: dict[str, Any] = {"helm": {"repo": repo, "chart": chart, "version": version}, "pollingInterval": "1h"}
    if secret:
        spec["helmSecretName"] = secret
    return {
        "metadata": {"namespace": ns, "name": name, "resourceVersion": "1"},
        "spec": spec,
        "status": {"version": deployed},
    }


class Kube:
    """Just what the poller calls: a HelmApp GET, the status patch, Events."""

    def __init__(self, objs: list[dict[str, Any]]) -> None:
        self.objs = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objs}
        self.gets: list[Key] = []

    async def get_helmapp(self, ns: str, name: str) -> dict[str, Any] | None:
        self.gets.append((ns, name))
        return self.objs.get((ns, name))

    async def patch_status(self, ns: str, name: str, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        return {"status": body["status"]}

    async def patch_annotations(self, ns: str, name: str, annotations: dict[str, str]) -> None:
        return None

    async def event(self, obj: Any, reason: str, message: str, *, warning: bool = False) -> None:
        return None


class Resolver:
    """Answers ``latest`` for every HelmApp (the shared index says so); can block one poll in flight."""

    def __init__(self, latest: str) -> None:
        self.latest = latest
        self.calls: list[str] = []
        self.gate: dict[str, asyncio.Event] = {}

    async def resolve(self, helmapp: HelmApp, max_age: float) -> str:
        name = helmapp.metadata.name
        self.calls.append(name)
        if name in self.gate:
            await self.gate.pop(name).wait()
        return self.latest


async def settle() -> None:
    for _ in range(50):
        await asyncio.sleep(0)


def make(objs: list[dict[str, Any]], latest: str = "1.1.0") -> tuple[Poller, Kube, Resolver, list[Key]]:
    kube, resolver = Kube(objs), Resolver(latest)
    queued: list[Key] = []
    p = Poller(kube, resolver, queued.append)
    for o in objs:
        p.update(lenient_helmapp(o), o.get("status"))
    return p, kube, resolver, queued


def test_index_key_is_repository_and_chart_without_credentials() -> None:
    assert index_key(lenient_helmapp(app("a"))) == ("http://repo.example/charts", "hello")
    assert index_key(lenient_helmapp(app("a", secret="s1"))) == index_key(
        lenient_helmapp(app("b", secret="s2", version="~1.0", ns="other"))
    )
    assert index_key(lenient_helmapp(app("a", chart="other"))) != index_key(lenient_helmapp(app("a")))
    assert index_key(
        lenient_helmapp(
            {"metadata": {"name": "x", "namespace": "ns"}, "spec": {"helm": {"repo": "oci://r/charts/hello"}}}
        )
    ) == ("oci://r/charts/hello", "")


def test_one_new_version_wakes_every_helmapp_on_the_same_index() -> None:
    async def go() -> None:
        objs = [
            app("a"),
            app("b", secret="creds", ns="tenant2"),
            app("c", version="~1.1"),
            app("d", repo="http://elsewhere/"),
        ]
        p, kube, resolver, queued = make(objs)
        assert p.peers(("ns", "a")) == {("tenant2", "b"), ("ns", "c")}
        assert all((p.due_in(k) or 0) > 3000 for k in kube.objs)  # hourly: nobody would poll soon
        assert p.poll_now(("ns", "a"))
        await settle()
        assert sorted(queued) == [("ns", "a"), ("ns", "c"), ("tenant2", "b")]  # d reads another index
        assert sorted(resolver.calls) == ["a", "b", "c"]  # each polled with its own object (own credentials)
        for k in kube.objs:  # and back on their own (hourly) timers
            assert (p.due_in(k) or 0) > 3000
        p.close()

    asyncio.run(go())


def test_woken_polls_do_not_fan_out_and_one_version_fans_out_once() -> None:
    async def go() -> None:
        p, _kube, resolver, queued = make([app("a"), app("b"), app("c")])
        p.poll_now(("ns", "a"))
        await settle()
        assert len(resolver.calls) == 3  # a, then b and c once each: woken polls woke nobody
        resolver.calls.clear()
        p.poll_now(("ns", "b"))  # still "new" for b (status not upgraded yet) but the same version
        await settle()
        assert resolver.calls == ["b"]
        resolver.latest = "1.2.0"  # another version, but within FANOUT_MIN_GAP of the last fan-out
        p.poll_now(("ns", "c"))
        await settle()
        assert resolver.calls == ["b", "c"]
        assert len(queued) == 5
        p.close()

    asyncio.run(go())


def test_fan_out_again_after_the_gap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(polling, "FANOUT_MIN_GAP", 0.0)
    assert FANOUT_MIN_GAP > 0

    async def go() -> None:
        p, _kube, resolver, _queued = make([app("a"), app("b")])
        p.poll_now(("ns", "a"))
        await settle()
        resolver.latest = "1.2.0"
        resolver.calls.clear()
        p.poll_now(("ns", "a"))
        await settle()
        assert sorted(resolver.calls) == ["a", "b"]
        p.close()

    asyncio.run(go())


def test_nothing_new_wakes_nobody() -> None:
    async def go() -> None:
        p, _kube, resolver, queued = make([app("a"), app("b")], latest="1.0.0")
        p.poll_now(("ns", "a"))
        await settle()
        assert resolver.calls == ["a"] and queued == []
        p.close()

    asyncio.run(go())


def test_a_peer_polling_while_woken_polls_again_right_after() -> None:
    async def go() -> None:
        p, _kube, resolver, queued = make([app("a"), app("b")])
        resolver.gate["b"] = asyncio.Event()
        gate = resolver.gate["b"]
        p.poll_now(("ns", "b"))  # b's poll is in flight (maybe on the old index)
        await settle()
        p.poll_now(("ns", "a"))
        await settle()
        gate.set()
        await settle()
        assert resolver.calls.count("b") == 2
        assert queued.count(("ns", "b")) == 2
        p.close()

    asyncio.run(go())


def test_forget_drops_the_index_and_its_fan_out_memory() -> None:
    async def go() -> None:
        p, _kube, _resolver, _queued = make([app("a"), app("b")])
        p.poll_now(("ns", "a"))
        await settle()
        assert p._fanned
        p.forget(("ns", "a"))
        assert p.peers(("ns", "b")) == set()
        p.forget(("ns", "b"))
        assert not p._by_index and not p._fanned and len(p) == 0
        p.update(lenient_helmapp(app("a", version="1.0.0")))  # exact: not polled, not indexed
        assert not p._by_index and not p.poll_now(("ns", "a"))
        p.close()

    asyncio.run(go())


def test_an_index_change_moves_the_helmapp() -> None:
    async def go() -> None:
        p, _kube, _resolver, _queued = make([app("a"), app("b")])
        p.update(lenient_helmapp(app("b", chart="other")))
        assert p.peers(("ns", "a")) == set()
        assert p.peers(("ns", "b")) == set()
        p.close()

    asyncio.run(go())
