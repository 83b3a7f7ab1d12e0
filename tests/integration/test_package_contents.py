"""The shipped package is the product: the wheel carries helmops and nothing the tests, benchmarks or demo run on.

The wheel is built for real (``pip wheel``, offline: the build backend comes from the test dependencies) twice:
from the checkout, and from exactly the files the Dockerfile copies into its build stage, since the image
installs that wheel. Each build runs in a fresh copy, so no stale ``build/`` directory can hide or add files.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from support.tools import REPO_ROOT

pytestmark = pytest.mark.integration

#: what a build must never see: caches, virtualenvs, earlier build output, benchmark results
_NOT_SOURCE = {".git", ".venv", "build", "dist", "__pycache__", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tmp"}
#: path parts and file names of the test fixtures (tests/support), benchmarks (hack/bench) and the demo
_FORBIDDEN_PARTS = {"testing", "bench", "support", "tests", "hack"}
_FORBIDDEN_NAMES = {"demo.py", "conftest.py"}


def _ignore(directory: str, names: list[str]) -> set[str]:
    skip = {n for n in names if n in _NOT_SOURCE or n.endswith((".egg-info", ".pyc"))}
    if Path(directory).resolve() == REPO_ROOT / "hack" / "bench":
        skip.add("results")
    return skip


def _copy(rel: str, dest: Path) -> None:
    src = REPO_ROOT / rel
    if src.is_dir():
        shutil.copytree(src, dest / rel, ignore=_ignore)
    else:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)


def _dockerfile_sources() -> list[str]:
    """The repository paths the Dockerfile's ``COPY`` instructions take from the build context.

    Each lands at the same relative path under the build stage's WORKDIR, where ``pip wheel .`` runs.
    """
    text = (REPO_ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    sources: list[str] = []
    for line in text.splitlines():
        if not line.startswith("COPY "):
            continue
        words = shlex.split(line, comments=True)
        if not any(w.startswith("--from=") for w in words):
            sources += [w.rstrip("/") for w in words[1:-1]]
    return sources


def _build_wheel(src: Path, out: Path) -> list[str]:
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q"]
    done = subprocess.run([*pip, "--wheel-dir", str(out), str(src)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    wheels = sorted(out.glob("helmops-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as whl:
        return whl.namelist()


@pytest.mark.parametrize("source", ["checkout", "image"])
def test_wheel_carries_only_the_helmops_package(source: str, tmp_path: Path) -> None:
    src = tmp_path / "src"
    if source == "checkout":
        shutil.copytree(REPO_ROOT, src, ignore=_ignore)
    else:
        sources = _dockerfile_sources()
        assert "helmops" in sources, sources
        for rel in sources:
            _copy(rel, src)

    names = _build_wheel(src, tmp_path / "dist")

    # the product is there: the package, its CLI entry point, its type marker
    for required in ("helmops/__init__.py", "helmops/cli/main.py", "helmops/py.typed"):
        assert required in names, f"{required} is missing from the wheel"
    # and nothing else: one top-level package, its metadata, no test fixtures, benchmarks or demo
    tops = {PurePosixPath(n).parts[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"helmops"}
    leaked = [
        n for n in names if set(PurePosixPath(n).parts) & _FORBIDDEN_PARTS or PurePosixPath(n).name in _FORBIDDEN_NAMES
    ]
    assert leaked == [], f"the wheel carries code that is not the product: {leaked}"
