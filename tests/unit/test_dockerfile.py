"""The Dockerfile, checked by parsing it (no container engine runs here; CI builds the image).

Every base image is pinned to a full version (never ``latest``), helm is the version the tests use and its
tarball is verified with ``sha256sum -c`` against a pinned checksum, the image runs as a non-root user, and
``helmops run`` is the default command. ``.dockerignore`` keeps the build context to what the build copies.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass

import pytest

from support.tools import HELM_VERSION, REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    value: str


def parse(text: str) -> list[Instruction]:
    """Instructions with ``\\`` continuations joined and comments dropped (the subset of syntax we use)."""
    out: list[Instruction] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1].rstrip() + " "
            continue
        buf += line
        keyword, _, value = buf.partition(" ")
        out.append(Instruction(keyword.upper(), value.strip()))
        buf = ""
    assert not buf, "dangling line continuation"
    return out


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse(DOCKERFILE.read_text())


def _args(instructions: list[Instruction]) -> dict[str, str]:
    args: dict[str, str] = {}
    for i in instructions:
        if i.keyword == "ARG" and "=" in i.value:
            k, _, v = i.value.partition("=")
            args.setdefault(k, v)
    return args


def test_parser_joins_continuations() -> None:
    got = parse("# c\nFROM a:1 AS x\nRUN one \\\n  # inner\n  two\n")
    assert got == [Instruction("FROM", "a:1 AS x"), Instruction("RUN", "one two")]


def test_multi_stage_with_every_base_pinned(instructions: list[Instruction]) -> None:
    froms = [i.value.split() for i in instructions if i.keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage build expected"
    stages: set[str] = set()
    for parts in froms:
        image = parts[0]
        if image.lower() in stages:
            continue
        assert "$" not in image, f"base image {image} comes from a build argument; pin it in the FROM line"
        name, _, tag = image.partition("@")[0].rpartition(":")
        assert name and tag, f"{image} has no tag"
        assert tag != "latest" and "latest" not in image, image
        assert re.match(r"^\d+\.\d+\.\d+", tag), f"{image}: tag must pin a full version (e.g. 3.11.11-slim-bookworm)"
        if len(parts) == 3 and parts[1].upper() == "AS":
            stages.add(parts[2].lower())


def test_python_base_matches_project(instructions: list[Instruction]) -> None:
    bases = {i.value.split()[0] for i in instructions if i.keyword == "FROM" and i.value.startswith("python:")}
    assert bases == {"python:3.11.11-slim-bookworm"}, "one Python base image for build and runtime (venv is copied)"


def test_runs_as_non_root(instructions: list[Instruction]) -> None:
    final_stage = instructions[max(n for n, i in enumerate(instructions) if i.keyword == "FROM") :]
    users = [i.value for i in final_stage if i.keyword == "USER"]
    assert users, "the runtime stage must set USER"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, f"USER {users[-1]}: numeric and non-root (runAsNonRoot needs a number)"
    assert user == "65532"


def test_entrypoint_and_cmd(instructions: list[Instruction]) -> None:
    entry = [json.loads(i.value) for i in instructions if i.keyword == "ENTRYPOINT"]
    cmd = [json.loads(i.value) for i in instructions if i.keyword == "CMD"]
    assert entry[-1] == ["helmops"]
    assert cmd[-1] == ["run"]


def test_helm_is_the_tested_version_and_checksum_verified(instructions: list[Instruction]) -> None:
    args = _args(instructions)
    assert args["HELM_VERSION"] == HELM_VERSION == "v3.17.2"
    sums = {k: v for k, v in args.items() if k.startswith("HELM_SHA256_")}
    assert "HELM_SHA256_AMD64" in sums
    for k, v in sums.items():
        assert re.fullmatch(r"[0-9a-f]{64}", v), f"{k} is not a sha256"
    helm_runs = [i.value for i in instructions if i.keyword == "RUN" and "get.helm.sh" in i.value]
    assert len(helm_runs) == 1
    run = helm_runs[0]
    assert "https://get.helm.sh/" in run and "${HELM_VERSION}" in run
    assert "sha256sum -c" in run
    # the download, the check and the extraction happen in this order, under `set -e`
    assert "set -eu" in run
    assert run.index("get.helm.sh") < run.index("sha256sum -c") < run.index("tar -xzf")
    for k in sums:
        assert "${" + k + "}" in run
    assert any(i.keyword == "COPY" and "--from=helm" in i.value and "/usr/local/bin/helm" in i.value
               for i in instructions)


def test_installs_the_helmops_wheel(instructions: list[Instruction]) -> None:
    runs = " ".join(i.value for i in instructions if i.keyword == "RUN")
    assert "pip wheel" in runs and ".whl" in runs
    assert "-e " not in runs and "--editable" not in runs


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    ignored = False
    for pat in patterns:
        negate = pat.startswith("!")
        p = pat[1:] if negate else pat
        p = p.rstrip("/")
        candidates = [path] + ["/".join(path.split("/")[:n]) for n in range(1, path.count("/") + 1)]
        if any(fnmatch.fnmatch(c, p) or fnmatch.fnmatch(c, p.replace("**/", "")) for c in candidates):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_what_the_build_copies(instructions: list[Instruction]) -> None:
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    copied: list[str] = []
    for i in instructions:
        if i.keyword == "COPY" and "--from=" not in i.value:
            copied += shlex.split(i.value)[:-1]
    assert copied
    for src in copied:
        assert (REPO_ROOT / src).exists(), f"COPY {src}: not in the repository"
        assert not _ignored(src, patterns), f"COPY {src} is excluded by .dockerignore"
    assert not _ignored("helmops/cli/main.py", patterns)
    for junk in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "helmops/__pycache__/x.pyc",
                 "charts/helmops/Chart.yaml"):
        assert _ignored(junk, patterns), f"{junk} should not be in the build context"


def test_exposes_health_and_metrics_ports(instructions: list[Instruction]) -> None:
    exposed = " ".join(i.value for i in instructions if i.keyword == "EXPOSE").split()
    assert {"8080", "8081"} <= set(exposed)
