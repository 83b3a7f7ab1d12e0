"""Classify a live release (pure), decide one action, run it through the one executor.

``classify`` names the state of a release (drift included), ``decide`` picks exactly one action for a
reconcile, a finalize or a clean-up, and :class:`~helmops.reconcile.executor.Executor` runs it: one module
per action (``install``, ``upgrade``, ``recover``, ``rollback``, ``uninstall``), all with the signature
``run(tools, step)``, called by nothing but the executor.
"""

from helmops.reconcile.backoff import backoff
from helmops.reconcile.classify import MUTATING, Action, Classification, Decision, Phase, classify, decide
from helmops.reconcile.fingerprint import fingerprint
from helmops.reconcile.release import (
    FINGERPRINT_LABEL,
    KubeReleaseReader,
    ReleaseInfo,
    ReleaseReader,
    release_from_secrets,
)
from helmops.reconcile.result import ActionResult

__all__ = [
    "FINGERPRINT_LABEL",
    "MUTATING",
    "Action",
    "ActionResult",
    "Classification",
    "Decision",
    "KubeReleaseReader",
    "Phase",
    "ReleaseInfo",
    "ReleaseReader",
    "backoff",
    "classify",
    "decide",
    "fingerprint",
    "release_from_secrets",
]
