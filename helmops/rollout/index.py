"""What the controller remembers between reconciles for rollout decisions: per HelmApp, its Bundle labels and
the state of its last reconcile on each cluster; and which HelmApps depend on others.

``dependsOn`` is evaluated from this (:mod:`.depends`), and so is a target's availability for
``rolloutStrategy`` (:mod:`.partitions`). When a HelmApp's states or labels change, every HelmApp of its
namespace that has ``dependsOn`` is queued (``enqueue``), so a dependency becoming Ready releases its
dependants within the next worker turn, not at the next resync. Bounded: tenants decide how many HelmApps
and clusters there are, so both are capped (``MAX_PER_NAMESPACE``, ``MAX_CLUSTERS``); what exceeds a cap is
not remembered (a dependant then reports the dependency missing).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from helmops.api.keys import Key
from helmops.rollout.depends import BundleView

__all__ = ["MAX_CLUSTERS", "MAX_PER_NAMESPACE", "RolloutIndex"]

log = logging.getLogger("helmops.controller")

MAX_PER_NAMESPACE = 2000
MAX_CLUSTERS = 5000


class RolloutIndex:
    """In-memory, per process (the leader's); filled by every reconcile, so complete after the first pass."""

    def __init__(self, enqueue: Callable[[Key], None] | None = None) -> None:
        #: queues a HelmApp for reconcile (the work queue's ``add``); None: nothing is queued.
        self.enqueue = enqueue
        self._bundles: dict[str, dict[str, BundleView]] = {}
        self._dependants: dict[str, set[str]] = {}

    def record(self, key: Key, labels: Mapping[str, str], states: Mapping[str, str], *, depends: bool) -> None:
        """The outcome of one reconcile of ``key``; queues its namespace's dependants when it changed."""
        namespace, name = key
        bundles = self._bundles.setdefault(namespace, {})
        if name not in bundles and len(bundles) >= MAX_PER_NAMESPACE:
            log.warning("rollout index: namespace %s has more than %d HelmApps; %s not indexed",
                        namespace, MAX_PER_NAMESPACE, name)  # fmt: skip
            return
        if len(states) > MAX_CLUSTERS:
            states = dict(sorted(states.items())[:MAX_CLUSTERS])
        view = BundleView(name, dict(labels), dict(states))
        dependants = self._dependants.setdefault(namespace, set())
        if depends:
            dependants.add(name)
        else:
            dependants.discard(name)
        changed = bundles.get(name) != view
        bundles[name] = view
        if changed:
            self._wake(namespace, name)

    def forget(self, key: Key) -> None:
        """The HelmApp is gone: its dependants learn it is missing."""
        namespace, name = key
        self._dependants.get(namespace, set()).discard(name)
        if self._bundles.get(namespace, {}).pop(name, None) is not None:
            self._wake(namespace, name)

    def bundles(self, namespace: str) -> list[BundleView]:
        return list(self._bundles.get(namespace, {}).values())

    def states(self, key: Key) -> Mapping[str, str]:
        view = self._bundles.get(key[0], {}).get(key[1])
        return view.states if view is not None else {}

    def _wake(self, namespace: str, changed: str) -> None:
        if self.enqueue is None:
            return
        for name in sorted(self._dependants.get(namespace, ())):
            if name != changed:
                self.enqueue((namespace, name))
