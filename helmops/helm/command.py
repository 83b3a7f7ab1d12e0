"""pyhelm3 ``Command`` extended through its ``run`` escape hatch.

pyhelm3 builds correct argv for the helm commands we need, but it spawns helm through a shell that
inherits the controller's environment, logs ``--kube-token`` verbatim, has no per-call flags or env, no
process timeout and, on cancellation, only signals the shell. This subclass keeps pyhelm3's argv builders
and replaces the spawning: per-call options come from a context variable set by the driver, helm runs
via ``exec`` as the leader of its own process group, and cancellation or a timeout signals the whole group.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import os
import resource
import signal
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyhelm3
from pyhelm3 import errors as helm_errors

from helmops.helm.redact import redact, redact_argv

log = logging.getLogger("helmops.helm")

#: helm subcommands that install or upgrade a release and accept the render/apply flags.
_APPLY = frozenset({"upgrade", "install"})
#: helm subcommands that never talk to the cluster.
_LOCAL = frozenset({"version", "show", "template", "pull", "package", "repo", "search", "env"})


@dataclass(frozen=True)
class CallOptions:
    """Everything that varies per helm call and that pyhelm3 cannot express."""

    env: Mapping[str, str] = field(default_factory=dict)
    #: flags appended to ``upgrade``/``install`` only (e.g. ``--labels``, ``--skip-schema-validation``).
    apply_flags: Sequence[str] = ()
    #: flags appended to every command that talks to the cluster (e.g. ``--kube-as-user``).
    cluster_flags: Sequence[str] = ()
    #: replaces the per-Client ``--history-max`` pyhelm3 puts on upgrade/rollback.
    history_max: int | None = None
    #: hard limit on the helm process's lifetime, seconds.
    process_timeout: float = 600.0
    #: how long helm gets after SIGTERM to record the release as failed before the group is killed.
    term_grace: float = 20.0
    #: literal strings that must never leave the process (passwords, tokens).
    secrets: Sequence[str] = ()


#: default cap on a helm process's data segment (its Go heap), MiB; HELMOPS_HELM_MAX_MEMORY_MIB overrides, 0 = none.
DEFAULT_HELM_MAX_MEMORY_MIB = 2048
_OOM = "fatal error: out of memory"


def helm_memory_limit(env: Mapping[str, str]) -> int | None:
    """Bytes a helm process may allocate (RLIMIT_DATA), or None for no cap.

    helm decodes every revision of a release it touches, and a tenant who may write Secrets in the release
    namespace writes those records: without a cap one gzip-bomb revision grows helm to gigabytes."""
    raw = env.get("HELMOPS_HELM_MAX_MEMORY_MIB", "").strip()
    try:
        mib = int(raw) if raw else DEFAULT_HELM_MAX_MEMORY_MIB
    except ValueError:
        mib = DEFAULT_HELM_MAX_MEMORY_MIB
    return mib * 1024 * 1024 if mib > 0 else None


def _cap_memory(pid: int, limit: int | None) -> None:
    """Applied from the parent right after the spawn (no preexec_fn in a threaded process): helm reads the
    cluster before it allocates anything large, so the limit is in force when it could matter."""
    if limit is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError, ValueError, OSError):
            resource.prlimit(pid, resource.RLIMIT_DATA, (limit, limit))


_CALL: contextvars.ContextVar[CallOptions | None] = contextvars.ContextVar("helmops_helm_call", default=None)


@contextlib.contextmanager
def call_options(opts: CallOptions) -> Iterator[None]:
    """Applies ``opts`` to every helm command run in this context (task-local)."""
    token = _CALL.set(opts)
    try:
        yield
    finally:
        _CALL.reset(token)


class HelmTimeoutError(helm_errors.Error):  # type: ignore[misc]
    """helm outlived its process timeout and was killed with its process group."""


# Ordered: the first matching substring of lower-cased stderr decides the error class.
_CLASSIFY: tuple[tuple[str, type[helm_errors.Error]], ...] = (
    ("context canceled", helm_errors.CommandCancelledError),
    ("etcdserver", helm_errors.ConnectionError),
    ("release: not found", helm_errors.ReleaseNotFoundError),
    ("failed to render chart", helm_errors.FailedToRenderChartError),
    ("execution error", helm_errors.FailedToRenderChartError),
    ("rendered manifests contain a resource that already exists", helm_errors.ResourceAlreadyExistsError),
    ("is invalid", helm_errors.InvalidResourceError),
    ("kubernetes cluster unreachable", helm_errors.ConnectionError),
    ("connection refused", helm_errors.ConnectionError),
    ("i/o timeout", helm_errors.ConnectionError),
)


def error_class(stderr: str) -> type[helm_errors.Error]:
    """Maps helm's stderr to a pyhelm3 error class (pyhelm3's rules plus unreachable-cluster cases)."""
    text = stderr.lower()
    for needle, cls in _CLASSIFY:
        if needle in text:
            return cls
    base: type[helm_errors.Error] = helm_errors.Error
    return base


def build_argv(
    executable: str,
    command: Sequence[Any],
    opts: CallOptions,
    cluster_args: Sequence[str],
) -> list[str]:
    """The final argv for one helm call: pyhelm3's command + cluster flags + our per-call flags."""
    args = [str(part) for part in command]
    sub = args[0] if args else ""
    if opts.history_max is not None and "--history-max" in args:
        i = args.index("--history-max")
        if i + 1 < len(args):
            args[i + 1] = str(opts.history_max)
    argv = [executable, *args]
    if sub not in _LOCAL:
        argv.extend(cluster_args)
        argv.extend(opts.cluster_flags)
    if sub in _APPLY:
        argv.extend(opts.apply_flags)
    return argv


