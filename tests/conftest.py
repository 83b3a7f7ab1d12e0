"""Session fixtures: real control planes, helm, docker-registry and an HTTP chart repo.

Contract: docs/fixtures-contract.md. Every process started here is stopped at session end (and dies with
the pytest process if it is killed); ``test_zz_cleanup.py`` proves nothing outlives its fixture.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.chartrepo import ChartRepo
from support.charts import ChartFactory
from support.charts import helm_env as _helm_env
from support.controlplane import ControlPlane
from support.registry import Registry
from support.tools import Tools, ensure_all

#: pids of every server a fixture started, checked by the cleanup test.
STARTED_PIDS: list[int] = []


@pytest.fixture(scope="session")
def tools() -> Tools:
    t = ensure_all()
    # Anything that runs helm/kubectl as a subprocess (the controller under test, the CLI) uses these.
    os.environ.setdefault("HELMOPS_HELM", str(t.helm))
    os.environ.setdefault("HELMOPS_KUBECTL", str(t.kubectl))
    return t


@pytest.fixture(scope="session")
def session_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="helmops-tests-") as d:
        yield Path(d)


@pytest.fixture
def helm_env(tmp_path: Path) -> dict[str, str]:
    return _helm_env(tmp_path / "helm-home")


def _started(thing: ControlPlane | Registry | ChartRepo) -> None:
    STARTED_PIDS.extend(thing.pids)


@pytest.fixture(scope="session")
def management_cluster(tools: Tools) -> Iterator[ControlPlane]:
    cp = ControlPlane(tools, name="management").start()
    _started(cp)
    yield cp
    cp.stop()


@pytest.fixture(scope="session")
def downstream_cluster(tools: Tools) -> Iterator[ControlPlane]:
    cp = ControlPlane(tools, name="downstream").start()
    _started(cp)
    yield cp
    cp.stop()


@pytest.fixture(scope="session")
def oci_registry(tools: Tools) -> Iterator[Registry]:
    with Registry(tools) as r:
        _started(r)
        yield r


@pytest.fixture(scope="session")
def oci_registry_auth(tools: Tools) -> Iterator[Registry]:
    with Registry(tools, auth=True) as r:
        _started(r)
        yield r


@pytest.fixture(scope="session")
def oci_registry_tls(tools: Tools) -> Iterator[Registry]:
    with Registry(tools, tls=True) as r:
        _started(r)
        yield r


@pytest.fixture(scope="session")
def chart_repo(tools: Tools) -> Iterator[ChartRepo]:
    with ChartRepo(tools) as r:
        _started(r)
        yield r


@pytest.fixture(scope="session")
def chart_repo_auth(tools: Tools) -> Iterator[ChartRepo]:
    with ChartRepo(tools, auth=True) as r:
        _started(r)
        yield r


@pytest.fixture(scope="session")
def chart_repo_tls(tools: Tools) -> Iterator[ChartRepo]:
    with ChartRepo(tools, tls=True) as r:
        _started(r)
        yield r


@pytest.fixture(scope="session")
def charts(tools: Tools, session_dir: Path) -> ChartFactory:
    return ChartFactory(tools, session_dir / "charts")
