"""The helm binary, driven through pyhelm3 (one Client per cluster, extended via ``Command.run``)."""

from helmops.helm.command import CallOptions, HelmCommand, HelmTimeoutError, build_argv, call_options
from helmops.helm.driver import HelmDriver, ReleaseOutcome, ReleaseSpec, apply_flags, impersonation_flags
from helmops.helm.redact import redact, redact_argv

__all__ = [
    "CallOptions",
    "HelmCommand",
    "HelmDriver",
    "HelmTimeoutError",
    "ReleaseOutcome",
    "ReleaseSpec",
    "apply_flags",
    "build_argv",
    "call_options",
    "impersonation_flags",
    "redact",
    "redact_argv",
]
