"""The plan an approval approves: per cluster, what one mutating action would change, and a stable hash.

Pure. A cluster's plan names the action, the chart and its version from → to, the value *keys* added,
changed and removed (never a value: a key path segment that is itself a Secret-derived string is masked
too), the manifest objects added, changed and removed, and the desired release fingerprint — so any change
of chart, version, values (even one the key list cannot show, such as a Secret's value) or targets gives a
new hash. The HelmApp's plan is the set of its clusters' plans; its hash is what ``helmops approve`` names.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from helmops.reconcile.manifest import manifest_objects, object_ref

MASK = "***"
#: caps of what one plan lists (tenant-driven): the rest is counted, not listed.
MAX_KEYS = 50
MAX_OBJECTS = 50
#: the most clusters one stored plan keeps (older, already-applied entries are dropped first).
MAX_CLUSTERS = 100
#: the longest plan annotation written (bytes).
MAX_PLAN_BYTES = 64 * 1024
HASH_LEN = 16


def _leaves(value: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    if isinstance(value, Mapping) and (value or not prefix):
        for key, item in value.items():
            yield from _leaves(item, (*prefix, str(key)))
    else:
        yield prefix, value


def _dotted(path: Sequence[str], secrets: Sequence[str]) -> str:
    return ".".join(MASK if any(s and s in part for s in secrets) else part for part in path)


def _capped(items: Iterable[str], cap: int) -> list[str]:
    out = sorted(set(items))
    return out[:cap] + ([f"... and {len(out) - cap} more"] if len(out) > cap else [])


def values_changes(
    deployed: Mapping[str, Any] | None, desired: Mapping[str, Any], secrets: Sequence[str] = ()
) -> dict[str, list[str]]:
    """Key paths added, changed and removed between the deployed and the desired values; no values."""
    old = dict(_leaves(deployed or {}))
    new = dict(_leaves(desired))
    old.pop((), None)
    new.pop((), None)
    return {
        "added": _capped((_dotted(p, secrets) for p in new.keys() - old.keys()), MAX_KEYS),
        "changed": _capped((_dotted(p, secrets) for p in new.keys() & old.keys() if new[p] != old[p]), MAX_KEYS),
        "removed": _capped((_dotted(p, secrets) for p in old.keys() - new.keys()), MAX_KEYS),
    }


def _objects(manifest: str, namespace: str) -> dict[str, str]:
    """display name → canonical JSON of the object."""
    out = {}
    for obj in manifest_objects(manifest):
        out[object_ref(obj, namespace).display()] = json.dumps(obj, sort_keys=True, default=str)
    return out


def manifest_changes(deployed: str | None, desired: str | None, namespace: str) -> dict[str, list[str]] | None:
    """Objects added, changed and removed; None when the desired manifest could not be rendered."""
    if desired is None:
        return None
    old, new = _objects(deployed or "", namespace), _objects(desired, namespace)
    return {
        "added": _capped(new.keys() - old.keys(), MAX_OBJECTS),
        "changed": _capped((k for k in new.keys() & old.keys() if new[k] != old[k]), MAX_OBJECTS),
        "removed": _capped(old.keys() - new.keys(), MAX_OBJECTS),
    }


def digest(value: Any) -> str:
    """The stable hash of a JSON-able value."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LEN]


def cluster_plan(
    *,
    cluster: str,
    release: str,
    action: str,
    chart: str,
    version_from: str | None,
    version_to: str | None,
    fingerprint: str,
    values: Mapping[str, list[str]] | None,
    objects: Mapping[str, list[str]] | None,
) -> dict[str, Any]:
    """One cluster's plan as stored and shown, with its own ``hash``."""
    entry: dict[str, Any] = {
        "cluster": cluster,
        "release": release,
        "action": action,
        "chart": chart,
        "from": version_from or "",
        "to": version_to or "",
        "fingerprint": fingerprint,
        "values": dict(values) if values is not None else None,
        "objects": dict(objects) if objects is not None else None,
    }
    entry["hash"] = digest(entry)
    return entry


def plan_hash(clusters: Mapping[str, Mapping[str, Any]]) -> str:
    """The HelmApp's plan hash: over its clusters' plan hashes."""
    return digest(sorted((name, str(entry.get("hash", ""))) for name, entry in clusters.items()))


def summary(entry: Mapping[str, Any]) -> str:
    """One line for one cluster's plan."""
    parts = [f"{entry.get('action')} {entry.get('chart')} {entry.get('from') or '-'} -> {entry.get('to') or '-'}"]
    values = entry.get("values") or {}
    n = sum(len(values.get(k) or ()) for k in ("added", "changed", "removed"))
    if n:
        parts.append(f"{n} value key(s) changed")
    objects = entry.get("objects")
    if objects is None:
        parts.append("manifest not rendered")
    else:
        counts = [f"{len(objects.get(k) or ())} {k}" for k in ("added", "changed", "removed") if objects.get(k)]
        if counts:
            parts.append("objects " + ", ".join(counts))
    return ", ".join(parts)


def plan_summary(plan: Mapping[str, Any]) -> str:
    clusters = plan.get("clusters") or {}
    pending = {k: v for k, v in clusters.items() if not v.get("applied")}
    if not pending:
        return "nothing pending"
    if len(pending) == 1:
        name, entry = next(iter(pending.items()))
        return f"{name}: {summary(entry)}"
    return f"{len(pending)} clusters; " + "; ".join(f"{k}: {summary(v)}" for k, v in sorted(pending.items())[:3])


def load(text: str | None) -> dict[str, Any]:
    """The stored plan (``helmops.cattle.io/plan``); an empty plan for absent or garbage text."""
    if not text or len(text) > MAX_PLAN_BYTES * 2:
        return {"planHash": "", "clusters": {}}
    try:
        data = json.loads(text)
    except ValueError:
        return {"planHash": "", "clusters": {}}
    clusters = data.get("clusters") if isinstance(data, dict) else None
    if not isinstance(clusters, dict):
        return {"planHash": "", "clusters": {}}
    clean = {str(k): v for k, v in clusters.items() if isinstance(v, dict)}
    return {"planHash": str(data.get("planHash") or ""), "clusters": clean}


def with_entry(plan: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    """The plan with one cluster's entry set: applied entries are dropped, the hash recomputed."""
    clusters = {k: v for k, v in (plan.get("clusters") or {}).items() if not v.get("applied")}
    clusters[str(entry["cluster"])] = dict(entry)
    while len(clusters) > MAX_CLUSTERS:
        clusters.pop(sorted(clusters)[0])
    return {"planHash": plan_hash(clusters), "clusters": clusters}


def dumps(plan: Mapping[str, Any]) -> str:
    """The annotation text; entries' lists are trimmed until it fits :data:`MAX_PLAN_BYTES`."""
    text = json.dumps(plan, sort_keys=True, separators=(",", ":"))
    if len(text) <= MAX_PLAN_BYTES:
        return text
    slim = {"planHash": plan["planHash"], "clusters": {}}
    for name, entry in plan["clusters"].items():
        slim["clusters"][name] = {k: v for k, v in entry.items() if k not in ("values", "objects")} | {
            "values": None,
            "objects": None,
            "trimmed": True,
        }
    return json.dumps(slim, sort_keys=True, separators=(",", ":"))


__all__ = [
    "MASK",
    "cluster_plan",
    "digest",
    "dumps",
    "load",
    "manifest_changes",
    "plan_hash",
    "plan_summary",
    "summary",
    "values_changes",
    "with_entry",
]
