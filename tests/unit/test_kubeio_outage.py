"""The quiet-outage filter (helmops.kubeio.outage): which records it recognises, one WARNING and one INFO per
outage, and the retries demoted to DEBUG without their traceback."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from helmops.kubeio.outage import Outage

SERVER = "https://127.0.0.1:6443"


class Probe:
    def __init__(self) -> None:
        self.up = False
        self.calls = 0

    async def __call__(self) -> bool:
        self.calls += 1
        if not self.up:
            raise aiohttp.ClientConnectionError("down")
        return True


def _record(
    name: str, msg: str, *args: object, exc: BaseException | None = None, level: int = logging.ERROR
) -> logging.LogRecord:
    rec = logging.LogRecord(name, level, __file__, 1, msg, args, (type(exc), exc, None) if exc else None)
    return rec


def _connector_error(host: str, port: int) -> aiohttp.ClientConnectorError:
    key = aiohttp.client_reqrep.ConnectionKey(host, port, True, True, None, None, None)
    return aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "Connect call failed"))


def test_recognises_only_failures_to_reach_the_management_api_server() -> None:
    o = Outage(SERVER, Probe())
    here, there = _connector_error("127.0.0.1", 6443), _connector_error("10.0.0.9", 6443)
    assert o.about_outage(_record("helmops.controller", "reconcile a/b failed: %s", here, exc=here))
    assert not o.about_outage(_record("helmops.controller", "reconcile a/b failed: %s", there, exc=there))
    assert o.about_outage(
        _record(
            "kopf._cogs.clients.watching",
            "Request attempt #1/9 failed; will retry: GET https://127.0.0.1:6443/apis/x -> ClientConnectorError(...)",
        )
    )
    assert o.about_outage(_record("kopf.objects", "watch failed", exc=aiohttp.ServerDisconnectedError()))
    # a downstream cluster's failure is text naming the cluster, never an exception: left alone
    assert not o.about_outage(
        _record(
            "helmops.controller",
            "HelmApp a/b: cluster c unreachable: ServerDisconnectedError: Server disconnected",
            level=logging.WARNING,
        )
    )
    assert not o.about_outage(
        _record("helmops.controller", "reconcile a/b failed: %s", ValueError("x"), exc=ValueError("x"))
    )
    assert not o.about_outage(_record("kopf.objects", "handler failed", exc=KeyError("k")))


async def test_one_warning_one_info_and_retries_hidden(caplog: pytest.LogCaptureFixture) -> None:
    probe = Probe()
    o = Outage(SERVER, probe, interval=0.01)
    o.bind(asyncio.get_running_loop())
    here = _connector_error("127.0.0.1", 6443)
    with caplog.at_level(logging.INFO):
        for _ in range(5):
            assert o.filter(_record("helmops.controller", "reconcile a/b failed: %s", here, exc=here)) is False
        await asyncio.sleep(0.05)
        assert o.down_since is not None
        for _ in range(5):
            assert o.filter(_record("kopf.objects", "retry", exc=aiohttp.ServerDisconnectedError())) is False
        probe.up = True
        await asyncio.sleep(0.05)
        await o.stop()
    mine = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "helmops.kubeio.outage"]
    assert [lvl for lvl, _ in mine] == ["WARNING", "INFO"]
    assert "127.0.0.1:6443" in mine[0][1] and "10 retry messages" in mine[1][1]
    assert o.down_since is None


async def test_a_blip_says_nothing_and_debug_keeps_the_retry_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    probe = Probe()
    probe.up = True
    o = Outage(SERVER, probe, interval=0.01)
    o.bind(asyncio.get_running_loop())
    here = _connector_error("127.0.0.1", 6443)
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.DEBUG)
    try:
        rec = _record("helmops.controller", "reconcile a/b failed: %s", here, exc=here)
        assert o.filter(rec) is True and rec.levelname == "DEBUG" and rec.exc_info is None
    finally:
        root.setLevel(old)
    await asyncio.sleep(0.05)
    await o.stop()
    assert probe.calls == 1 and o.down_since is None
    assert not [r for r in caplog.records if r.name == "helmops.kubeio.outage"]
