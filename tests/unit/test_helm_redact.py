"""helm's argv and stderr as helmops shows them: secrets redacted, errors mapped to pyhelm3's classes.

The process side of ``HelmCommand.run`` (exec, process groups, timeouts) is
tests/integration/test_helm_command_process.py.
"""

from __future__ import annotations

from pyhelm3 import errors as helm_errors

from helmops.helm.command import error_class
from helmops.helm.redact import redact, redact_argv


def test_redaction() -> None:
    argv = ["helm", "pull", "--password", "pw1", "--kube-token=tok", "https://u:p4ss@host/x", "-"]
    shown = redact_argv(argv)
    assert "pw1" not in shown and "--kube-token=***" in shown and "<stdin>" in shown
    assert "p4ss" not in " ".join(shown)
    assert redact("Authorization: Basic abcdef") == "Authorization: Basic ***"


def test_error_classes() -> None:
    assert error_class("Error: Kubernetes cluster unreachable: x") is helm_errors.ConnectionError
    assert error_class("execution error at (x): mustSet is required") is helm_errors.FailedToRenderChartError
    assert error_class("something else") is helm_errors.Error
