"""Rollout controls in the controller (issue 17): ``dependsOn`` and ``rolloutStrategy`` decide, per cluster,
whether an install or upgrade may run *now*. A pre-executor decision taken in :mod:`.apply` right after
``decide``: a held cluster is reported (status, Event, log line), never acted on, and retried.

Per reconcile a :class:`RolloutRound` is opened (:meth:`RolloutControl._rollout_begin`):

* ``dependsOn`` is checked from the :class:`~helmops.rollout.index.RolloutIndex` (the dependencies' last
  per-cluster states; a dependency's change queues its dependants);
* with a ``rolloutStrategy``, every cluster's classification meets at a barrier, one pass of Fleet's rollout
  (:func:`helmops.rollout.partitions.plan`) runs over all of them, then each cluster proceeds or is held.
  Clusters that fail before classifying leave the barrier and count as unavailable; the barrier also gives
  up after ``BARRIER_SECONDS`` (the missing clusters count as unavailable), so one hung cluster cannot stall
  the others forever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from helmops.api.keys import Key
from helmops.api.objects import Cluster, ClusterGroup, HelmApp, ObjectMeta
from helmops.api.spec import BundleRef, RolloutStrategy
from helmops.clusters.targeting import cluster_groups, local_cluster
from helmops.controller.teardown import Teardown
from helmops.desired.targets import ClusterTarget
from helmops.reconcile import Action, ActionResult
from helmops.reconcile.classify import Classification, Decision, Phase
from helmops.rollout.depends import bundle_labels, evaluate
from helmops.rollout.index import RolloutIndex
from helmops.rollout.partitions import RolloutPlan, TargetState, plan
from helmops.status import State

log = logging.getLogger("helmops.controller")

__all__ = ["BARRIER_SECONDS", "RolloutControl", "RolloutHold", "RolloutRound", "previous_from_status"]

T = TypeVar("T")

BARRIER_SECONDS = 120.0
#: retry of a cluster held by the rollout (other clusters' readiness is what it waits for).
HOLD_RETRY_SECONDS = 5.0
#: backstop retry of a cluster waiting for a dependency (a dependency's change queues it at once).
DEPENDS_RETRY_SECONDS = 30.0
#: previous per-cluster states that make a deployed cluster unavailable (Fleet: not ready, or not applied).
UNAVAILABLE_STATES = frozenset({State.NOT_READY.value, State.ERR_APPLIED.value, State.WAIT_APPLIED.value})
GATED = frozenset({Action.INSTALL, Action.UPGRADE})


@dataclass(frozen=True)
class RolloutHold:
    """Why one cluster is not installed/upgraded now, as status and Events say it."""

    state: State
    reason: str
    message: str
    delay: float


def previous_from_status(status: Mapping[str, Any]) -> dict[str, str]:
    """Per-cluster availability from a status written before this process started (a restart): a cluster
    whose resources were not all ready counts as NotReady, so the first pass after a restart is not more
    eager than the last one before it. Bounded by the status itself (perClusterResourceCounts is capped)."""
    out: dict[str, str] = {}
    counts = status.get("perClusterResourceCounts")
    if not isinstance(counts, Mapping):
        return out
    for cid, c in counts.items():
        if isinstance(c, Mapping) and any(c.get(k) for k in ("notReady", "missing", "waitApplied")):
            out[str(cid).rsplit("/", 1)[-1]] = State.NOT_READY.value
    return out


class RolloutRound:
    """One reconcile of one HelmApp: the dependsOn snapshot and the rollout barrier."""

    def __init__(
        self,
        key: Key,
        refs: Sequence[BundleRef] | None,
        index: RolloutIndex,
        strategy: RolloutStrategy | None,
        targets: Sequence[ClusterTarget],
        groups: Sequence[ClusterGroup],
        previous: Mapping[str, Any] | None = None,
    ) -> None:
        """``previous``: the HelmApp's live status, read only when this process has not reconciled it yet."""
        self.key = key
        self.refs = [r for r in refs or () if r.name or r.selector is not None]
        self.bundles = index.bundles(key[0]) if self.refs else []
        self.previous = dict(index.states(key))
        if not self.previous and previous is not None:
            self.previous = previous_from_status(previous)
        self.strategy = strategy
        self.groups = list(groups)
        self.names = {t.name for t in targets}
        self._states: dict[str, TargetState] = {}
        self._left: set[str] = set()
        self._clusters = {t.name: self._cluster(t) for t in targets} if strategy is not None else {}
        self._ready = asyncio.Event()
        self._plan: RolloutPlan | None = None

    def _cluster(self, t: ClusterTarget) -> Cluster:
        if t.cluster is None:
            return local_cluster(t.namespace)
        try:
            return Cluster.model_validate(dict(t.cluster))
        except Exception:  # resolve_targets parsed it already; keep the name for partition matching
            return Cluster(metadata=ObjectMeta(name=t.name, namespace=t.namespace))

    # --- dependsOn ---------------------------------------------------------------------------------
    def depends_wait(self, t: ClusterTarget) -> RolloutHold | None:
        if not self.refs:
            return None
        try:
            wait = evaluate(self.refs, self.key[1], self.key[0], t.name, self.bundles)
        except ValueError as exc:
            return RolloutHold(State.ERR_APPLIED, "DependencyInvalid", f"dependsOn: {exc}", DEPENDS_RETRY_SECONDS)
        if wait is None:
            return None
        if wait.missing is not None:
            return RolloutHold(State.ERR_APPLIED, "DependencyMissing", wait.message, DEPENDS_RETRY_SECONDS)
        return RolloutHold(State.WAIT_APPLIED, "DependencyNotReady", wait.message, DEPENDS_RETRY_SECONDS)

    # --- the barrier -------------------------------------------------------------------------------
    def target_state(self, t: ClusterTarget, c: Classification) -> TargetState:
        cluster = self._clusters.get(t.name) or local_cluster(t.namespace)
        new = c.phase is Phase.ABSENT
        unavailable = not new and (
            c.phase not in (Phase.IN_SYNC, Phase.DRIFTED, Phase.OUT_OF_SYNC)
            or self.previous.get(t.name) in UNAVAILABLE_STATES
        )
        up_to_date = c.phase in (Phase.IN_SYNC, Phase.DRIFTED)
        groups = tuple(cluster_groups(cluster, self.groups))
        return TargetState(cluster, groups, new, up_to_date, unavailable, paused=t.paused)

    async def decide(self, name: str, state: TargetState) -> str | None:
        """Reports this cluster's state and waits for the pass over all clusters; why it is held, or None."""
        if self.strategy is None:
            return None
        self._states[name] = state
        self._check()
        try:
            await asyncio.wait_for(self._ready.wait(), BARRIER_SECONDS)
        except TimeoutError:
            self._compute()
        assert self._plan is not None
        return self._plan.hold(name)

    def leave(self, name: str) -> None:
        """The cluster will not reach :meth:`decide` (failed, or waits for a dependency)."""
        if self.strategy is None or name in self._states:
            return
        self._left.add(name)
        self._check()

    def _check(self) -> None:
        if not self._ready.is_set() and self.names <= set(self._states) | self._left:
            self._compute()

    def _compute(self) -> None:
        if self._plan is not None:
            return
        states = list(self._states.values())
        for name in sorted(self.names - set(self._states)):
            cluster = self._clusters.get(name) or local_cluster(self.key[0])
            states.append(TargetState(cluster, tuple(cluster_groups(cluster, self.groups)), False, False, True))
        self._plan = plan(self.strategy, states)
        self._ready.set()
        p = self._plan
        if p.error is None and (p.held or p.unavailable_partitions):
            log.info(
                "HelmApp %s/%s rollout pass: %d to change, %d held; unavailable %d/%d, partitions %d/%d",
                *self.key, len(p.go), len(p.held), p.unavailable, p.max_unavailable,
                p.unavailable_partitions, p.max_unavailable_partitions,
                extra={"helmapp": f"{self.key[0]}/{self.key[1]}"},
            )  # fmt: skip

    async def around(self, name: str, work: Awaitable[T]) -> T:
        """Runs one cluster's reconcile; whatever happens, it does not keep the barrier waiting."""
        try:
            return await work
        finally:
            self.leave(name)


