"""Fairness between tenants (namespaces): helm slots, queue turns, the timeoutSeconds cap and the template
budget. Deterministic: no helm, no timers that race (the event loop is stepped explicitly)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from helmops.api.parse import parse_helmapp
from helmops.cli.run import _ENV_FLAGS
from helmops.desired.release import (
    DEFAULT_MAX_TIMEOUT_SECONDS,
    FetchedChart,
    Values,
    build_release,
    clamp_notice,
    clamp_timeout,
)
from helmops.helm.slots import HelmSlots, default_per_tenant
from helmops.runtime.queue import WorkQueue
from helmops.runtime.settings import Settings, from_env, max_timeout
from helmops.values import FORBIDDEN_FUNCTIONS, ClusterContext, TemplateError, ValuesError, render_inline
from helmops.values.template import render_template
from helmops.values.template_budget import MAX_COST_UNITS, call_cost, render_budget


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


# --- helm slots -------------------------------------------------------------------------------------


async def test_slots_serve_tenants_round_robin() -> None:
    """One slot, tenant a queues three calls before b and c queue one each: the order is a, b, c, a, a —
    not a, a, a, b, c as a FIFO semaphore would serve them."""
    slots = HelmSlots(1)
    order: list[str] = []
    gates: dict[str, asyncio.Event] = {}

    async def call(tenant: str, name: str) -> None:
        async with slots.slot(tenant):
            order.append(name)
            gates[name] = asyncio.Event()
            await gates[name].wait()

    first = asyncio.create_task(call("x", "x1"))
    await _settle()
    tasks = []
    for tenant, name in [("a", "a1"), ("a", "a2"), ("a", "a3"), ("b", "b1"), ("c", "c1")]:
        tasks.append(asyncio.create_task(call(tenant, name)))
        await _settle()
    assert order == ["x1"] and slots.waiting() == 5
    for expected in ["a1", "b1", "c1", "a2", "a3"]:
        gates[order[-1]].set()
        await _settle()
        assert order[-1] == expected
    gates["a3"].set()
    await asyncio.gather(first, *tasks)
    assert slots.in_use == 0 and slots.waiting() == 0


async def test_one_tenant_never_holds_every_slot() -> None:
    slots = HelmSlots(3)
    assert slots.per_tenant == 2 == default_per_tenant(3)
    for _ in range(2):
        await slots.acquire("a")
    third = asyncio.create_task(slots.acquire("a"))
    await _settle()
    assert not third.done() and slots.in_use == 2  # a free slot stays free for another tenant
    await asyncio.wait_for(slots.acquire("b"), 1)  # taken at once
    assert slots.held("b") == 1 and slots.in_use == 3
    slots.release("a")
    await _settle()
    assert third.done() and slots.held("a") == 2
    for t in ("a", "a", "b"):
        slots.release(t)
    assert slots.in_use == 0


def test_per_tenant_cap_settings() -> None:
    assert HelmSlots(1).per_tenant == 1  # one slot: nothing to keep free
    assert HelmSlots(4).per_tenant == 3
    assert HelmSlots(4, per_tenant=1).per_tenant == 1
    assert HelmSlots(4, per_tenant=9).per_tenant == 4
    assert HelmSlots(4, per_tenant=0).per_tenant == 3
    env = {"HELMOPS_HELM_CONCURRENCY": "6", "HELMOPS_HELM_CONCURRENCY_PER_NAMESPACE": "2"}
    assert from_env(env).helm_tenant_slots == 2 and from_env({}).helm_tenant_slots == 0
    assert _ENV_FLAGS["helm_concurrency_per_namespace"] == "HELMOPS_HELM_CONCURRENCY_PER_NAMESPACE"


async def test_cancelled_waiters_leak_no_slot() -> None:
    slots = HelmSlots(1)
    await slots.acquire("a")
    waiting = asyncio.create_task(slots.acquire("b"))
    other = asyncio.create_task(slots.acquire("c"))
    await _settle()
    waiting.cancel()
    await _settle()
    slots.release("a")  # goes to c, not to the cancelled b
    await _settle()
    assert other.done() and slots.held("c") == 1 and slots.held("b") == 0
    # granted and cancelled before it ran: the slot comes back
    late = asyncio.create_task(slots.acquire("d"))
    await _settle()
    slots.release("c")
    late.cancel()
    await _settle()
    assert slots.in_use == 0 and slots.waiting() == 0
    with pytest.raises(RuntimeError):
        slots.release("zz")


# --- work queue ---------------------------------------------------------------------------------------


async def test_queue_turns_round_robin_between_namespaces() -> None:
    q: WorkQueue[tuple[str, str]] = WorkQueue()
    for i in range(4):
        q.add(("noisy", f"app{i}"))
    q.add(("quiet", "app"))
    q.add(("third", "app"))
    q.add(("noisy", "app0"))  # dedup still holds
    got = [await q.get() for _ in range(6)]
    assert got == [
        ("noisy", "app0"),
        ("quiet", "app"),
        ("third", "app"),
        ("noisy", "app1"),
        ("noisy", "app2"),
        ("noisy", "app3"),
    ]
    assert len(q) == 0


async def test_queue_keeps_one_worker_per_key_and_wakes_waiting_workers() -> None:
    q: WorkQueue[tuple[str, str]] = WorkQueue()
    workers = [asyncio.create_task(q.get()) for _ in range(2)]
    await _settle()
    q.add(("a", "x"))
    q.add(("b", "y"))
    done = await asyncio.gather(*workers)
    assert sorted(done) == [("a", "x"), ("b", "y")]
    q.add(("a", "x"))  # while processing: dirty, not queued
    assert len(q) == 0
    q.done(("a", "x"))
    assert len(q) == 1 and await q.get() == ("a", "x")
    # a cancelled waiting worker does not swallow a key
    w = asyncio.create_task(q.get())
    await _settle()
    w.cancel()
    await _settle()
    q.add(("c", "z"))
    assert await asyncio.wait_for(q.get(), 1) == ("c", "z")


async def test_queue_caps_the_reconciles_of_one_namespace() -> None:
    """With two workers and a cap of one per namespace, a second key of the busy namespace waits even though a
    worker is idle, and another namespace's key is handed out at once."""
    q: WorkQueue[tuple[str, str]] = WorkQueue(max_per_tenant=1)
    q.add(("a", "1"))
    q.add(("a", "2"))
    assert await q.get() == ("a", "1")
    blocked = asyncio.create_task(q.get())
    await _settle()
    assert not blocked.done()  # ("a", "2") waits: namespace a is at its cap
    q.add(("b", "1"))
    assert await asyncio.wait_for(blocked, 1) == ("b", "1")
    nxt = asyncio.create_task(q.get())
    await _settle()
    assert not nxt.done()
    q.done(("a", "1"))
    assert await asyncio.wait_for(nxt, 1) == ("a", "2")
    assert from_env({"HELMOPS_RECONCILER_WORKERS_PER_NAMESPACE": "3"}).tenant_workers == 3


