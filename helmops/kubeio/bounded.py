"""A JSON loader whose result is never nested deeper than :data:`MAX_DEPTH` containers.

Why: the API server accepts objects nested up to 10000 levels (a HelmApp's ``spec.values`` or a Fleet
Cluster's ``templateValues`` are free-form). CPython's ``json`` decoder recurses, so such an object raises
``RecursionError`` inside kopf's watcher — which ends the operator — and in every ``kubernetes`` client read,
and whatever survives parsing (depth below ~1000) still blows up the recursive code after it (deepcopy,
pydantic, merging, YAML dumps). This loader parses with the fast C decoder when it can and falls back to
ijson's event stream (yajl keeps its own stack: no recursion) when it cannot; either way every container
deeper than the cap is replaced by :data:`TRUNCATED`, a plain string, so the rest of the program sees a
shallow, ordinary document. Nothing legitimate comes near the cap: the spec checks
(``helmops.api.validate``) reject values nested deeper than 64 levels, which any cut subtree is, and so
report a cut object as invalid instead of acting on it.
"""

from __future__ import annotations

import json
from typing import Any

import ijson

__all__ = ["MAX_DEPTH", "TRUNCATED", "cut", "loads"]

MAX_DEPTH = 128
"""Containers (maps and lists) from the document root, the root included, kept before a subtree is cut."""

TRUNCATED = f"<helmops: truncated, nested deeper than {MAX_DEPTH} levels>"
"""What a cut subtree becomes: a string, so it adds no depth and any schema or spec check sees it."""


def loads(data: str | bytes | bytearray, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` for untrusted documents: same result for ordinary JSON, never deeper than
    ``max_depth`` containers, never ``RecursionError``. Invalid JSON raises ``ValueError``."""
    try:
        doc = json.loads(data)
    except RecursionError:
        return _parse_flat(data, max_depth)
    return cut(doc, max_depth)


def cut(doc: Any, max_depth: int = MAX_DEPTH) -> Any:
    """``doc`` with every container below ``max_depth`` levels replaced by :data:`TRUNCATED` (in place for
    the containers that are kept). Iterative, so any depth is safe."""
    if not isinstance(doc, dict | list):
        return doc
    if max_depth < 1:
        return TRUNCATED
    stack: list[tuple[Any, int]] = [(doc, 1)]
    push = stack.append
    while stack:
        node, depth = stack.pop()
        if depth >= max_depth:  # the last kept level: its container children go
            pairs = node.items() if isinstance(node, dict) else enumerate(node)
            for key in [k for k, v in pairs if isinstance(v, dict | list)]:
                node[key] = TRUNCATED
            continue
        for child in node.values() if isinstance(node, dict) else node:
            if child and isinstance(child, dict | list):
                push((child, depth + 1))
    return doc


def _parse_flat(data: str | bytes | bytearray, max_depth: int) -> Any:
    """The slow path for documents the C decoder cannot take: build from ijson's events with an explicit
    stack, skipping what lies below the cap (its events are still read, so invalid JSON is still an error)."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    stack: list[Any] = []  # the open containers that are kept
    keys: list[str | None] = []  # per open container: the map key awaiting its value
    skipped = 0  # open containers below the cap
    root: Any = None
    done = False

    def put(value: Any) -> None:
        nonlocal root, done
        if not stack:
            root, done = value, True
            return
        parent = stack[-1]
        if isinstance(parent, list):
            parent.append(value)
        else:
            parent[keys[-1]] = value

    try:
        for event, value in ijson.basic_parse(raw, use_float=True):
            if skipped:
                if event in ("start_map", "start_array"):
                    skipped += 1
                elif event in ("end_map", "end_array"):
                    skipped -= 1
                continue
            if event in ("start_map", "start_array"):
                if len(stack) >= max_depth:
                    put(TRUNCATED)
                    skipped = 1
                    continue
                container: Any = {} if event == "start_map" else []
                put(container)
                stack.append(container)
                keys.append(None)
                done = False
            elif event in ("end_map", "end_array"):
                stack.pop()
                keys.pop()
                done = not stack
            elif event == "map_key":
                keys[-1] = value
            else:
                put(value)
    except ijson.JSONError as exc:
        raise ValueError(f"invalid JSON: {exc}") from None
    if not done:
        raise ValueError("invalid JSON: incomplete document")
    return root
