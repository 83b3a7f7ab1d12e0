"""Classify a live release (pure), choose one action, run it (one module per action)."""

from helmops.reconcile.backoff import backoff
from helmops.reconcile.classify import Action, Classification, Decision, Phase, classify, decide
from helmops.reconcile.fingerprint import fingerprint
from helmops.reconcile.install import install
from helmops.reconcile.recover import recover
from helmops.reconcile.release import (
    FINGERPRINT_LABEL,
    KubeReleaseReader,
    ReleaseInfo,
    ReleaseReader,
    release_from_secrets,
)
from helmops.reconcile.result import ActionResult
from helmops.reconcile.uninstall import uninstall
from helmops.reconcile.upgrade import upgrade

__all__ = [
    "FINGERPRINT_LABEL",
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
    "install",
    "recover",
    "release_from_secrets",
    "uninstall",
    "upgrade",
]
