"""What a scenario run is told: sizes, concurrency, where results go. Parsed by :mod:`bench.cli`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from support.tools import REPO_ROOT

RESULTS_DIR = REPO_ROOT / "hack" / "bench" / "results"

#: Sizes each scenario runs when ``--n`` is not given (fanout: clusters; the others: HelmApps).
DEFAULT_SIZES: dict[str, tuple[int, ...]] = {
    "throughput": (50, 200, 500),
    "steady": (500,),
    "fanout": (1, 3, 6),
    "poll": (100,),
    "curve": (25, 50, 100, 200),
    "vs-flux": (50, 200),
    "helm-cost": (20,),
    "drift": (500,),
    "api-cost": (200,),
}
SCENARIOS = tuple(DEFAULT_SIZES)


@dataclass(frozen=True)
class Options:
    scenario: str
    sizes: tuple[int, ...]
    json_path: Path
    results_dir: Path
    helm_concurrency: int = 4
    workers: int = 8
    resync_seconds: float = 45.0
    polling_interval: int = 15
    force: bool = False
    repeat: int = 1
    #: a git revision whose helmops/ the controller runs from (None: the working tree).
    src: str | None = None
    #: extra environment for every controller a scenario starts (e.g. HELMOPS_DRIFT_CHECK_PERIOD=0).
    controller_env: tuple[tuple[str, str], ...] = ()
    #: extra arguments for both Flux controllers (vs-flux), e.g. ``--kube-api-qps=500``.
    flux_args: tuple[str, ...] = ()
    #: run every controller under cProfile, one ``.prof`` per controller in this directory.
    profile_dir: Path | None = None
    #: vs-flux: which sides run (default all four: helmops, helm, flux_chart, flux_chartref).
    sides: tuple[str, ...] = ("helmops", "helm", "flux_chart", "flux_chartref")
    #: vs-flux: skip the steady-state pass (it waits a whole resync period per controller side).
    no_resync: bool = False

    @property
    def largest(self) -> int:
        return max(self.sizes)


def sizes_for(scenario: str, given: Sequence[int] | None) -> tuple[int, ...]:
    if given:
        return tuple(given)
    return DEFAULT_SIZES[scenario]
