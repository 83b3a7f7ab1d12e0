"""Pure drift comparison: a release's manifest objects against live objects, after diff.comparePatches."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from helmops.reconcile.manifest import ObjectRef, object_ref

log = logging.getLogger("helmops.controller")

HELM_MANAGED_SELECTOR = "app.kubernetes.io/managed-by=Helm"
RELEASE_SELECTOR = "owner=helm,status=deployed,helmops.cattle.io/managed-by=helmops"
#: at most this many drifted resources are named in status (Fleet: 10 non-ready resources).
MAX_NAMED = 10


@dataclass(frozen=True)
class Modified:
    """One drifted resource: ``missing`` (deleted behind Helm's back) or the JSON pointers that differ."""

    ref: ObjectRef
    missing: bool = False
    paths: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.missing:
            return f"{self.ref.display()} missing"
        return f"{self.ref.display()} modified {', '.join(self.paths[:5])}{' …' if len(self.paths) > 5 else ''}"

    def status_entry(self) -> dict[str, Any]:
        """Fleet's ``modifiedStatus`` entry shape."""
        entry: dict[str, Any] = {
            "kind": self.ref.kind,
            "apiVersion": self.ref.api_version,
            "namespace": self.ref.namespace,
            "name": self.ref.name,
        }
        if self.missing:
            entry["missing"] = True
        else:
            entry["patch"] = json.dumps({"changed": list(self.paths)}, separators=(",", ":"))
        return entry


# --- pure: comparePatches --------------------------------------------------------------------------
def _matches(value: Any, want: Any) -> bool:
    return not want or str(value) == str(want)


def ignored_pointers(ref: ObjectRef, compare_patches: Iterable[Mapping[str, Any]] | None) -> list[str]:
    """The JSON pointers ``diff.comparePatches`` hides for this object."""
    found: list[str] = []
    for p in compare_patches or ():
        if not isinstance(p, Mapping):
            continue
        if not (
            _matches(ref.kind, p.get("kind"))
            and _matches(ref.api_version, p.get("apiVersion"))
            and _matches(ref.namespace, p.get("namespace"))
            and _matches(ref.name, p.get("name"))
        ):
            continue
        for op in p.get("operations") or ():
            if isinstance(op, Mapping) and str(op.get("op") or "").lower() in ("remove", "ignore") and op.get("path"):
                found.append(str(op["path"]))
        found.extend(str(ptr) for ptr in p.get("jsonPointers") or () if ptr)
    return found


def _unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


def remove_pointer(obj: Any, pointer: str) -> None:
    """Deletes the field at a JSON pointer (RFC 6901) in place; absent paths are fine."""
    if not pointer.startswith("/"):
        return
    parts = [_unescape(t) for t in pointer[1:].split("/")]
    node = obj
    for part in parts[:-1]:
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return
    last = parts[-1]
    if isinstance(node, dict):
        node.pop(last, None)
    elif isinstance(node, list) and last.isdigit() and int(last) < len(node):
        del node[int(last)]


# --- pure: comparison ------------------------------------------------------------------------------
def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _empty(v: Any) -> bool:
    return v is None or v == {} or v == [] or v == ""


def _scalar_equal(a: Any, b: Any) -> bool:
    if a == b:
        return True
    if isinstance(a, bool) or isinstance(b, bool):
        return False
    # YAML numbers vs. the API's strings for int-or-string fields (ports, quantities written as ints).
    return isinstance(a, int | float | str) and isinstance(b, int | float | str) and str(a) == str(b)


def differences(desired: Any, live: Any, path: str = "") -> list[str]:
    """JSON pointers where ``live`` does not hold what ``desired`` sets. Keys only ``live`` has (server
    defaults, other controllers' fields) are not differences; lists are compared element by element and
    must have the same length."""
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return [] if _empty(desired) and _empty(live) else [path or "/"]
        out: list[str] = []
        for k, v in desired.items():
            sub = f"{path}/{_escape(str(k))}"
            if k not in live:
                if not _empty(v):
                    out.append(sub)
                continue
            out.extend(differences(v, live[k], sub))
        return out
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return [] if _empty(desired) and _empty(live) else [path or "/"]
        out = []
        for i, (d, lv) in enumerate(zip(desired, live, strict=True)):
            out.extend(differences(d, lv, f"{path}/{i}"))
        return out
    if desired is None:
        return []
    return [] if _scalar_equal(desired, live) else [path or "/"]


def comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What is compared of an object: everything but ``status`` and ``metadata`` other than labels and
    annotations (names, namespaces and server bookkeeping are not drift)."""
    out = {k: copy.deepcopy(v) for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}
    meta = obj.get("metadata") or {}
    kept = {k: copy.deepcopy(meta[k]) for k in ("labels", "annotations") if meta.get(k)}
    if kept:
        out["metadata"] = kept
    return out


def compare_object(
    ref: ObjectRef,
    desired: Mapping[str, Any],
    live: Mapping[str, Any] | None,
    compare_patches: Iterable[Mapping[str, Any]] | None = None,
) -> Modified | None:
    """None when ``live`` holds every field ``desired`` sets (after comparePatches); else what drifted."""
    if live is None:
        return Modified(ref, missing=True)
    d, lv = comparable(desired), comparable(live)
    pointers = ignored_pointers(ref, compare_patches)
    for ptr in pointers:
        remove_pointer(d, ptr)
        remove_pointer(lv, ptr)
    paths = differences(d, lv)
    return Modified(ref, paths=tuple(paths)) if paths else None


def compare_release(
    objects: Sequence[Mapping[str, Any]],
    live: Mapping[ObjectRef, Mapping[str, Any]],
    release_namespace: str,
    compare_patches: Iterable[Mapping[str, Any]] | None = None,
    namespaced: Callable[[str, str], bool | None] = lambda _a, _k: True,
) -> list[Modified]:
    """Every drifted object of a release. ``namespaced(apiVersion, kind)`` is None for kinds the server
    does not know (skipped: nothing to compare with)."""
    found: list[Modified] = []
    patches = list(compare_patches or ())
    for obj in objects:
        scoped = namespaced(str(obj.get("apiVersion") or ""), str(obj.get("kind") or ""))
        if scoped is None:
            continue
        ref = object_ref(obj, release_namespace, scoped)
        m = compare_object(ref, obj, live.get(ref), patches)
        if m is not None:
            found.append(m)
    return sorted(found, key=lambda m: m.ref)
