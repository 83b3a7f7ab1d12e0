"""The two names every room uses to say *which* HelmApp and *which* cluster (pure, no imports).

They live in the API package because both are part of the contract with Fleet and the Kubernetes API, not
of any one room: a HelmApp is identified by its object key, and Fleet names the cluster the controller runs
in ``local`` (the ``Cluster`` of ``fleet-local``, labelled ``name=local``).  Every room already depends on
``helmops.api``; nothing here imports anything, so status, clusters, values and the runtime can share them.
"""

from __future__ import annotations

#: a HelmApp's (namespace, name): the key of the work queue, the poller, the drift monitor and the reconciler.
Key = tuple[str, str]

#: Fleet's name for the cluster the controller runs in (no kubeconfig Secret: in-cluster credentials).
LOCAL = "local"

__all__ = ["LOCAL", "Key"]
