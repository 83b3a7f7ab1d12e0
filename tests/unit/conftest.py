"""Unit tests start no processes: no helm, no kubectl, no registry, not even ``sys.executable``.

While a unit test is being set up, run or torn down, every way Python has to start a process raises
:class:`ProcessForbidden` naming the program. The attempt is also recorded, so a test whose code
swallows the error (``except Exception``) still fails. A test that needs a real binary belongs in
``tests/integration``; a test that only crosses a process boundary by accident fakes it instead.

The guard is a set of hook wrappers in this conftest, so pytest calls them only for tests in
``tests/unit``: integration tests collected into the same session (``make test``) are not affected.
"""

from __future__ import annotations

import _posixsubprocess
import asyncio
import asyncio.subprocess
import os
import subprocess
import traceback
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

_UNIT_DIR = Path(__file__).resolve().parent
#: os functions that replace or start a program, first argument the program.
_EXEC = ("posix_spawn", "posix_spawnp", "execv", "execve", "execvp", "execvpe", "execl", "execle", "execlp", "execlpe")


class ProcessForbidden(RuntimeError):
    """A unit test tried to start a process."""


def _program(args: Any) -> str:
    """The program a spawn call names, as the user wrote it."""
    if isinstance(args, (str, bytes, os.PathLike)):
        return os.fsdecode(args)
    try:
        parts = [os.fsdecode(a) for a in args]
    except TypeError:
        return repr(args)
    return " ".join(parts)


def _describe(how: str, program: str) -> str:
    return (
        f"unit tests must not start processes, but this one called {how} for {program!r}; "
        "move it to tests/integration or fake the boundary"
    )


@contextmanager
def _guard() -> Iterator[list[str]]:
    """Forbid starting processes inside the block; yield the list of attempts made."""
    attempts: list[str] = []

    def refuse(how: str, program: str) -> ProcessForbidden:
        message = _describe(how, program)
        caller = [f for f in traceback.extract_stack() if f.filename != __file__][-6:]
        attempts.append(message + "\n" + "".join(traceback.format_list(caller)))
        return ProcessForbidden(message)

    def popen_init(self: subprocess.Popen[Any], args: Any, *a: Any, **kw: Any) -> None:
        program = _program(kw.get("executable") or args)
        raise refuse("subprocess.Popen" + (" (shell)" if kw.get("shell") else ""), program)

    async def create_exec(program: Any, *args: Any, **kw: Any) -> Any:
        raise refuse("asyncio.create_subprocess_exec", _program([program, *args]))

    async def create_shell(cmd: Any, **kw: Any) -> Any:
        raise refuse("asyncio.create_subprocess_shell", _program(cmd))

    def first_arg(how: str) -> Callable[..., Any]:
        def refused(*args: Any, **kw: Any) -> Any:
            raise refuse(how, _program(args[0]) if args else "")

        return refused

    def no_arg(how: str) -> Callable[..., Any]:
        def refused(*args: Any, **kw: Any) -> Any:
            raise refuse(how, "a copy of this process")

        return refused

    replacements: list[tuple[Any, str, Any]] = [
        (subprocess.Popen, "__init__", popen_init),
        (asyncio, "create_subprocess_exec", create_exec),
        (asyncio, "create_subprocess_shell", create_shell),
        (asyncio.subprocess, "create_subprocess_exec", create_exec),
        (asyncio.subprocess, "create_subprocess_shell", create_shell),
        (_posixsubprocess, "fork_exec", first_arg("_posixsubprocess.fork_exec")),
        (os, "system", first_arg("os.system")),
        (os, "fork", no_arg("os.fork")),
        (os, "forkpty", no_arg("os.forkpty")),
    ]
    for name in _EXEC:
        replacements.append((os, name, first_arg(f"os.{name}")))
    # os.spawn* take the mode first: name the program, not the mode.
    for name in ("spawnv", "spawnve", "spawnvp", "spawnvpe", "spawnl", "spawnle", "spawnlp", "spawnlpe"):

        def spawn(*args: Any, _how: str = f"os.{name}", **kw: Any) -> Any:
            raise refuse(_how, _program(args[1]) if len(args) > 1 else "")

        replacements.append((os, name, spawn))

    saved: list[tuple[Any, str, Any]] = []
    try:
        for owner, name, replacement in replacements:
            if hasattr(owner, name):
                saved.append((owner, name, owner.__dict__[name]))
                setattr(owner, name, replacement)
        yield attempts
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


def _all_unit(session: pytest.Session) -> bool:
    return all(Path(item.path).resolve().is_relative_to(_UNIT_DIR) for item in session.items)


@contextmanager
def _phase() -> Iterator[None]:
    with _guard() as attempts:
        try:
            yield
        except ProcessForbidden:
            raise  # the test failed at the spawn itself: its traceback says where
        except BaseException:
            if attempts:  # the code under test caught the refusal and failed differently
                pytest.fail("\n".join(attempts), pytrace=False)
            raise
        if attempts:  # the code under test caught the refusal and the test passed anyway
            pytest.fail("\n".join(attempts), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    # Importing a test module (and computing its parameters) is covered too.
    with _guard() as attempts:
        report = yield
    if attempts and report.passed:
        report.outcome = "failed"
        report.longrepr = "\n".join(attempts)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    with _phase():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    with _phase():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    # After the last test pytest tears down every session fixture; in a mixed session (``make test``)
    # those include the integration suite's servers, whose shutdown is theirs to do.
    if nextitem is None and not _all_unit(item.session):
        return (yield)
    with _phase():
        return (yield)
