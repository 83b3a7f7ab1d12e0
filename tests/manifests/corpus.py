"""Loader for the HelmApp manifest corpora (valid/, invalid/, clusters/).

Each file holds one object. Comment lines at the top carry test metadata:
``# expect: <field path>`` (invalid/: the field the API server must name when rejecting it) and
``# fleet-prunes: <field path>`` (valid/: a field Fleet v0.12's own CRD does not know, so drops) and
``# problem: <field path> <error|warning>`` (semantic/: admission accepts the object, and
``helmops.api.validate_app`` reports exactly these problems).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parent
_META = re.compile(r"^#\s*([a-z-]+):\s*(.+?)\s*$")


@dataclass(frozen=True)
class Manifest:
    path: Path
    text: str
    doc: dict[str, Any]
    expect: str = ""
    fleet_prunes: tuple[str, ...] = field(default=())
    problems: tuple[tuple[str, str], ...] = field(default=())

    @property
    def id(self) -> str:
        return self.path.stem

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])


def _load(path: Path) -> Manifest:
    text = path.read_text(encoding="utf-8")
    meta: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        match = _META.match(line)
        if match:
            meta.setdefault(match.group(1), []).append(match.group(2))
    return Manifest(
        path=path,
        text=text,
        doc=yaml.safe_load(text),
        expect=(meta.get("expect") or [""])[0],
        fleet_prunes=tuple(meta.get("fleet-prunes", [])),
        problems=tuple(tuple(p.rsplit(" ", 1)) for p in meta.get("problem", [])),  # type: ignore[misc]
    )


def load(kind: str) -> list[Manifest]:
    """The manifests of one corpus (``valid``, ``invalid``, ``semantic``, ``clusters``, ``status``), by file name."""
    return [_load(path) for path in sorted((ROOT / kind).glob("*.yaml"))]


def without(doc: dict[str, Any], dotted: str) -> dict[str, Any]:
    """A copy of ``doc`` without the field at a dotted path such as ``spec.pollingInterval``."""
    import copy

    out = copy.deepcopy(doc)
    node: Any = out
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.get(part, {})
    node.pop(last, None)
    return out
