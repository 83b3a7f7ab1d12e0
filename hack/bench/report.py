"""The pure parts of the benchmark harness: result documents, tables, metric and /proc parsing.

Kept free of I/O so the shape of what ``hack/bench/run`` writes is unit-tested without a cluster.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: Every result document has these keys, whatever the scenario.
REQUIRED_KEYS = ("scenario", "n", "cpus", "versions")
VERSION_KEYS = ("helm", "kube-apiserver", "python", "helmops")

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def document(
    scenario: str,
    n: int,
    cpus: int,
    versions: Mapping[str, str],
    figures: Mapping[str, Any],
    runs: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """One result document: the fixed keys first, then the scenario's figures (which may not override them),
    then ``runs`` (one entry per N) when a scenario ran several sizes."""
    missing = [k for k in VERSION_KEYS if k not in versions]
    if missing:
        raise ValueError(f"versions lacks {', '.join(missing)}")
    clash = [k for k in REQUIRED_KEYS if k in figures]
    if clash:
        raise ValueError(f"figures may not set {', '.join(clash)}")
    doc: dict[str, Any] = {"scenario": scenario, "n": n, "cpus": cpus, "versions": dict(versions)}
    doc.update(figures)
    if runs:
        doc["runs"] = [dict(r) for r in runs]
    return doc


def check_document(doc: Mapping[str, Any]) -> list[str]:
    """What is wrong with a result document (empty when it is well formed)."""
    problems = [f"missing key {k!r}" for k in REQUIRED_KEYS if k not in doc]
    versions = doc.get("versions")
    if isinstance(versions, Mapping):
        problems += [f"versions lacks {k!r}" for k in VERSION_KEYS if k not in versions]
    elif "versions" in doc:
        problems.append("versions is not an object")
    if "n" in doc and not isinstance(doc["n"], int):
        problems.append("n is not an integer")
    return problems


def write_json(path: Path, doc: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator`` rounded to 3 places; None when either side is missing or zero."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return round(numerator / denominator, 3)


def rate(count: int, seconds: float | None) -> float | None:
    if seconds is None or seconds <= 0:
        return None
    return round(count / seconds, 2)


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.3f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A plain left-aligned text table of ``columns`` over ``rows`` (missing cells print as ``-``)."""
    cells = [list(columns)] + [[fmt(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def parse_metrics(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Prometheus text exposition → ``{name: [(labels, value), ...]}`` (comments skipped)."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        out.setdefault(m.group(1), []).append((labels, value))
    return out


def metric_sum(metrics: Mapping[str, list[tuple[dict[str, str], float]]], name: str, **match: str) -> float:
    """The sum of a metric's samples whose labels include ``match``."""
    return sum(v for labels, v in metrics.get(name, []) if all(labels.get(k) == want for k, want in match.items()))


def cpu_seconds_from_stat(stat: str, clk_tck: int) -> tuple[float, float]:
    """``/proc/<pid>/stat`` → (own CPU seconds utime+stime, reaped children's cutime+cstime).

    The command name (field 2) may contain spaces and parentheses, so fields are counted after the last ``)``.
    """
    rest = stat[stat.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); utime/stime/cutime/cstime are fields 14..17.
    utime, stime, cutime, cstime = (int(x) for x in rest[11:15])
    return (utime + stime) / clk_tck, (cutime + cstime) / clk_tck


def status_kb(status: str, field: str) -> int | None:
    """A ``kB`` field (``VmHWM``, ``VmRSS``) from ``/proc/<pid>/status``."""
    for line in status.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def helm_calls(log_text: str) -> dict[str, int]:
    """Counts of helm sub-commands from the wrapper's log (one argv per line)."""
    counts: dict[str, int] = {}
    for line in log_text.splitlines():
        words = line.split()
        if words:
            counts[words[0]] = counts.get(words[0], 0) + 1
    return counts


def registry_counts(lines: Sequence[str], layer_digest: str | None = None) -> dict[str, int]:
    """Registry access-log lines (``"GET /v2/... 200"``) grouped: tag lists, manifests, blobs, chart layer."""
    counts = {"total": len(lines), "tags": 0, "manifests": 0, "blobs": 0, "chart_layer": 0}
    for line in lines:
        parts = line.split()
        if len(parts) < 2:
            continue
        path = parts[1]
        if "/tags/list" in path:
            counts["tags"] += 1
        elif "/manifests/" in path:
            counts["manifests"] += 1
        elif "/blobs/" in path:
            counts["blobs"] += 1
            if layer_digest and path.endswith(layer_digest) and parts[0] == "GET":
                counts["chart_layer"] += 1
    return counts


def repo_counts(lines: Sequence[str]) -> dict[str, int]:
    """HTTP chart repo log lines (``"GET /index.yaml 200"``): index fetches (and 304s) and archive downloads."""
    counts = {"total": len(lines), "index": 0, "index_not_modified": 0, "archives": 0}
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        if parts[1].split("?")[0].endswith("index.yaml"):
            counts["index"] += 1
            counts["index_not_modified"] += parts[2] == "304"
        elif parts[1].split("?")[0].endswith(".tgz") and parts[0] == "GET":
            counts["archives"] += 1
    return counts


def api_requests(metrics: Mapping[str, list[tuple[dict[str, str], float]]]) -> dict[str, int]:
    """kube-apiserver's ``apiserver_request_total`` as ``{"VERB resource[/subresource]": count}`` (WATCH
    and CONNECT left out: long-running, not work per release)."""
    out: dict[str, int] = {}
    for labels, value in metrics.get("apiserver_request_total", []):
        verb = labels.get("verb", "")
        if verb in ("WATCH", "CONNECT"):
            continue
        what = labels.get("resource", "") + (f"/{labels['subresource']}" if labels.get("subresource") else "")
        key = f"{verb} {what}"
        out[key] = out.get(key, 0) + int(value)
    return out


def count_delta(before: Mapping[str, int], after: Mapping[str, int]) -> dict[str, int]:
    """What grew between two counter snapshots (keys that did not grow are left out)."""
    return {k: v - before.get(k, 0) for k, v in sorted(after.items()) if v - before.get(k, 0) > 0}


def default_json_path(results_dir: Path, scenario: str) -> Path:
    return results_dir / f"{scenario}.json"
