"""The ``helmops run`` process: kopf for watching/login/liveness, our own queue and workers for reconciles.

kopf only feeds keys into the work queue (``on.event``: no finalizers, progress or diffbase annotations
from kopf). With ``--leader-elect`` nothing is watched until this process holds the Lease; meanwhile the
process serves ``/healthz`` (so a standby's liveness probe passes). Shutdown order on SIGTERM (or a lost
Lease): stop taking work, cancel the workers (helm gets SIGTERM and records its release as failed, its
process group is killed after a grace period), then stop kopf, release the Lease. A lost Lease closes the
queue at once, so no new helm action starts.

Day-2 parts hang off the same events: the poller (``helmops.polling``) re-resolves version constraints on
``pollingInterval``, the drift monitor (``helmops.drift``) compares deployed objects with their release and
queues drifted HelmApps (their reconcile classifies the drift and, with correctDrift, corrects it through the
executor), resyncs carry ±10% jitter, and the
``fleet_helmapp_*`` gauges follow every HelmApp's status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from helmops.api.keys import Key
from helmops.clusters.connections import Connections
from helmops.clusters.identity import AccessReviews, ImpersonatingClients
from helmops.clusters.live import LiveResources
from helmops.clusters.resolve import DEPLOYED_ANNOTATION
from helmops.clusters.watch import ClusterIndex
from helmops.clusters.watch import register as watch_clusters
from helmops.controller.reconciler import Reconciler, ReconcilerConfig, in_shard
from helmops.desired import adapters as deps
from helmops.helm.driver import HelmDriver
from helmops.kubeio import outage
from helmops.kubeio.client import api_client, kubeconfig_configuration, preload_apis
from helmops.kubeio.kube import FINALIZER, GROUP, PLURAL, VERSION, Kube
from helmops.policy.source import RestrictionSource
from helmops.polling.poller import LAST_POLL_ANNOTATION
from helmops.promotion.wiring import CONTROLLER_ANNOTATIONS as PROMOTION_ANNOTATIONS
from helmops.promotion.wiring import Promotion
from helmops.reconcile.executor import Executor
from helmops.runtime import metrics
from helmops.runtime.day2 import Day2
from helmops.runtime.kopfsettings import operator_settings
from helmops.runtime.leader import Leadership, lease_name
from helmops.runtime.queue import WorkQueue, run_worker
from helmops.runtime.settings import ENABLE_HINT, FLAG_ENV, Settings
from helmops.sources.cache import usable_cache_dir

log = logging.getLogger("helmops.controller")


def _connection_info(kubeconfig: Path) -> Any:
    """kopf credentials from an explicit kubeconfig (kopf's own login reads only the default one)."""
    import kopf

    cfg = kubeconfig_configuration(kubeconfig)
    header = cfg.get_api_key_with_prefix("BearerToken") or cfg.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    return kopf.ConnectionInfo(
        server=cfg.host,
        ca_path=cfg.ssl_ca_cert,
        insecure=not cfg.verify_ssl,
        username=cfg.username or None,
        password=cfg.password or None,
        scheme=scheme,
        token=token,
        certificate_path=cfg.cert_file,
        private_key_path=cfg.key_file,
    )


def _trigger(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes an event worth a reconcile: everything but status-only changes (as controller-runtime's
    generation/label/annotation predicates, plus deletion and other controllers' finalizer edits). Our own
    finalizer is added by the reconcile that goes on with the patched object: its event is not a change."""
    meta = body.get("metadata") or {}
    # our own bookkeeping annotations are not worth a reconcile
    own = (LAST_POLL_ANNOTATION, DEPLOYED_ANNOTATION, *PROMOTION_ANNOTATIONS)
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in own}
    return (
        meta.get("generation"),
        meta.get("deletionTimestamp"),
        tuple(sorted((meta.get("labels") or {}).items())),
        tuple(sorted(annotations.items())),
        tuple(f for f in meta.get("finalizers") or () if f != FINALIZER),
    )


def _pidfd_child_watcher(loop: asyncio.AbstractEventLoop) -> bool:
    """Python 3.11's default child watcher starts a thread per child process to wait for it: one per helm
    call. A pidfd (Linux ≥ 5.3) makes the exit an event of the loop instead, as Python 3.12 does on its own.
    Returns whether it is in use (else the default stays)."""
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return False
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        watcher = asyncio.PidfdChildWatcher()
        asyncio.set_child_watcher(watcher)
    watcher.attach_loop(loop)
    return True


def _install_signals(loop: asyncio.AbstractEventLoop, callback: Any) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, callback, sig)


async def _serve_health(host: str, port: int, body: Mapping[str, Any]) -> web.AppRunner:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response(dict(body))

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def run_disabled(settings: Settings) -> int:
    """Flag off: say how to enable, serve health and metrics, touch nothing."""
    log.warning(ENABLE_HINT)
    metrics.ENABLED.set(0)
    metrics.serve(settings.metrics_host, settings.metrics_port)
    runner = await _serve_health(settings.health_host, settings.health_port, {"status": "ok", "enabled": False})
    stop = asyncio.Event()
    _install_signals(asyncio.get_running_loop(), lambda _sig: stop.set())
    await stop.wait()
    await runner.cleanup()
    log.info("helmops stopped")
    return 0


async def run_enabled(settings: Settings) -> int:
    import kopf

    from helmops.kubeio import kopfpatch

    # before kopf's first request: a deeply nested object must not end the watcher (helmops.kubeio)
    kopfpatch.apply()

    early_signal: list[int] = []
    early_stop = asyncio.Event()

    def early(sig: int) -> None:
        early_signal.append(sig)
        early_stop.set()

    _install_signals(asyncio.get_running_loop(), early)
    log.info(
        "helmops starting: HelmApp controller enabled (%s), workers=%d, helm concurrency=%d, helm=%s, shard=%s",
        FLAG_ENV,
        settings.workers,
        settings.helm_concurrency,
        settings.helm,
        settings.shard_id or "(default)",
    )
    metrics.ENABLED.set(1)
    metrics.init_labels()
    metrics.WORKERS_MAX.set(settings.workers)
    metrics.HELM_MAX.set(settings.helm_concurrency)
    metrics.serve(settings.metrics_host, settings.metrics_port)

    await asyncio.to_thread(preload_apis)
    _pidfd_child_watcher(asyncio.get_running_loop())
    api = await api_client(settings.kubeconfig)
    # while the management API server is down: one WARNING, one INFO when back, retries at DEBUG
    quiet = outage.install(api, str(api.configuration.host))
    leadership: Leadership | None = None
    metrics.LEADER.set(0 if settings.leader_elect else 1)
    if settings.leader_elect:
        leadership = Leadership(
            api, namespace=settings.system_namespace, name=lease_name(settings.shard_id), times=settings.lease_times
        )
        # A standby must pass its liveness probe while it waits; kopf takes the port over once leading.
        standby = await _serve_health(
            settings.health_host, settings.health_port, {"status": "ok", "enabled": True, "leader": False}
        )
        leadership.start()
        waits = [asyncio.ensure_future(leadership.acquired.wait()), asyncio.ensure_future(early_stop.wait())]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waits:
            waiter.cancel()
        await standby.cleanup()
        if not leadership.acquired.is_set():
            await leadership.stop()
            await quiet.stop()
            outage.remove(quiet)
            await api.close()
            log.info("helmops stopped before becoming leader")
            return 0
        metrics.LEADER.set(1)
    kube = Kube(api)
    driver = await HelmDriver.create(
        executable=settings.helm,
        kubeconfig=settings.kubeconfig,
        concurrency=settings.helm_concurrency,
        term_grace=settings.helm_term_grace_seconds,
        per_tenant=settings.helm_tenant_slots or None,
    )
    log.info("helm %s at %s", driver.helm_version, settings.helm)
    # the chart cache outlives the process (a restart downloads nothing it holds): helmops.sources.cache
    cache = await asyncio.to_thread(usable_cache_dir, settings.chart_cache_dir)
    log.info("chart cache: %s (at most %d MiB)", cache, settings.chart_cache_max_bytes >> 20)
    charts = deps.chart_fetcher(kube, cache, settings.ca_bundle, max_cache_bytes=settings.chart_cache_max_bytes)
    connections = Connections(
        api,
        driver,
        helm=settings.helm,
        helm_concurrency=settings.helm_concurrency,
        term_grace=settings.helm_term_grace_seconds,
        allow_exec=settings.allow_exec_kubeconfig,
        allow_insecure=settings.allow_insecure_kubeconfig,
        secret_namespaces=settings.kubeconfig_secret_namespaces,
    )
    identities = ImpersonatingClients()
    queue: WorkQueue[Key] = WorkQueue(max_per_tenant=settings.tenant_workers or max(1, settings.workers - 1))
    day2 = Day2(settings, api, kube, driver, charts, queue)
    promotion = Promotion(kube, settings.helm, queue.add_after)  # helmops.promotion (docs/promotion.md)
    reconciler = Reconciler(
        kube,
        driver,
        kube.releases,
        deps.spec_checker(),
        charts,
        deps.values_renderer(api),
        ReconcilerConfig(
            pending_grace_seconds=settings.pending_grace_seconds,
            resync_seconds=settings.resync_seconds,
            backoff_base_seconds=settings.backoff_base_seconds,
            backoff_cap_seconds=settings.backoff_cap_seconds,
            own_namespace=settings.system_namespace,
            shard_id=settings.shard_id,
            protected_namespaces=tuple(settings.extra_protected_namespaces),
            max_timeout_seconds=settings.max_timeout_seconds,
            require_service_account=settings.require_service_account,
        ),
        clusters=connections,
        live=LiveResources(),
        identities=identities,
        restrictions=RestrictionSource(kube.custom),
        drift=day2,
        executor=Executor(gates=promotion.gates),  # safe promotion: approval, windows (helmops.promotion)
    )
    reconciler.rollout_index.enqueue = queue.add  # rollout (issue 17): a dependency's change queues its dependants
    busy = 0
    reviews = AccessReviews(identities, api)

    async def can_read(key: Key, group: str, resource: str, namespace: str) -> bool:
        return await reviews.allowed(reconciler.identity_of(key), "get", group, resource, namespace)

    day2.drift.can_read = can_read

    def can_read_on(cluster: str, api: Any) -> Any:
        """The identity check of a downstream cluster's drift monitor, asked on that cluster."""
        downstream = AccessReviews(identities, api, cluster=cluster)

        async def check(key: Key, group: str, resource: str, namespace: str) -> bool:
            return await downstream.allowed(reconciler.identity_of(key), "get", group, resource, namespace)

        return check

    day2.can_read_on = can_read_on

    async def handle(key: Key) -> float | None:
        nonlocal busy
        if leadership is not None and leadership.lost.is_set():
            return None  # the Lease is gone: another replica owns the releases now
        busy += 1
        metrics.WORKERS_ACTIVE.set(busy)
        metrics.QUEUE_DEPTH.set(len(queue))
        try:
            started = time.monotonic()
            delay = await reconciler.reconcile(key)
            await promotion.after_reconcile(key, started)  # soak promotion, waiting gauges
            return day2.after_reconcile(delay)
        finally:
            busy -= 1
            metrics.WORKERS_ACTIVE.set(busy)

    workers = [
        asyncio.create_task(run_worker(queue, handle, reconciler.on_error), name=f"helmops-worker-{i}")
        for i in range(settings.workers)
    ]

    registry = kopf.OperatorRegistry()
    seen: dict[Key, tuple[Any, ...]] = {}
    cluster_index = ClusterIndex(queue.add)  # Cluster/ClusterGroup changes re-queue their namespace's HelmApps
    watch_clusters(registry, cluster_index)

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> Any:
        if settings.kubeconfig is not None:
            return _connection_info(settings.kubeconfig)
        return kopf.login_via_client(**kwargs)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def on_event(event: Mapping[str, Any], body: Mapping[str, Any], **_: Any) -> None:
        meta = body.get("metadata") or {}
        key: Key = (str(meta.get("namespace")), str(meta.get("name")))
        if event.get("type") == "DELETED" or not in_shard(body, settings.shard_id):
            seen.pop(key, None)
            kube.latest.forget(key)
            queue.forget(key)
            day2.forget(key)
            reconciler.rollout_index.forget(key)  # rollout (issue 17)
            promotion.forget(key)
            cluster_index.helmapp(key, False)
            return
        cluster_index.helmapp(key, True)
        kube.latest.offer(body)  # what the reconcile reads (helmops.kubeio.latest)
        day2.observe(body)
        promotion.observe(body)
        trigger = _trigger(body)
        if seen.get(key) == trigger:
            return  # status-only change (e.g. our own status write)
        seen[key] = trigger
        queue.add(key)
        metrics.QUEUE_DEPTH.set(len(queue))

    @kopf.on.probe(id="workers", registry=registry)
    def probe(**_: Any) -> dict[str, int]:
        return {"busy": busy, "max": settings.workers, "queued": len(queue), "helm": driver.active}

    ks = operator_settings()  # helmops.runtime.kopfsettings: no diff base (on.event handlers only)

    stop_kopf = asyncio.Event()
    shutting_down = False

    async def shutdown(sig: int) -> None:
        log.info("helmops: received %s, stopping (in-flight helm calls are cancelled)", signal.Signals(sig).name)
        queue.close()
        await day2.stop()
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        stop_kopf.set()

    def on_signal(sig: int) -> None:
        nonlocal shutting_down
        if shutting_down:
            return
        shutting_down = True
        asyncio.get_running_loop().create_task(shutdown(sig), name="helmops-shutdown")

    exit_code = 0
    if leadership is not None:
        lead = leadership

        async def watch_leadership() -> None:
            nonlocal exit_code
            await lead.lost.wait()
            metrics.LEADER.set(0)
            queue.close()  # at once: no reconcile (so no helm action) starts after the Lease is lost
            if not shutting_down:
                exit_code = 1
                on_signal(signal.SIGTERM)

        watcher = asyncio.create_task(watch_leadership(), name="helmops-leadership-watch")

    existing = set(asyncio.all_tasks())
    namespaces = list(settings.namespaces)
    tasks = await kopf.spawn_tasks(
        registry=registry,
        settings=ks,
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://{settings.health_host}:{settings.health_port}/healthz",
        stop_flag=stop_kopf,
    )
    # kopf installs its own SIGTERM/SIGINT handlers in spawn_tasks; ours must run first (see module doc).
    _install_signals(asyncio.get_running_loop(), on_signal)
    day2.start()
    if early_signal:  # asked to stop while starting up
        on_signal(early_signal[0])
    try:
        await kopf.run_tasks(tasks, ignored=existing)
    finally:
        shutting_down = True
        queue.close()
        await day2.stop()
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        await identities.close()
        await connections.close()
        await driver.close()
        close_charts = getattr(charts, "close", None)
        if close_charts is not None:
            with contextlib.suppress(Exception):
                await close_charts()
        if leadership is not None:
            watcher.cancel()
            await leadership.stop()
        with contextlib.suppress(Exception):
            await kube.close()
        await quiet.stop()
        outage.remove(quiet)
    log.info("helmops stopped" + (" (lost leadership)" if exit_code else ""))
    return exit_code


async def run(settings: Settings) -> int:
    if not settings.enabled:
        return await run_disabled(settings)
    return await run_enabled(settings)
