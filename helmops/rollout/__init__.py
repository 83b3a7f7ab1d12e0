"""Fleet's rollout controls for HelmApps, as pure functions over typed inputs.

* :mod:`.restrictions` — ``targetRestrictions``: where a HelmApp may deploy at most (Fleet v0.12's rule).
* :mod:`.depends` — ``dependsOn``: per cluster, which dependencies are not Ready there yet.
* :mod:`.limits` and :mod:`.partitions` — ``rolloutStrategy``: Fleet's numbers and the per-pass rollout plan.

The controller and ``helmops render/diff`` reach them through :mod:`helmops.clusters.targeting` and
:mod:`helmops.controller`; nothing here does I/O.
"""
