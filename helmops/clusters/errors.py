"""Why a cluster cannot be used: its own module so that connections and the uniqueness check share it."""

from __future__ import annotations

from helmops.errors import HelmopsError


class ClusterUnreachable(HelmopsError):
    """The cluster cannot be reached (no/invalid kubeconfig Secret, refused kubeconfig, API down) or may not
    be used (see :class:`helmops.clusters.uniqueness.DuplicateCluster`).

    The message never contains the kubeconfig or its credentials.  Retryable: the reconciler retries the
    cluster with backoff (a Secret may appear, an API server come back)."""

    retryable = True
    #: the Event reason the controller reports it with.
    reason = "ClusterUnreachable"


__all__ = ["ClusterUnreachable"]
