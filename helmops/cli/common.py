"""What every CLI subcommand shares: exit codes, reading manifests, output formats, progress, helm, kube."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import urllib3
import yaml

#: Exit codes shared by every subcommand (docs/cli.md).
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_DIFFERENCES = 2

FORMATS_DATA = ("table", "json", "yaml")


class CliError(Exception):
    """A user-facing failure: printed as ``helmops <command>: <message>`` and exit 1."""


#: What the sync Kubernetes client raises when the API server cannot be reached.
UNREACHABLE: tuple[type[BaseException], ...] = (urllib3.exceptions.HTTPError, OSError)
#: What a subcommand stops on and reports with ``fail``: an unreachable API server or a ``CliError``.
FAILURES: tuple[type[BaseException], ...] = (*UNREACHABLE, CliError)


# --------------------------------------------------------------------------------------------------
# reading manifests


@dataclass(frozen=True)
class Document:
    """One YAML document of an input file: where it came from and what it holds."""

    source: str
    """File name as given (``-`` reads stdin, shown as ``<stdin>``)."""
    index: int
    """0-based position among the file's documents (empty documents count)."""
    body: Any

    @property
    def where(self) -> str:
        return f"{self.source}[{self.index}]"


class ManifestError(Exception):
    """A file that cannot be read or parsed as YAML; ``where`` names the file (and line)."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.message = message


def _read_text(path: str, stdin: TextIO | None = None) -> tuple[str, str]:
    if path == "-":
        return "<stdin>", (stdin or sys.stdin).read()
    try:
        return path, Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(path, f"cannot read: {getattr(exc, 'strerror', None) or exc}") from None


def load_documents(path: str, stdin: TextIO | None = None) -> list[Document]:
    """Every document of a (multi-document) YAML file, ``-`` for stdin. Raises ManifestError on bad YAML."""
    source, text = _read_text(path, stdin)
    docs: list[Document] = []
    try:
        for index, body in enumerate(yaml.safe_load_all(text)):
            docs.append(Document(source, index, body))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestError(source, f"document {len(docs)} is not valid YAML{where}: {problem}") from None
    return docs


def load_objects(paths: Sequence[str], stdin: TextIO | None = None) -> list[Document]:
    """The non-empty mapping documents of several files, in order."""
    out = []
    for path in paths:
        for doc in load_documents(path, stdin):
            if doc.body is None:
                continue
            if not isinstance(doc.body, dict):
                raise ManifestError(doc.where, "not a Kubernetes object (a YAML map)")
            # A List (kubectl get -o yaml) is unpacked so exported objects can be fed back in.
            if doc.body.get("kind") == "List" and isinstance(doc.body.get("items"), list):
                for item in doc.body["items"]:
                    if isinstance(item, dict):
                        out.append(Document(doc.source, doc.index, item))
                continue
            out.append(doc)
    return out


# --------------------------------------------------------------------------------------------------
# output


def add_output_flag(parser: argparse.ArgumentParser, choices: Sequence[str], default: str) -> None:
    parser.add_argument(
        "-o",
        "--output",
        choices=list(choices),
        default=default,
        help=f"output format (default: {default})",
    )


def dump(data: Any, fmt: str, out: TextIO | None = None) -> None:
    """Print ``data`` as JSON or YAML (block style, keys in insertion order)."""
    out = out or sys.stdout
    if fmt == "json":
        out.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        out.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO | None = None) -> None:
    """A kubectl-style table: upper-case headers, columns padded with three spaces."""
    out = out or sys.stdout
    cells = [[h.upper() for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        out.write("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() + "\n")


def error(command: str, message: str) -> None:
    sys.stderr.write(f"helmops {command}: {message}\n")


def use_color(choice: str, stream: TextIO) -> bool:
    """``--color auto`` colours only on a terminal, and never with NO_COLOR set."""
    if choice == "always":
        return True
    if choice == "never" or os.environ.get("NO_COLOR"):
        return False
    return is_tty(stream)


def is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """One-line progress on a terminal (stderr); silent when stderr is not a TTY (CI logs stay clean)."""

    def __init__(self, stream: TextIO | None = None, *, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.enabled = is_tty(self.stream) if enabled is None else enabled
        self._width = 0

    def step(self, text: str) -> None:
        if not self.enabled:
            return
        line = f"… {text}"
        pad = max(0, self._width - len(line))
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._width = len(line)

    def done(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


# --------------------------------------------------------------------------------------------------
# helm


def helm_binary() -> str:
    """``$HELMOPS_HELM``, else ``helm`` on PATH."""
    configured = os.environ.get("HELMOPS_HELM")
    if configured:
        return configured
    found = shutil.which("helm")
    if found is None:
        raise CliError("the helm binary was not found: put helm on PATH or set HELMOPS_HELM")
    return found


class Helm:
    """Runs the helm binary with private HELM_* homes (no user repositories or credentials leak in)."""

    def __init__(self, kubeconfig: str | None = None, context: str | None = None) -> None:
        self.executable = helm_binary()
        self.kubeconfig = kubeconfig
        self.context = context
        self._home = Path(tempfile.mkdtemp(prefix="helmops-cli-helm-"))

    def close(self) -> None:
        shutil.rmtree(self._home, ignore_errors=True)

    def __enter__(self) -> Helm:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HELM_")}
        env.update(
            HELM_CACHE_HOME=str(self._home / "cache"),
            HELM_CONFIG_HOME=str(self._home / "config"),
            HELM_DATA_HOME=str(self._home / "data"),
            HELM_DRIVER="secret",
        )
        if self.kubeconfig:
            env.pop("KUBECONFIG", None)
        return env

    def run(self, *args: str, cluster: bool = False, timeout: float = 300.0) -> str:
        argv = [self.executable, *args]
        if cluster:
            if self.kubeconfig:
                argv += ["--kubeconfig", self.kubeconfig]
            if self.context:
                argv += ["--kube-context", self.context]
        try:
            proc = subprocess.run(argv, env=self._env(), capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise CliError(f"helm {args[0]} did not finish within {int(timeout)}s") from None
        except OSError as exc:
            raise CliError(f"cannot run helm ({self.executable}): {exc.strerror or exc}") from None
        if proc.returncode != 0:
            raise HelmFailed(args[0], proc.stderr.strip())
        return proc.stdout

    def template(
        self,
        release: str,
        namespace: str,
        chart: Path,
        values_yaml: str,
        *,
        upgrade: bool = False,
        skip_schema_validation: bool = False,
        enable_dns: bool = True,
    ) -> str:
        """``helm template`` of a chart archive with the given values; hooks and tests left out, as
        ``helm get manifest`` leaves them out of a release's manifest."""
        values_file = self._home / f"values-{os.getpid()}-{id(values_yaml)}.yaml"
        values_file.parent.mkdir(parents=True, exist_ok=True)
        values_file.write_text(values_yaml, encoding="utf-8")
        values_file.chmod(0o600)
        try:
            args = ["template", release, str(chart), "--namespace", namespace, "--values", str(values_file),
                    "--no-hooks", "--skip-tests"]  # fmt: skip
            if upgrade:
                args.append("--is-upgrade")
            if skip_schema_validation:
                args.append("--skip-schema-validation")
            if enable_dns:
                args.append("--enable-dns")
            return self.run(*args)
        finally:
            values_file.unlink(missing_ok=True)


