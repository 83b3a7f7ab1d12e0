"""The benchmark harness' pure parts: argument parsing, result documents, metric and /proc parsing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bench import cli, report
from bench.options import DEFAULT_SIZES, RESULTS_DIR, SCENARIOS
from bench.stack import multi_doc, oci_helmapps

VERSIONS = {"helm": "v3.17.2", "kube-apiserver": "v1.32.13", "python": "3.11.7", "helmops": "0.1.0"}


# --- arguments -------------------------------------------------------------------------------------------
def test_scenario_names_are_the_documented_ones() -> None:
    assert SCENARIOS == ("throughput", "steady", "fanout", "poll", "curve", "vs-flux", "helm-cost", "drift", "api-cost")


def test_one_scenario_defaults() -> None:
    [opts] = cli.options(["throughput"])
    assert opts.scenario == "throughput"
    assert opts.sizes == (50, 200, 500)
    assert opts.largest == 500
    assert opts.json_path == RESULTS_DIR / "throughput.json"
    assert opts.helm_concurrency == 4
    assert opts.workers == 8  # twice the helm concurrency unless given


def test_n_picks_sizes_and_json_names_the_file(tmp_path: Path) -> None:
    [opts] = cli.options(["curve", "--n", "25,50", "--json", str(tmp_path / "c.json"), "--helm-concurrency", "2"])
    assert opts.sizes == (25, 50)
    assert opts.json_path == tmp_path / "c.json"
    assert opts.workers == 4
    [steady] = cli.options(["steady", "--n", "300", "--workers", "3", "--resync-seconds", "20"])
    assert (steady.sizes, steady.workers, steady.resync_seconds) == ((300,), 3, 20.0)


def test_all_runs_every_scenario_into_the_results_dir(tmp_path: Path) -> None:
    all_opts = cli.options(["all", "--results-dir", str(tmp_path)])
    assert [o.scenario for o in all_opts] == list(SCENARIOS)
    assert [o.json_path for o in all_opts] == [tmp_path / f"{s}.json" for s in SCENARIOS]
    assert [o.sizes for o in all_opts] == [DEFAULT_SIZES[s] for s in SCENARIOS]


@pytest.mark.parametrize(
    "argv",
    [
        ["nosuch"],
        ["throughput", "--n", "0"],
        ["throughput", "--n", "ten"],
        ["all", "--json", "x.json"],
        ["poll", "--helm-concurrency", "0"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.options(argv)
    assert exc.value.code == 2
    assert "usage: hack/bench/run" in capsys.readouterr().err


# --- result documents -------------------------------------------------------------------------------------
def test_document_has_the_fixed_keys_first_and_round_trips(tmp_path: Path) -> None:
    figures = {"helmops_seconds": 11.5, "helm_seconds": 10.0, "ratio_vs_helm": report.ratio(11.5, 10.0)}
    runs = [{"n": 50, **figures}, {"n": 200, **figures}]
    doc = report.document("throughput", 200, 2, VERSIONS, figures, runs)
    assert list(doc)[:4] == ["scenario", "n", "cpus", "versions"]
    assert doc["ratio_vs_helm"] == 1.15
    assert [r["n"] for r in doc["runs"]] == [50, 200]
    path = tmp_path / "sub" / "throughput.json"
    report.write_json(path, doc)
    loaded = json.loads(path.read_text())
    assert loaded == doc
    assert report.check_document(loaded) == []


def test_skipped_document_is_well_formed() -> None:
    doc = report.document("poll", 100, 2, VERSIONS, {"skipped": "no polling yet"})
    assert doc["skipped"] == "no polling yet"
    assert report.check_document(doc) == []
    assert "runs" not in doc


def test_document_refuses_incomplete_versions_and_clashing_figures() -> None:
    with pytest.raises(ValueError, match="helmops"):
        report.document("steady", 500, 2, {k: v for k, v in VERSIONS.items() if k != "helmops"}, {})
    with pytest.raises(ValueError, match="n"):
        report.document("steady", 500, 2, VERSIONS, {"n": 3})


def test_check_document_names_what_is_missing() -> None:
    assert report.check_document({"scenario": "x", "n": "5", "versions": {"helm": "v3"}}) == [
        "missing key 'cpus'",
        "versions lacks 'kube-apiserver'",
        "versions lacks 'python'",
        "versions lacks 'helmops'",
        "n is not an integer",
    ]


def test_ratio_and_rate_handle_missing_figures() -> None:
    assert report.ratio(None, 3.0) is None
    assert report.ratio(3.0, 0) is None
    assert report.ratio(3.0, 2.0) == 1.5
    assert report.rate(100, 8.0) == 12.5
    assert report.rate(100, None) is None


def test_table_aligns_and_dashes_missing_cells() -> None:
    text = report.table([{"n": 50, "s": 1.23456}, {"n": 500, "s": None}], ["n", "s"])
    assert text.splitlines() == ["n    s", "---  -----", "50   1.235", "500  -"]


# --- parsing ------------------------------------------------------------------------------------------------
def test_parse_metrics_and_sum_by_labels() -> None:
    text = """# HELP helmops_reconcile_total HelmApp reconciles by result