def utf8_json(data: bytes) -> bytes:
    """pyhelm3 sends values as ``json.dumps`` output, which escapes characters outside the BMP as UTF-16
    surrogate pairs (``\\ud83d\\ude80``); helm's YAML parser refuses those ("invalid Unicode character
    escape"). The same document with raw UTF-8 parses everywhere. Anything that is not JSON is left alone."""
    try:
        return json.dumps(json.loads(data), ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return data


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class HelmCommand(pyhelm3.Command):  # type: ignore[misc]
    """``pyhelm3.Command`` whose ``run`` spawns helm safely (see module docstring)."""

    def __init__(self, *, base_env: Mapping[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._base_env = dict(base_env if base_env is not None else os.environ)
        self._max_memory = helm_memory_limit(self._base_env)

    def _cluster_args(self) -> list[str]:
        args: list[str] = []
        if self._kubeconfig:
            args += ["--kubeconfig", str(self._kubeconfig)]
        if self._kubecontext:
            args += ["--kube-context", str(self._kubecontext)]
        if self._kubeapiserver:
            args += ["--kube-apiserver", str(self._kubeapiserver)]
        if self._kubetoken:
            args += ["--kube-token", str(self._kubetoken)]
        if self._insecure_skip_tls_verify:
            args.append("--kube-insecure-skip-tls-verify")
        return args

    async def run(self, command: list[Any], input: bytes | None = None) -> bytes:
        opts = _CALL.get() or CallOptions()
        if input is not None:
            input = utf8_json(input)
        argv = build_argv(self._executable, command, opts, self._cluster_args())
        secrets = [*opts.secrets, *([str(self._kubetoken)] if self._kubetoken else [])]
        shown = " ".join(redact_argv(argv, secrets))
        env = {**self._base_env, **opts.env}
        log.info("helm: %s", shown)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,  # helm leads its own process group: we signal the group
        )
        _cap_memory(proc.pid, self._max_memory)
        communicate = asyncio.ensure_future(proc.communicate(input))
        timed_out = False
        try:
            done, _ = await asyncio.wait({communicate}, timeout=opts.process_timeout)
            if not done:
                timed_out = True
                await self._stop(proc, communicate, opts.term_grace)
        except asyncio.CancelledError:
            await self._stop(proc, communicate, opts.term_grace)
            raise
        stdout, stderr_b = (
            communicate.result()
            if communicate.done() and not communicate.cancelled()
            else (
                b"",
                b"",
            )
        )
        if timed_out:
            msg = f"helm {command[0]} did not finish within {int(opts.process_timeout)}s and was killed"
            raise HelmTimeoutError(-1, b"", msg.encode())
        if proc.returncode == 0:
            log.debug("helm ok: %s", shown)
            return stdout
        stderr = redact(stderr_b.decode(errors="replace"), secrets).strip()
        if _OOM in stderr and self._max_memory is not None:
            # Go's runtime dump says nothing to a user; the cap does.
            stderr = (
                f"helm exceeded its memory limit ({self._max_memory // (1024 * 1024)} MiB, "
                "HELMOPS_HELM_MAX_MEMORY_MIB): a chart or a release record in the namespace is too large"
            )
        log.warning("helm failed (exit %s): %s: %s", proc.returncode, shown, stderr)
        raise error_class(stderr)(proc.returncode or -1, b"", stderr.encode())

    @staticmethod
    async def _stop(
        proc: asyncio.subprocess.Process, communicate: asyncio.Future[tuple[bytes, bytes]], grace: float
    ) -> None:
        """SIGTERM the group (helm then records the release as failed), SIGKILL it after ``grace``."""
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait({communicate}, timeout=grace)
        except asyncio.CancelledError:
            _signal_group(proc.pid, signal.SIGKILL)
            raise
        finally:
            # Whatever happened, nothing of this helm call may outlive it.
            _signal_group(proc.pid, signal.SIGKILL)
        if not communicate.done():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(communicate, timeout=5)
