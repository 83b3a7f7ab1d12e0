"""Leader election on a coordination.k8s.io Lease (``kubernetes.aio.leaderelection``), as Fleet's helmops
Deployment does: only the leader watches and runs helm; losing the lease stops the process."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("helmops.controller")


@dataclass(frozen=True)
class LeaseTimes:
    lease_duration: float = 45.0
    renew_deadline: float = 30.0
    retry_period: float = 2.0


def _seconds(raw: str | None, default: float) -> float:
    if not raw or not raw.strip():
        return default
    text = raw.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        from helmops.api.duration import parse_duration

        return parse_duration(text)
    except (ImportError, ValueError):
        log.warning("ignoring invalid duration %r", raw)
        return default


def lease_times(env: Mapping[str, str]) -> LeaseTimes:
    """Fleet's CATTLE_ELECTION_LEASE_DURATION / _RENEW_DEADLINE / _RETRY_PERIOD (Go durations or seconds)."""
    d = LeaseTimes()
    return LeaseTimes(
        lease_duration=_seconds(env.get("CATTLE_ELECTION_LEASE_DURATION"), d.lease_duration),
        renew_deadline=_seconds(env.get("CATTLE_ELECTION_RENEW_DEADLINE"), d.renew_deadline),
        retry_period=_seconds(env.get("CATTLE_ELECTION_RETRY_PERIOD"), d.retry_period),
    )


def lease_name(shard_id: str | None) -> str:
    return f"helmops-leader-election-shard-{shard_id}" if shard_id else "helmops-leader-election"


class Leadership:
    """Campaigns in the background; :meth:`wait` returns once this process leads, :attr:`lost` is set if
    it stops leading."""

    def __init__(self, api_client: Any, *, namespace: str, name: str, times: LeaseTimes) -> None:
        from kubernetes.aio.leaderelection import electionconfig, leaderelection
        from kubernetes.aio.leaderelection.resourcelock.leaselock import LeaseLock

        self.identity = f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        self.namespace, self.name = namespace, name
        self._api = api_client
        self.acquired = asyncio.Event()
        self.lost = asyncio.Event()

        class Lock(LeaseLock):
            """kubernetes 37's LeaseLock.create passes ``pretty=True``, which its strict client rejects."""

            async def create(self, name: str, namespace: str, election_record: Any) -> bool:
                from kubernetes.aio import client
                from kubernetes.aio.client.exceptions import ApiException

                body = client.V1Lease(metadata=client.V1ObjectMeta(name=name), spec=self.update_lease(election_record))
                try:
                    await self.api_instance.create_namespaced_lease(namespace, body)
                except ApiException as exc:
                    log.warning("leader election: cannot create Lease %s/%s: %s", namespace, name, exc.reason)
                    return False
                return True

        lock = Lock(name, namespace, self.identity, api_client)
        config = electionconfig.Config(
            lock,
            # the library stores str(lease_duration) and later int()s it: it must be a whole number
            max(2, round(times.lease_duration)),
            times.renew_deadline,
            times.retry_period,
            self._leading,
            self._stopped,
        )
        self._election = leaderelection.LeaderElection(config)
        self._task: asyncio.Task[None] | None = None

    async def _leading(self) -> None:
        log.info("leader election: %s leads %s/%s", self.identity, self.namespace, self.name)
        self.acquired.set()
        await asyncio.Event().wait()  # cancelled by the library when the lease is lost

    async def _stopped(self) -> None:
        if self.acquired.is_set():
            log.error("leader election: lost the lease %s/%s", self.namespace, self.name)
        self.lost.set()

    def start(self) -> None:
        log.info("leader election: %s campaigning for %s/%s", self.identity, self.namespace, self.name)
        self._task = asyncio.create_task(self._run(), name="helmops-leader-election")

    async def _run(self) -> None:
        try:
            await self._election.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("leader election failed")
        finally:
            self.lost.set()

    async def stop(self) -> None:
        """Stops campaigning and, if this process still holds the Lease, releases it so a standby takes
        over at once instead of after the lease duration."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.acquired.is_set():
            try:
                await self._release()
            except Exception as exc:
                log.warning("leader election: could not release the Lease: %s", exc)

    async def _release(self) -> None:
        from helmops.kubeio.client import coordination_v1

        api: Any = coordination_v1(self._api)
        lease = await api.read_namespaced_lease(self.name, self.namespace)
        if lease.spec is None or lease.spec.holder_identity != self.identity:
            return
        await api.patch_namespaced_lease(
            self.name,
            self.namespace,
            {"spec": {"holderIdentity": None}},
            _content_type="application/merge-patch+json",
        )
        log.info("leader election: released %s/%s", self.namespace, self.name)