async def test_queue_without_namespaces_is_fifo() -> None:
    q: WorkQueue[str] = WorkQueue()
    for k in ("a", "b", "c"):
        q.add(k)
    assert [await q.get() for _ in range(3)] == ["a", "b", "c"]


# --- timeoutSeconds cap ---------------------------------------------------------------------------------


def test_timeout_is_clamped_to_the_cap() -> None:
    assert clamp_timeout(3600, 600) == 600
    assert clamp_timeout(120, 600) == 120
    assert clamp_timeout(0, 600) == 0  # helm's own 5m default is left alone
    assert clamp_timeout(-5, 600) == 0
    assert clamp_timeout(3600, 0) == 3600  # no cap
    msg = clamp_notice(3600, 600)
    assert msg is not None and "3600" in msg and "600s" in msg and "--max-timeout" in msg
    assert clamp_notice(600, 600) is None and clamp_notice(3600, 0) is None


def test_max_timeout_setting() -> None:
    assert max_timeout({}) == DEFAULT_MAX_TIMEOUT_SECONDS == Settings().max_timeout_seconds == 600
    assert max_timeout({"HELMOPS_MAX_TIMEOUT": "1h"}) == 3600
    assert max_timeout({"HELMOPS_MAX_TIMEOUT": "900"}) == 900
    assert max_timeout({"HELMOPS_MAX_TIMEOUT": "0"}) == 0
    assert max_timeout({"HELMOPS_MAX_TIMEOUT": "30s"}) == 300  # never below helm's default
    assert max_timeout({"HELMOPS_MAX_TIMEOUT": "soon"}) == 600
    assert from_env({"HELMOPS_MAX_TIMEOUT": "20m"}).max_timeout_seconds == 1200
    assert _ENV_FLAGS["max_timeout"] == "HELMOPS_MAX_TIMEOUT"


