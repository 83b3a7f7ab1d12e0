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


def test_the_quick_path_masks_exactly_what_the_patterns_do() -> None:
    from helmops.helm.redact import _PATTERNS

    samples = [
        "--namespace=team",
        "Authorization: Bearer abc.def",
        "PASSWORD=hunter22",
        "passwd: 'x1y2'",
        "token=abc",
        "client-secret: s3",
        "https://user:pw@example.com/charts",
        "plain text with no credential",
        "mail me at a@b",
    ]
    for text in samples:
        slow = text
        for pat in _PATTERNS:
            slow = pat.sub(lambda m: m.group(1) + "***" + (m.group(2) if m.lastindex and m.lastindex > 1 else ""), slow)
        assert redact(text) == slow