class RolloutControl(Teardown):
    """The controller's side of the rollout controls (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: per-cluster states of every HelmApp reconciled here; queues dependants (runtime/app.py wires it).
        self.rollout_index = RolloutIndex()
        self._rounds: dict[Key, RolloutRound] = {}

    async def _rollout_begin(
        self, key: Key, obj: HelmApp, targets: Sequence[ClusterTarget], status: Mapping[str, Any]
    ) -> RolloutRound:
        """``status`` is the HelmApp's status as stored (the typed model leaves it out): after a restart it
        says which clusters were not ready."""
        refs = list(obj.spec.depends_on or ())
        strategy = obj.spec.rollout_strategy
        groups: list[ClusterGroup] = []
        if strategy is not None and strategy.partitions:
            for g in await self.kube.list_cluster_groups(key[0]):
                try:
                    groups.append(ClusterGroup.model_validate(g))
                except Exception:
                    continue
        previous = status or None
        rnd = RolloutRound(key, refs, self.rollout_index, strategy, targets, groups, previous)
        self._rounds[key] = rnd
        return rnd

    def _rollout_end(self, key: Key, obj: HelmApp, states: Mapping[str, str]) -> None:
        self._rounds.pop(key, None)
        labels = dict(obj.spec.labels)
        self.rollout_index.record(key, bundle_labels(key[1], labels), states, depends=bool(obj.spec.depends_on))

    def _forget(self, key: Key) -> None:
        super()._forget(key)
        self._rounds.pop(key, None)
        self.rollout_index.forget(key)

    async def _rollout_hold(
        self, key: Key, obj: HelmApp, t: ClusterTarget, c: Classification, d: Decision
    ) -> RolloutHold | None:
        """None: the decided action may run on this cluster now. Otherwise it is held, and reported here."""
        rnd = self._rounds.get(key)
        if rnd is None:
            return None
        hold = rnd.depends_wait(t) if d.action in GATED else None
        if hold is None:
            why = await rnd.decide(t.name, rnd.target_state(t, c))
            if why is not None and d.action in GATED:
                new = c.phase is Phase.ABSENT
                hold = RolloutHold(State.PENDING if new else State.OUT_OF_SYNC, "RolloutHeld", why, HOLD_RETRY_SECONDS)
        else:
            rnd.leave(t.name)
        if hold is not None:
            log.info("HelmApp %s/%s: %s on %s held: %s", *key, d.action, t.describe(), hold.message,
                     extra={"helmapp": f"{key[0]}/{key[1]}", "cluster": t.id})  # fmt: skip
            # one Event slot per cluster, so the held clusters of one pass do not re-post each other's Events
            await self.events.post(obj, ActionResult(False, hold.reason, hold.message), "", t.describe())
        return hold
