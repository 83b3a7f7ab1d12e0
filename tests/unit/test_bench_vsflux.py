"""The vs-flux and helm-cost scenarios' pure parts: arguments, Flux manifests and readiness, process trees,
the per-N summary. Nothing here starts a process (Flux is built and run only by ``hack/bench/run``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import cli, flux, procs, report, vsflux
from bench.options import DEFAULT_SIZES


def test_vs_flux_arguments(tmp_path: Path) -> None:
    [opts] = cli.options(["vs-flux"])
    assert opts.sizes == DEFAULT_SIZES["vs-flux"] == (50, 200)
    assert opts.helm_concurrency == 4 and opts.flux_args == ()
    [opts] = cli.options(
        [
            "vs-flux",
            "--n",
            "500",
            "--json",
            str(tmp_path / "f.json"),
            "--flux-arg=--kube-api-qps=500",
            "--flux-arg=--kube-api-burst=1000",
        ]
    )
    assert opts.sizes == (500,) and opts.json_path == tmp_path / "f.json"
    assert opts.flux_args == ("--kube-api-qps=500", "--kube-api-burst=1000")
    assert cli.runner("vs-flux")[1] is True  # needs the HTTP chart repo
    assert cli.runner("helm-cost")[1] is False


def test_resync_period_outlasts_an_install() -> None:
    [opts] = cli.options(["vs-flux"])
    assert vsflux.resync_seconds(opts, 50) == 45.0
    assert vsflux.resync_seconds(opts, 200) == 80.0


def test_release_manifests_for_both_modes() -> None:
    per_release = flux.helm_releases("ns", 2, "rel", "chart", "hello", "1.0.0", "60s")
    assert [d["metadata"]["name"] for d in per_release] == ["app-0000", "app-0001"]
    spec = per_release[0]["spec"]
    assert spec["chart"]["spec"]["sourceRef"] == {"kind": "HelmRepository", "name": "bench"}
    assert spec["install"] == spec["upgrade"] == {"disableWait": True, "disableWaitForJobs": True}
    assert spec["targetNamespace"] == spec["storageNamespace"] == "rel" and spec["releaseName"] == "app-0000"
    shared = flux.helm_releases("ns", 1, "rel", "chartref", "hello", "1.0.0", "60s")[0]["spec"]
    assert "chart" not in shared and shared["chartRef"] == {"kind": "HelmChart", "name": "hello", "namespace": "ns"}
    assert flux.helm_chart("ns", "hello", "1.0.0", "60s")["spec"]["sourceRef"]["name"] == "bench"
    with pytest.raises(ValueError):
        flux.helm_releases("ns", 1, "rel", "oci", "hello", "1.0.0", "60s")


def test_release_ready_needs_current_generation_and_a_deployed_history() -> None:
    ok = {
        "metadata": {"generation": 2},
        "status": {
            "observedGeneration": 2,
            "conditions": [{"type": "Ready", "status": "True"}],
            "history": [{"status": "deployed"}],
        },
    }
    assert flux.release_ready(ok)
    assert not flux.release_ready({**ok, "metadata": {"generation": 3}})
    assert not flux.release_ready({**ok, "status": {**ok["status"], "history": [{"status": "failed"}]}})
    assert not flux.release_ready({**ok, "status": {**ok["status"], "conditions": []}})
    assert not flux.release_ready({"metadata": {}})


def test_reconcile_count_from_controller_runtime_metrics() -> None:
    text = "\n".join(
        [
            'controller_runtime_reconcile_total{controller="helmrelease",result="success"} 7',
            'controller_runtime_reconcile_total{controller="helmrelease",result="requeue"} 2',
            'controller_runtime_reconcile_total{controller="helmchart",result="success"} 50',
        ]
    )
    assert flux.reconcile_count(report.parse_metrics(text), "helmrelease") == 9


def test_process_tree_and_stat_parsing() -> None:
    assert procs.ppid_from_stat("42 (helm (x) y) S 7 42 42 0 -1") == 7
    table = {1: 0, 10: 1, 11: 10, 12: 11, 20: 1, 21: 20}
    assert procs.descendants([10], table) == {10, 11, 12}
    assert procs.descendants([10, 20], table) == {10, 11, 12, 20, 21}
    assert procs.descendants([99], table) == set()  # gone already
    assert procs.summary([]) == {"max": None, "mean": None}
    assert procs.summary([1.0, 3.0]) == {"max": 3.0, "mean": 2.0}


def test_summary_takes_medians_and_ratios_per_n() -> None:
    rows = [
        {"side": "helmops", "seconds": 10.0, "cpu_ms_per_release": 200.0},
        {"side": "helmops", "seconds": 12.0, "cpu_ms_per_release": 220.0},
        {"side": "helmops", "seconds": 30.0, "cpu_ms_per_release": 240.0},
        {"side": "helm", "seconds": 8.0},
        {"side": "flux_chart", "seconds": 16.0},
        {"side": "flux_chartref", "seconds": None, "error": "timeout"},
    ]
    out = vsflux.summarize(50, rows)
    assert out["n"] == 50 and out["helmops_seconds"] == 12.0 and out["helmops_cpu_ms_per_release"] == 220.0
    assert out["helmops_vs_helm"] == 1.5 and out["helmops_vs_flux_chart"] == 0.75
    assert out["flux_chartref_seconds"] is None and out["helmops_vs_flux_chartref"] is None
    for key in ("helmops_seconds", "helm_seconds", "flux_chart_seconds", "flux_chartref_seconds"):
        assert key in out


def test_api_requests_from_apiserver_metrics() -> None:
    text = "\n".join(
        [
            'apiserver_request_total{code="200",resource="secrets",verb="GET"} 5',
            'apiserver_request_total{code="404",resource="secrets",verb="GET"} 1',
            'apiserver_request_total{code="200",resource="helmapps",subresource="status",verb="PATCH"} 2',
            'apiserver_request_total{code="200",resource="secrets",verb="WATCH"} 9',
        ]
    )
    counts = report.api_requests(report.parse_metrics(text))
    assert counts == {"GET secrets": 6, "PATCH helmapps/status": 2}
    assert report.count_delta({"GET secrets": 4}, counts) == {"GET secrets": 2, "PATCH helmapps/status": 2}
    figures = vsflux.api_figures({}, {**counts, "LIST helmapps": 40}, 2)  # the harness' own polling is left out
    assert figures["api_requests_per_release"] == 4.0
    assert figures["api_requests_top"] == {"GET secrets": 3.0, "PATCH helmapps/status": 1.0}