class HelmFailed(CliError):
    """helm exited non-zero; the message is helm's stderr (helm never prints credentials there)."""

    def __init__(self, command: str, stderr: str) -> None:
        text = stderr.removeprefix("Error: ").strip() or "failed"
        super().__init__(f"helm {command}: {text}")
        self.command = command
        self.stderr = stderr


# --------------------------------------------------------------------------------------------------
# kubernetes (sync client: a CLI has nothing else to do while it waits)


def add_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], command: str, help: str, doc: str | None
) -> argparse.ArgumentParser:
    """A subcommand's parser whose --help shows the module docstring as written (line breaks kept)."""
    return sub.add_parser(command, help=help, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_kube_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    parser.add_argument("--context", help="kubeconfig context to use")


def kube_client(kubeconfig: str | None, context: str | None = None) -> Any:
    """A ``kubernetes.client.ApiClient`` for --kubeconfig/--context, else the usual defaults; it parses
    responses with the bounded JSON loader (``helmops.kubeio``), so a deeply nested HelmApp or Cluster
    cannot break a command."""
    from helmops.kubeio.client import KubeconfigUnusable, cli_client

    # urllib3 logs each retry as a warning; the CLI reports the final failure in one line instead.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    try:
        return cli_client(kubeconfig, context)
    except KubeconfigUnusable as exc:
        raise CliError(f"no usable kubeconfig: {exc}") from None


@contextlib.contextmanager
def kube_session(kubeconfig: str | None, context: str | None = None) -> Iterator[Any]:
    """``kube_client`` for a ``with`` block, so that no exit path leaves the client's thread pool behind."""
    api = kube_client(kubeconfig, context)
    try:
        yield api
    finally:
        close_client(api)


def unreachable(exc: BaseException) -> CliError:
    """A connection failure of the sync client (urllib3/OS errors) as one line without a traceback."""
    reason = getattr(exc, "reason", None) or exc
    text = str(reason)
    if "Connection refused" in text:
        text = "connection refused"
    elif "timed out" in text.lower():
        text = "timed out"
    return CliError(f"cannot reach the Kubernetes API server: {text}")


def fail(command: str, exc: BaseException) -> int:
    """The one stderr line and exit code of a subcommand that stops on a connection failure or a ``CliError``."""
    error(command, str(unreachable(exc) if isinstance(exc, UNREACHABLE) else exc))
    return EXIT_ERROR


def close_client(api: Any) -> None:
    """Close a sync ApiClient (its thread pool), whatever the client version offers."""
    closer: Any = getattr(api, "close", None)
    if callable(closer):
        closer()


def api_error(exc: Any, what: str) -> CliError:
    """An ApiException as one user-worded line (status and reason; never the response body)."""
    status = getattr(exc, "status", None)
    if status == 404:
        return CliError(f"{what}: not found")
    if status in (401, 403):
        return CliError(f"{what}: access denied (HTTP {status})")
    reason = getattr(exc, "reason", None) or type(exc).__name__
    return CliError(f"{what}: HTTP {status} {reason}" if status else f"{what}: {reason}")


def split_ref(text: str, default_namespace: str | None = None) -> tuple[str, str]:
    """``NAMESPACE/NAME`` → (namespace, name); a bare NAME takes ``default_namespace``."""
    namespace, sep, name = text.partition("/")
    if not sep:
        if default_namespace is None:
            raise CliError(f"{text!r}: give the HelmApp as NAMESPACE/NAME")
        return default_namespace, text
    if not namespace or not name or "/" in name:
        raise CliError(f"{text!r}: give the HelmApp as NAMESPACE/NAME")
    return namespace, name


def key_values(items: Sequence[str], what: str) -> dict[str, str]:
    """``k=v`` arguments → a dict (a later key wins)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"{what} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out