def test_build_release_clamps_but_keeps_the_fingerprint() -> None:
    obj = parse_helmapp(
        {"metadata": {"name": "app", "namespace": "team-a"}, "spec": {"helm": {"chart": "c", "timeoutSeconds": 86400}}}
    )
    chart = FetchedChart("c", "1.0.0", "sha256:abc", Path("/c.tgz"))
    capped = build_release(
        obj, release_name="app", release_namespace="t", chart=chart, values=Values({}, "d"), max_timeout=600
    )
    free = build_release(obj, release_name="app", release_namespace="t", chart=chart, values=Values({}, "d"))
    assert capped.release.timeout_seconds == 600 and capped.timeout_clamped_from == 86400
    assert free.release.timeout_seconds == 86400 and free.timeout_clamped_from is None
    assert capped.fingerprint == free.fingerprint  # changing the cap does not redeploy releases
    assert capped.release.tenant == "team-a" == capped.release.slot_tenant


# --- template budget ------------------------------------------------------------------------------------

EXPENSIVE_REFUSED = [
    "genPrivateKey",
    "bcrypt",
    "htpasswd",
    "genCA",
    "genSelfSignedCert",
    "genSignedCert",
    "encryptAES",
]


@pytest.mark.parametrize("fn", EXPENSIVE_REFUSED)
def test_expensive_random_functions_are_refused_by_name(fn: str) -> None:
    assert fn in FORBIDDEN_FUNCTIONS
    with pytest.raises(TemplateError) as info:
        render_template(f"${{ {fn} }}", {})
    assert f'function "{fn}" is not allowed' in str(info.value)


def test_derive_password_is_costed() -> None:
    assert call_cost("derivePassword", (1, "long", "p", "u", "s")) * 4 == MAX_COST_UNITS
    loop = '${ range until 5 }${ derivePassword 1 "long" "p" "u" "s" }${ end }'
    with render_budget(120.0), pytest.raises(TemplateError) as info:  # wall time is not what stops it here
        render_template(loop, {})
    text = str(info.value)
    assert "cost budget exceeded" in text and "derivePassword" in text and text.startswith("template: values:1:")


@pytest.mark.parametrize(
    "source",
    [
        "${ uniq (until 3000) | len }",
        '${ regexReplaceAll "(a|b)+c" (repeat 200000 "ab") "x" }',
        '${ regexMatch "a{1000}a{1000}" (repeat 100 "a") }',
    ],
)
def test_superlinear_calls_are_refused_before_they_run(source: str) -> None:
    start = time.monotonic()
    with pytest.raises(TemplateError) as info:
        render_template(source, {})
    assert "cost budget exceeded" in str(info.value)
    assert time.monotonic() - start < 1.0  # refused up front, not after the work


def test_cheap_calls_are_not_costed() -> None:
    assert render_template('${ regexMatch "^[a-z]+$" "abc" }', {}) == "true"
    assert render_template("${ uniq (list 1 1 2) | len }", {}) == "2"
    assert call_cost("upper", ("x",)) == 0


def test_wall_time_budget_stops_a_render() -> None:
    """The clock is checked around every function call; a zero budget stops at the first one."""
    with render_budget(0.0), pytest.raises(TemplateError) as info:
        time.sleep(0.01)
        render_template('${ range until 10 }${ upper "x" }${ end }', {})
    text = str(info.value)
    assert "wall-time budget exceeded" in text and "(stopped at until)" in text


def test_wall_time_budget_stops_a_runaway_loop_of_cheap_calls() -> None:
    """16 million Go-equality comparisons through 4000 `has` calls (seconds of work, within the call-count
    budget) stop soon after the wall-time budget."""
    source = "${ $l := until 4000 }${ range $l }${ if has . $l }${ end }${ end }"
    start = time.monotonic()
    with render_budget(0.2), pytest.raises(TemplateError) as info:
        render_template(source, {})
    assert "wall-time budget exceeded" in str(info.value) and "has" in str(info.value)
    assert time.monotonic() - start < 2.0


def test_one_budget_for_all_templates_of_a_helmapp() -> None:
    """templateValues keys share one budget: spreading derivePassword over keys does not multiply it."""
    ctx = ClusterContext.from_cluster({"metadata": {"name": "c1", "namespace": "fleet-default"}})
    tv = {f"k{i}": '${ derivePassword 1 "long" "p" "u" "s" }' for i in range(5)}
    with render_budget(120.0), pytest.raises(ValuesError) as info:
        render_inline({"templateValues": tv}, ctx)
    assert "cost budget exceeded" in str(info.value) and "derivePassword" in str(info.value)