# TYPE helmops_reconcile_total counter
helmops_reconcile_total{result="ok"} 498.0
helmops_reconcile_total{result="retry"} 2.0
helmops_helm_actions_total{action="install",result="success"} 500.0
helmops_queue_depth 0.0
"""
    m = report.parse_metrics(text)
    assert report.metric_sum(m, "helmops_reconcile_total") == 500
    assert report.metric_sum(m, "helmops_reconcile_total", result="ok") == 498
    assert report.metric_sum(m, "helmops_helm_actions_total", action="install") == 500
    assert m["helmops_queue_depth"] == [({}, 0.0)]
    assert report.metric_sum(m, "absent") == 0


def test_cpu_seconds_from_stat_survives_odd_command_names() -> None:
    # fields 14-17: utime stime cutime cstime (in clock ticks)
    fields = ["S", "1", "2", "3", "0", "-1", "4194560", "10", "0", "0", "0", "250", "50", "900", "100"]
    stat = "4242 (python (x) y) " + " ".join(fields) + " 20 0 5 0"
    assert report.cpu_seconds_from_stat(stat, 100) == (3.0, 10.0)


def test_status_kb() -> None:
    status = "Name:\tpython\nVmHWM:\t  123456 kB\nVmRSS:\t  100000 kB\n"
    assert report.status_kb(status, "VmHWM") == 123456
    assert report.status_kb(status, "VmSwap") is None


def test_helm_calls_and_registry_counts() -> None:
    assert report.helm_calls("version --short\nupgrade app-1 /c.tgz\n\nupgrade app-2 /c.tgz\n") == {
        "version": 1,
        "upgrade": 2,
    }
    lines = [
        "GET /v2/charts/hello/tags/list 200",
        "HEAD /v2/charts/hello/manifests/1.0.0 200",
        "GET /v2/charts/hello/manifests/sha256:aa 200",
        "GET /v2/charts/hello/blobs/sha256:layer 200",
        "GET /v2/charts/hello/blobs/sha256:config 200",
    ]
    assert report.registry_counts(lines, "sha256:layer") == {
        "total": 5,
        "tags": 1,
        "manifests": 2,
        "blobs": 2,
        "chart_layer": 1,
    }
    assert report.repo_counts(["GET /index.yaml 200", "GET /index.yaml 304", "GET /hello-1.0.0.tgz 200"]) == {
        "total": 3,
        "index": 2,
        "index_not_modified": 1,
        "archives": 1,
    }


# --- manifests and the helm wrapper --------------------------------------------------------------------------
def test_helmapps_are_one_multi_doc_file() -> None:
    docs = oci_helmapps("bench", 3, "oci://127.0.0.1:5000/charts/hello", "^1.0.0", "bench-rel",
                        polling_interval="15s")
    loaded = list(yaml.safe_load_all(multi_doc(docs)))
    assert [d["metadata"]["name"] for d in loaded] == ["app-0000", "app-0001", "app-0002"]
    spec = loaded[0]["spec"]
    assert spec["helm"]["repo"] == "oci://127.0.0.1:5000/charts/hello"
    assert spec["helm"]["releaseName"] == "app-0000"
    assert spec["defaultNamespace"] == "bench-rel"
    assert spec["pollingInterval"] == "15s"
    assert spec["helmSecretName"] == "bench-registry"


# --- feature probes for fanout and poll -------------------------------------------------------------------
def test_fanout_and_poll_skip_until_the_controller_has_the_feature(tmp_path: Path) -> None:
    from bench import fanout, poll

    (tmp_path / "reconciler.py").write_text("async def reconcile(): ...\n")
    assert "local cluster only" in (fanout.unsupported(tmp_path) or "")
    assert "pollingInterval" in (poll.unsupported(tmp_path) or "")
    (tmp_path / "targets.py").write_text(
        "from helmops.clusters import targeting\nsecret = cluster.spec.kube_config_secret\n"
        "interval = spec.polling_interval\n"
    )
    assert fanout.unsupported(tmp_path) is None
    assert poll.unsupported(tmp_path) is None


def test_repeated_throughput_runs_fold_into_medians() -> None:
    from bench.throughput import median_run

    samples = [
        {"n": 50, "helm_seconds": 10.0, "helmops_seconds": 12.0, "peak_rss_mb": 1},
        {"n": 50, "helm_seconds": 8.0, "helmops_seconds": 20.0, "peak_rss_mb": 2},
        {"n": 50, "helm_seconds": 9.0, "helmops_seconds": 10.0, "peak_rss_mb": 3},
    ]
    row = median_run(samples)
    assert (row["helm_seconds"], row["helmops_seconds"], row["ratio_vs_helm"]) == (9.0, 12.0, 1.333)
    assert row["peak_rss_mb"] == 1  # from the repetition with the median helmops time
    assert row["repeats"] == 3 and len(row["samples"]) == 3
    assert median_run(samples[:1]) is samples[0]
    [opts] = cli.options(["throughput", "--repeat", "3"])
    assert opts.repeat == 3


def test_controller_env_is_parsed_and_checked(capsys: pytest.CaptureFixture[str]) -> None:
    [opts] = cli.options(["steady", "--controller-env", "HELMOPS_DRIFT_CHECK_PERIOD=0", "--controller-env", "A=b=c"])
    assert dict(opts.controller_env) == {"HELMOPS_DRIFT_CHECK_PERIOD": "0", "A": "b=c"}
    with pytest.raises(SystemExit):
        cli.options(["steady", "--controller-env", "novalue"])
    assert "KEY=VALUE" in capsys.readouterr().err


def test_reconciles_are_counted_from_the_log_incrementally(tmp_path: Path) -> None:
    from bench.stack import Controller

    ctl = Controller(tmp_path / "kubeconfig", tmp_path / "helm", tmp_path, ["ns"], name="c")
    line = "2026-01-01 00:00:00,000 INFO helmops.controller: reconcile ns/app-{i}: release ns/app-{i} ... -> none\n"
    ctl.log.write_text("".join(line.format(i=i) for i in range(3)) + "2026 INFO helmops.helm: helm: upgrade\n")
    assert ctl.reconcile_lines() == 3
    with open(ctl.log, "a") as f:
        f.write(line.format(i=3) + "2026 INFO helmops.controller: reconcile ns/app-4: rel")  # line not finished
    assert ctl.reconcile_lines() == 4
    with open(ctl.log, "a") as f:
        f.write("ease ns/app-4\n")
    assert ctl.reconcile_lines() == 5
